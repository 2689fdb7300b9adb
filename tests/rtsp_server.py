"""A small RTSP server for the tests: JPEG frames over RTP (RFC 2435), on 127.0.0.1.

It speaks just enough RTSP 1.0 (RFC 2326) for FFmpeg's client (OpenCV's FFmpeg backend):
OPTIONS, DESCRIBE (an SDP with one ``m=video 0 RTP/AVP 26`` stream), SETUP, PLAY, GET_PARAMETER
(keep-alive) and TEARDOWN.  RTP travels interleaved in the RTSP TCP connection
(``RTP/AVP/TCP;interleaved=0-1``, RFC 2326 section 10.12); a SETUP for RTP over UDP is answered
``461 Unsupported Transport``, upon which FFmpeg falls back to TCP by itself.

Frames come from ``make_frame(index)`` (BGR, both sides multiples of 16, at most 2040), are encoded
with ``cv2.imencode`` as baseline JPEG with the standard Huffman tables, and are sent as RFC 2435
payloads: the 8-byte JPEG header (type 1 for 4:2:0 or type 0 for 4:2:2, Q=255 with both 8-bit
quantization tables in-band in every frame), then the entropy-coded scan only (the receiver
rebuilds the JFIF headers and appends EOI), fragmented by byte offset, marker bit on each frame's
last packet, 90 kHz timestamps.  Every session starts at frame 0 and plays at ``fps``.

    with RtspServer(pattern_frame, fps=15) as server:
        cv2.VideoCapture(server.url)   # rtsp://127.0.0.1:PORT/stream
        server.drop_sessions()         # cut every client off, keep listening
        server.stall_sessions()        # keep the clients connected but send them nothing more
    # leaving the block stops the server: connections are cut, the port refuses new ones

Test helper only: our own code, standard library plus numpy and OpenCV.
"""

import random
import socket
import socketserver
import struct
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np
from frame_pattern import PALETTE, PATTERN_BLOCKS, REFERENCE_GREY, pattern_bgr

RTP_PAYLOAD_JPEG = 26
RTP_CLOCK = 90000
MAX_PAYLOAD = 1400  # bytes of RTP payload per packet (JPEG header + data)
SERVER_NAME = "dfseg-test-rtsp"


def pattern_frame(index: int, width: int = 192, height: int = 96) -> np.ndarray:
    """Frame ``index`` (mod 512) of tests/frame_pattern.py as a BGR image."""
    return np.frombuffer(pattern_bgr(index, width, height), np.uint8).reshape(height, width, 3).copy()


