"""A small HTTP server for headless devices: the annotated stream as MJPEG and a status page.

=====================  ===========================================================
``/``                  page: the live stream, FPS, latency and device state
``/stream.mjpg``       ``multipart/x-mixed-replace`` JPEG stream (any browser, VLC, ffplay)
``/snapshot.jpg``      the latest frame
``/status.json``       the numbers the page shows, refreshed once a second
=====================  ===========================================================

Standard library only (``http.server``), one thread per client; clients wait on a condition
variable for the next frame, so a slow client never slows the pipeline (it skips frames).

Access: with a token (``--http-token-file`` or ``DFSEG_HTTP_TOKEN``) every request must carry it, as
``?token=TOKEN`` in the URL (what a browser, VLC or ffplay can be given), as ``Authorization: Bearer
TOKEN``, or as the password of HTTP basic auth (any user name); anything else gets 401.  The token is
compared in constant time and never printed.  Without one, only a loopback address is served quietly.

Device side: Python 3.6.
"""

import base64
import hmac
import ipaddress
import json
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Callable, Dict, Optional, Tuple
from urllib.parse import parse_qs

from ..backends.base import existing_artefact
from ..errors import UserError

BOUNDARY = "dfsegframe"
TOKEN_ENV = "DFSEG_HTTP_TOKEN"
MIN_TOKEN_LENGTH = 12

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dfseg live</title>
<style>
 body { background: #111; color: #eee; font-family: sans-serif; margin: 0; padding: 12px; }
 img { max-width: 100%; border: 1px solid #333; display: block; }
 table { border-collapse: collapse; margin-top: 8px; }
 td { padding: 2px 12px 2px 0; }
 td.value { font-family: monospace; }
</style>
</head>
<body>
<h1 style="font-size:18px">dfseg live segmentation</h1>
<img id="stream" src="/stream.mjpg" alt="annotated stream">
<table>
 <tr><td>network FPS</td><td class="value" id="network_fps">-</td></tr>
 <tr><td>pipeline FPS</td><td class="value" id="pipeline_fps">-</td></tr>
 <tr><td>latency (ms)</td><td class="value" id="latency_ms">-</td></tr>
 <tr><td>latency to output p50 / p95 / p99 (ms)</td><td class="value" id="latency_output">-</td></tr>
 <tr><td>frames</td><td class="value" id="frames">-</td></tr>
 <tr><td>dropped</td><td class="value" id="dropped">-</td></tr>
 <tr><td>model</td><td class="value" id="model">-</td></tr>
 <tr><td>device</td><td class="value" id="device">-</td></tr>
 <tr><td>state</td><td class="value" id="state">connecting</td></tr>
</table>
<script>
// The page's own requests carry the token it was opened with (?token=...), if any.
var query = window.location.search;
if (query) { document.getElementById("stream").src = "/stream.mjpg" + query; }
function show(id, value) { document.getElementById(id).textContent = value; }
function fixed(value) { return (value === null || value === undefined) ? "-" : Number(value).toFixed(1); }
function refresh() {
  fetch("/status.json" + query, {cache: "no-store"}).then(function (r) { return r.json(); }).then(function (s) {
    show("network_fps", fixed(s.network_fps));
    show("pipeline_fps", fixed(s.pipeline_fps));
    show("latency_ms", fixed(s.latency_ms));
    var out = s.latency && s.latency.output;
    show("latency_output", out ? [out.p50, out.p95, out.p99].map(fixed).join(" / ") : "-");
    show("frames", s.frames);
    show("dropped", s.dropped);
    show("model", s.model || "-");
    show("device", s.device || "-");
    show("state", s.state);
  }).catch(function () { show("state", "disconnected"); });
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
"""


class FrameBroadcaster:
    """The latest JPEG and a sequence number; readers block until a newer frame or shutdown."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._jpeg = None  # type: Optional[bytes]
        self._sequence = 0
        self.closed = False

    def publish(self, jpeg: bytes) -> None:
        with self._condition:
            self._jpeg = jpeg
            self._sequence += 1
            self._condition.notify_all()

    def close(self) -> None:
        with self._condition:
            self.closed = True
            self._condition.notify_all()

    def wait_newer(self, sequence: int, timeout: float = 1.0) -> Tuple[Optional[bytes], int]:
        """The newest frame after ``sequence`` (None on timeout or close) and its sequence number."""
        with self._condition:
            self._condition.wait_for(lambda: self._sequence > sequence or self.closed, timeout)
            if self._sequence > sequence:
                return self._jpeg, self._sequence
            return None, sequence

    def latest(self) -> Optional[bytes]:
        with self._condition:
            return self._jpeg


class _ThreadingServer(socketserver.ThreadingMixIn, HTTPServer):
    # http.server.ThreadingHTTPServer is 3.7+; this is the same thing for Python 3.6.
    daemon_threads = True
    allow_reuse_address = True


class MjpegServer:
    """Serves ``broadcaster``'s frames and ``status()`` on ``host:port`` from a background thread."""

    def __init__(self, host: str, port: int, status: Callable[[], Dict[str, Any]], token: Optional[str] = None) -> None:
        self.broadcaster = FrameBroadcaster()
        self.status = status
        self.token = token.encode("utf-8") if token else None
        handler = _make_handler(self)
        try:
            self.server = _ThreadingServer((host, port), handler)
        except (OSError, socket.gaierror) as exc:
            raise UserError(
                "http://{}:{}: cannot listen there ({}); pick a free port or an address of this machine "
                "(0.0.0.0 = all)".format(host, port, exc.strerror or exc)
            ) from None
        self.host, self.port = self.server.server_address[:2]
        self.thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.broadcaster.close()
        self.server.shutdown()
        self.server.server_close()


def _make_handler(owner: MjpegServer) -> type:
    class Handler(BaseHTTPRequestHandler):
        server_version = "dfseg"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # one line per request would drown the status output

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path, _, query = self.path.partition("?")
            if owner.token is not None and not self._authorised(query):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="dfseg", charset="UTF-8"')
                body = b"a token is required: add ?token=TOKEN to the URL\n"
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", PAGE.encode("utf-8"))
            elif path == "/status.json":
                self._send(200, "application/json", json.dumps(owner.status()).encode("utf-8"))
            elif path == "/snapshot.jpg":
                jpeg = owner.broadcaster.latest()
                if jpeg is None:
                    self._send(503, "text/plain", b"no frame yet\n")
                else:
                    self._send(200, "image/jpeg", jpeg)
            elif path == "/stream.mjpg":
                self._stream()
            else:
                self._send(404, "text/plain", b"not found; try / or /stream.mjpg\n")

        def _authorised(self, query: str) -> bool:
            offered = [value.encode("utf-8") for value in parse_qs(query).get("token", [])]
            header = self.headers.get("Authorization") or ""
            scheme, _, credentials = header.partition(" ")
            if scheme.lower() == "bearer":
                offered.append(credentials.strip().encode("utf-8"))
            elif scheme.lower() == "basic":
                try:
                    offered.append(base64.b64decode(credentials.strip(), validate=True).partition(b":")[2])
                except ValueError:
                    pass
            # Every offer is compared in full, so the time taken says nothing about the token.
            matches = [hmac.compare_digest(value, owner.token) for value in offered]
            return any(matches)

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary={}".format(BOUNDARY))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            sequence = 0
            broadcaster = owner.broadcaster
            try:
                while not broadcaster.closed:
                    jpeg, sequence = broadcaster.wait_newer(sequence)
                    if jpeg is None:
                        continue
                    header = "--{}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n".format(BOUNDARY, len(jpeg))
                    self.wfile.write(header.encode("ascii") + jpeg + b"\r\n")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the viewer went away

    return Handler


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (a name is resolved as the server would)."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in addresses)


def check_token(token: str, where: str) -> str:
    """``token`` stripped, or a UserError naming ``where`` it came from when it is too weak to protect."""
    token = token.strip()
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token) or not token.isprintable():
        raise UserError("{}: the HTTP token must be at least {} printable characters without spaces; make one "
                        "with: python3 -c 'import secrets; print(secrets.token_urlsafe(24))'".format(
                            where, MIN_TOKEN_LENGTH))
    return token


def device_state() -> Dict[str, Any]:
    """What the page shows about the machine: temperatures and, on a Jetson, GPU load (sysfs)."""
    from ..jetson import temperatures

    state = {}  # type: Dict[str, Any]
    temps = ["{} {:.0f}C".format(name, degrees) for name, degrees in temperatures().items()]
    if temps:
        state["temperatures"] = temps
    for path in ("/sys/devices/gpu.0/load", "/sys/devices/platform/gpu.0/load"):
        try:
            with open(path) as load:
                state["gpu_load_percent"] = int(load.read().strip()) / 10.0
            break
        except (OSError, ValueError):
            continue
    state["time"] = time.strftime("%H:%M:%S")
    return state


def run_status(pipeline: Any, runner: Any, model: str, precision: str, input_description: str) -> Dict[str, Any]:
    """What ``/status.json`` serves about a run: ``pipeline`` and ``runner`` may still be None (loading)."""
    stats = pipeline.stats if pipeline is not None else None
    device = device_state()
    return {
        "network_fps": stats.network_fps() if stats else None,
        "pipeline_fps": stats.pipeline_fps() if stats else None,
        "latency_ms": stats.latency_ms() if stats else None,
        "latency": stats.latency() if stats else {},  # per span: p50, p95, p99, mean over the run
        "frames": stats.written if stats else 0,
        "dropped": stats.dropped if stats else 0,
        "state": stats.state if stats else "starting",
        "model": "{} ({}, {})".format(model, runner.backend if runner else "loading", precision),
        "built_model": existing_artefact(runner),
        "device": ", ".join(device.get("temperatures", [])[:3]) or device["time"],
        "device_state": device,
        "input": input_description,
        "profile": {name: clock.summary() for name, clock in pipeline.clocks.items()} if pipeline else {},
    }