def read_pattern(image: np.ndarray, tolerance: float = 48.0) -> Optional[int]:
    """The frame number drawn by ``pattern_frame``, or None when a block's colour is not one of the
    palette's (mean of each block's centre, per channel within ``tolerance``)."""
    height, width = image.shape[:2]
    blocks = PATTERN_BLOCKS + 1
    step = width // blocks
    means = []
    for i in range(blocks):
        centre = image[height // 4:height - height // 4, i * step + step // 4:(i + 1) * step - step // 4]
        means.append(centre.reshape(-1, 3).mean(axis=0))
    if np.abs(means[-1] - np.array(REFERENCE_GREY)).max() > tolerance:
        return None
    number = 0
    for mean in means[:-1]:
        distances = [np.abs(mean - np.array(colour)).max() for colour in PALETTE]
        digit = int(np.argmin(distances))
        if distances[digit] > tolerance:
            return None
        number = number * len(PALETTE) + digit
    return number


# ---------------------------------------------------------------------------------------- RFC 2435


class JpegPayload:
    """What RFC 2435 sends of one baseline JFIF image: type, size, quantization tables, scan data."""

    def __init__(self, jpeg: bytes) -> None:
        if jpeg[:2] != b"\xff\xd8" or jpeg[-2:] != b"\xff\xd9":
            raise ValueError("not a complete JPEG (SOI ... EOI)")
        tables: Dict[int, bytes] = {}
        components: List[Tuple[int, int, int]] = []  # (id, sampling, table)
        position = 2
        while True:
            if jpeg[position] != 0xFF:
                raise ValueError("JPEG marker expected at byte {}".format(position))
            marker = jpeg[position + 1]
            length = struct.unpack("!H", jpeg[position + 2:position + 4])[0]
            body = jpeg[position + 4:position + 2 + length]
            if marker == 0xDB:  # DQT: one or more (precision/id, 64 values in zigzag order)
                offset = 0
                while offset < len(body):
                    precision, table = body[offset] >> 4, body[offset] & 15
                    if precision != 0:
                        raise ValueError("16-bit quantization tables cannot go in RFC 2435 Q=255 headers")
                    tables[table] = body[offset + 1:offset + 65]
                    offset += 65
            elif marker == 0xC0:  # SOF0, baseline
                precision, height, width, count = struct.unpack("!BHHB", body[:6])
                if precision != 8 or count != 3:
                    raise ValueError("need 8-bit, 3-component (colour) JPEG, got {} bits, {} components".format(precision, count))
                components = [tuple(body[6 + 3 * i:9 + 3 * i]) for i in range(count)]
            elif 0xC1 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                raise ValueError("only baseline JPEG (SOF0) fits RFC 2435, got marker 0x{:02X}".format(marker))
            elif marker == 0xDD and struct.unpack("!H", body[:2])[0] != 0:
                raise ValueError("restart intervals would need RFC 2435 types 64-127")
            elif marker == 0xDA:  # SOS: the entropy-coded data follows the header up to EOI
                self.scan = jpeg[position + 2 + length:-2]
                break
            position += 2 + length
        luma, chroma_b, chroma_r = components
        if luma[1] == 0x22:
            self.type = 1  # 4:2:0
        elif luma[1] == 0x21:
            self.type = 0  # 4:2:2
        else:
            raise ValueError("luma sampling 0x{:02X}: RFC 2435 types 0/1 need 2x1 or 2x2".format(luma[1]))
        if chroma_b[1:] != (0x11, 1) or chroma_r[1:] != (0x11, 1) or luma[2] != 0:
            raise ValueError("expected chroma 1x1 on quantization table 1, luma on table 0")
        if width % 8 or height % 8 or width > 2040 or height > 2040:
            raise ValueError("{}x{}: RFC 2435 sizes are multiples of 8 up to 2040".format(width, height))
        self.width, self.height = width, height
        self.qtables = tables[0] + tables[1]

    def fragments(self, max_payload: int = MAX_PAYLOAD) -> List[bytes]:
        """The RTP payloads of this frame, in order."""
        qheader = struct.pack("!BBH", 0, 0, len(self.qtables)) + self.qtables  # MBZ, precision, length
        payloads = []
        offset = 0
        while offset < len(self.scan) or not payloads:
            extra = qheader if offset == 0 else b""
            size = max_payload - 8 - len(extra)
            header = struct.pack(
                "!BBHBBBB", 0, offset >> 16, offset & 0xFFFF, self.type, 255, self.width // 8, self.height // 8
            )
            payloads.append(header + extra + self.scan[offset:offset + size])
            offset += size
        return payloads


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_OPTIMIZE, 0]  # standard Huffman tables
    if hasattr(cv2, "IMWRITE_JPEG_PROGRESSIVE"):
        params += [cv2.IMWRITE_JPEG_PROGRESSIVE, 0]
    if hasattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR"):
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420]
    ok, data = cv2.imencode(".jpg", image, params)
    if not ok:
        raise ValueError("cv2.imencode failed")
    return data.tobytes()


# ---------------------------------------------------------------------------------------- RTSP


class _Session:
    """One client connection: RTSP requests in, responses and interleaved RTP out."""

    def __init__(self, server: "RtspServer", connection: socket.socket) -> None:
        self.server = server
        self.connection = connection
        self.send_lock = threading.Lock()
        self.session_id = "{:08X}".format(random.getrandbits(32))
        self.channel: Optional[int] = None
        self.playing = threading.Event()
        self.closed = threading.Event()
        self.sequence = random.getrandbits(16)
        self.ssrc = random.getrandbits(32)
        self.timestamp0 = random.getrandbits(32)
        self.streamer: Optional[threading.Thread] = None

    def send(self, data: bytes) -> None:
        with self.send_lock:
            self.connection.sendall(data)

    def serve(self) -> None:
        reader = self.connection.makefile("rb")
        try:
            while not self.closed.is_set():
                first = reader.read(1)
                if not first:
                    return
                if first == b"$":  # interleaved data from the client (RTCP receiver reports): skip
                    channel_length = reader.read(3)
                    if len(channel_length) < 3:
                        return
                    reader.read(struct.unpack("!H", channel_length[1:])[0])
                    continue
                request = first + reader.readline()
                if not request.strip():
                    continue
                headers = {}
                while True:
                    line = reader.readline()
                    if not line or not line.strip():
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                if int(headers.get("content-length", "0")):
                    reader.read(int(headers["content-length"]))
                if not self.handle(request.decode("latin-1").split(), headers):
                    return
        except OSError:
            return
        finally:
            self.closed.set()
            self.playing.clear()
            reader.close()

    def handle(self, request: List[str], headers: Dict[str, str]) -> bool:
        """Answer one request; False ends the connection."""
        method, uri = (request + ["", ""])[:2]
        cseq = headers.get("cseq", "0")
        self.server.requests.append((method, uri, headers.get("transport", "")))
        path = _path(uri)
        if method == "OPTIONS":
            return self.reply(cseq, "200 OK", ["Public: OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN"])
        if not self.server.serves(path):
            return self.reply(cseq, "404 Not Found")
        if method == "DESCRIBE":
            base = "rtsp://127.0.0.1:{}{}/".format(self.server.port, self.server.path)
            sdp = self.server.sdp().encode("ascii")
            return self.reply(cseq, "200 OK", ["Content-Base: " + base, "Content-Type: application/sdp"], sdp)
        if method == "SETUP":
            transport = headers.get("transport", "")
            interleaved = [p for p in transport.split(";") if p.startswith("interleaved=")]
            if not transport.startswith("RTP/AVP/TCP") or not interleaved:
                return self.reply(cseq, "461 Unsupported Transport")
            self.channel = int(interleaved[0].split("=")[1].split("-")[0])
            return self.reply(cseq, "200 OK", [
                "Transport: RTP/AVP/TCP;unicast;interleaved={}-{};ssrc={:08X}".format(
                    self.channel, self.channel + 1, self.ssrc),
                "Session: {};timeout=60".format(self.session_id),
            ])
        if method in ("PLAY", "GET_PARAMETER", "TEARDOWN") and headers.get("session", "").split(";")[0] != self.session_id:
            return self.reply(cseq, "454 Session Not Found")
        if method == "PLAY":
            if self.channel is None:
                return self.reply(cseq, "455 Method Not Valid in This State")
            track = "rtsp://127.0.0.1:{}{}/track0".format(self.server.port, self.server.path)
            ok = self.reply(cseq, "200 OK", [
                "Session: " + self.session_id, "Range: npt=0.000-",
                "RTP-Info: url={};seq={};rtptime={}".format(track, self.sequence, self.timestamp0),
            ])
            if self.streamer is None:
                self.playing.set()
                self.streamer = threading.Thread(target=self.stream, name="rtsp-stream", daemon=True)
                self.streamer.start()
            return ok
        if method == "GET_PARAMETER":
            return self.reply(cseq, "200 OK", ["Session: " + self.session_id])
        if method == "TEARDOWN":
            self.playing.clear()
            self.reply(cseq, "200 OK", ["Session: " + self.session_id])
            return False
        return self.reply(cseq, "501 Not Implemented")

    def reply(self, cseq: str, status: str, headers: Optional[List[str]] = None, body: bytes = b"") -> bool:
        lines = ["RTSP/1.0 " + status, "CSeq: " + cseq, "Server: " + SERVER_NAME] + list(headers or [])
        if body:
            lines.append("Content-Length: {}".format(len(body)))
        try:
            self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        except OSError:
            return False
        return True

    def stream(self) -> None:
        """Send frame 0, 1, 2, ... at the server's frame rate until TEARDOWN or the connection ends."""
        start = time.monotonic()
        index = 0
        while self.playing.is_set() and not self.closed.is_set():
            delay = start + index / self.server.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            payloads = self.server.payloads(index)
            timestamp = (self.timestamp0 + int(round(index * RTP_CLOCK / self.server.fps))) & 0xFFFFFFFF
            data = []
            for i, payload in enumerate(payloads):
                marker = 0x80 if i == len(payloads) - 1 else 0
                rtp = struct.pack("!BBHII", 0x80, marker | RTP_PAYLOAD_JPEG, self.sequence, timestamp, self.ssrc) + payload
                self.sequence = (self.sequence + 1) & 0xFFFF
                data.append(b"$" + struct.pack("!BH", self.channel, len(rtp)) + rtp)
            try:
                self.send(b"".join(data))
            except OSError:
                break
            self.server.frames_sent += 1
            index += 1

    def cut(self) -> None:
        """Drop the connection at once, as a crashed server or a pulled cable would."""
        self.closed.set()
        self.playing.clear()
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        owner = self.server.owner  # type: ignore[attr-defined]
        session = _Session(owner, self.request)
        with owner.lock:
            owner.sessions.append(session)
        try:
            session.serve()
        finally:
            with owner.lock:
                if session in owner.sessions:
                    owner.sessions.remove(session)


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class RtspServer:
    """An RTSP server on 127.0.0.1 (ephemeral port) streaming ``make_frame(0), make_frame(1), ...``."""

    def __init__(
        self,
        make_frame: Callable[[int], np.ndarray] = pattern_frame,
        fps: float = 15.0,
        path: str = "/stream",
        quality: int = 95,
    ) -> None:
        self.make_frame = make_frame
        self.fps = float(fps)
        self.path = path.rstrip("/")
        self.quality = quality
        self.lock = threading.Lock()
        self.sessions: List[_Session] = []
        self.requests: List[Tuple[str, str, str]] = []  # (method, URI, Transport header)
        self.frames_sent = 0
        # Frame 0 is encoded now so that a bad make_frame fails here; its payload is cached for PLAY.
        self._cache: Dict[int, List[bytes]] = {0: JpegPayload(encode_jpeg(make_frame(0), quality)).fragments()}
        self._tcp: Optional[_TcpServer] = None
        self._thread: Optional[threading.Thread] = None
        self.port = 0

    @property
    def url(self) -> str:
        return "rtsp://127.0.0.1:{}{}".format(self.port, self.path)

    def start(self) -> "RtspServer":
        self._tcp = _TcpServer(("127.0.0.1", 0), _Handler)
        self._tcp.owner = self  # type: ignore[attr-defined]
        self.port = self._tcp.server_address[1]
        self._thread = threading.Thread(target=self._tcp.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="rtsp-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every connection: the server is gone."""
        if self._tcp is not None:
            self._tcp.shutdown()
            self._tcp.server_close()
            self._tcp = None
        self.drop_sessions()

    def drop_sessions(self) -> None:
        """Cut every client's connection; the server keeps listening for new ones."""
        with self.lock:
            sessions, self.sessions = self.sessions, []
        for session in sessions:
            session.cut()

    def stall_sessions(self) -> None:
        """Stop sending frames to every client but keep their connections open and answered, as a
        frozen camera does; new clients still get a stream."""
        with self.lock:
            for session in self.sessions:
                session.playing.clear()

    def serves(self, path: str) -> bool:
        return path == self.path or path.startswith(self.path + "/")

    def sdp(self) -> str:
        return "\r\n".join([
            "v=0",
            "o=- {} 1 IN IP4 127.0.0.1".format(random.getrandbits(31)),
            "s=" + SERVER_NAME,
            "c=IN IP4 0.0.0.0",
            "t=0 0",
            "a=control:*",
            "m=video 0 RTP/AVP {}".format(RTP_PAYLOAD_JPEG),
            "a=rtpmap:{} JPEG/{}".format(RTP_PAYLOAD_JPEG, RTP_CLOCK),
            "a=framerate:{:g}".format(self.fps),
            "a=control:track0",
            "",
        ])

    def payloads(self, index: int) -> List[bytes]:
        with self.lock:
            cached = self._cache.get(index)
        if cached is None:
            cached = JpegPayload(encode_jpeg(self.make_frame(index), self.quality)).fragments()
            with self.lock:
                if len(self._cache) < 1024:
                    self._cache[index] = cached
        return cached

    def __enter__(self) -> "RtspServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _path(uri: str) -> str:
    if "://" in uri:
        uri = uri.split("://", 1)[1]
        uri = "/" + uri.split("/", 1)[1] if "/" in uri else "/"
    return uri.split("?", 1)[0].rstrip("/") or "/"
