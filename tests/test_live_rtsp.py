"""rtsp:// input, against a real RTSP server on 127.0.0.1 (tests/rtsp_server.py: JPEG over RTP,
RFC 2435, interleaved in the RTSP TCP connection) read by OpenCV's own FFmpeg backend.  Nothing is
mocked: the frames cross a real socket, and every frame carries its number in colour blocks, so the
tests check which frame arrived where, not only that something did."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest
from rtsp_server import RtspServer, pattern_frame, read_pattern
from test_live_pipeline import count_frames, run_cli, tiny_onnx

from dfseg.backends.onnxrt import OnnxRuntimeRunner
from dfseg.errors import UserError
from dfseg.live.render import Renderer
from dfseg.live.segmenter import Segmenter
from dfseg.live.sources import STREAM_TIMEOUT_S, CaptureSource, open_source

STREAM_W, STREAM_H = 192, 96  # multiples of 16, as RFC 2435 with 4:2:0 needs
FPS = 25.0  # a camera's rate; FFmpeg probes about 20 frames (0.8 s) when a stream opens
SUMMARY = re.compile(r"^dfseg-run: (\d+) frames in .* \((.*)\)$", re.M)


@pytest.fixture
def server():
    with RtspServer(lambda i: pattern_frame(i, STREAM_W, STREAM_H), fps=FPS) as rtsp:
        yield rtsp


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_onnx(str(tmp_path_factory.mktemp("model") / "tiny.onnx"))  # 64x48: frames are resized to it


def wait_for(condition, timeout=20.0):
    deadline = time.time() + timeout
    while not condition() and time.time() < deadline:
        time.sleep(0.02)
    return condition()


def numbered_pngs(folder):
    """{frame number in the name: image} for a dfseg-run folder output."""
    return {int(name[:-4]): cv2.imread(os.path.join(folder, name)) for name in sorted(os.listdir(folder))}


# ------------------------------------------------------------------ the source layer


def test_stream_frames_arrive_in_order_with_their_size_and_colours(server):
    source = open_source(server.url)
    assert isinstance(source, CaptureSource) and source.live and source.timeout_s == STREAM_TIMEOUT_S
    with source:
        assert source.fps == FPS  # from the SDP's a=framerate
        assert source.capture.getBackendName() == "FFMPEG"
        frames = [source.read() for _ in range(20)]
    assert all(f is not None and f.image.shape == (STREAM_H, STREAM_W, 3) and f.image.dtype == np.uint8 for f in frames)
    # Every frame of the session, in order, none lost or repeated, colours intact (frame k is stream frame k).
    assert [read_pattern(f.image) for f in frames] == list(range(20))
    assert [f.name for f in frames] == ["{:06d}".format(i) for i in range(20)]
    # Pixel for pixel what the server encoded, within JPEG's rounding (the colour blocks lie on 16-pixel
    # MCU boundaries, so 4:2:0 chroma does not blur them); frames 0..19 show all eight palette colours.
    for i, frame in enumerate(frames):
        assert np.abs(frame.image.astype(int) - pattern_frame(i, STREAM_W, STREAM_H).astype(int)).max() <= 8
    assert [r[0] for r in server.requests][:4] == ["OPTIONS", "DESCRIBE", "SETUP", "PLAY"]
    assert server.requests[2][2].startswith("RTP/AVP/TCP") and "interleaved=0-1" in server.requests[2][2]
    assert wait_for(lambda: "TEARDOWN" in [r[0] for r in server.requests], 5.0), "closing the source sent no TEARDOWN"


def test_a_server_without_udp_is_read_over_tcp_whatever_the_capture_options(server, monkeypatch):
    """OpenCV asks FFmpeg for TCP first unless OPENCV_FFMPEG_CAPTURE_OPTIONS replaces its defaults;
    then FFmpeg asks for UDP, gets 461 Unsupported Transport, and falls back to TCP on its own."""
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "probesize;500000")
    with open_source(server.url) as source:
        assert [read_pattern(source.read().image) for _ in range(3)] == [0, 1, 2]
    transports = [r[2] for r in server.requests if r[0] == "SETUP"]
    assert len(transports) == 2 and "UDP" in transports[0] and transports[1].startswith("RTP/AVP/TCP"), transports


def test_unknown_stream_path_is_a_user_error(server):
    source = open_source(server.url + "-nothing")
    with pytest.raises(UserError, match=r"-nothing: cannot open it; check the URL and that the stream is reachable"):
        source.open()
    assert ("DESCRIBE", server.url + "-nothing", "") in server.requests  # answered 404 Not Found


def test_stalled_stream_times_out_and_reconnects(server):
    """Connected but silent (a frozen camera): after the read timeout the source reopens the stream
    and gets a new session, which starts again at frame 0.  (2 s: longer than FFmpeg's probe at open,
    which the same timeout bounds.)"""
    if not (hasattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC") and hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC")):
        pytest.skip("this OpenCV has no open/read timeout parameters: its fixed 30 s read timeout applies")
    messages = []
    source = CaptureSource(server.url, "cam", live=True, reconnect_attempts=2, reconnect_delay=0.1,
                           log=messages.append, timeout_s=2.0)
    with source:
        before = [read_pattern(source.read().image) for _ in range(5)]
        assert wait_for(lambda: server.frames_sent >= 25)
        server.stall_sessions()
        buffered, after = [], []
        while len(after) < 3:  # frames already received are still read, then the stall is noticed
            frame = source.read()
            assert frame is not None, source.end_reason
            (after if source.reconnects else buffered).append(read_pattern(frame.image))
    assert before == [0, 1, 2, 3, 4]
    assert buffered == list(range(5, 5 + len(buffered)))
    assert after == [0, 1, 2]
    assert source.reconnects == 1 and messages == ["cam: no frame; reconnecting (1/2)"]
    assert [r[0] for r in server.requests].count("PLAY") == 2


def test_silent_server_times_out_at_open():
    """A port that accepts the connection but never answers RTSP: opening gives up after the timeout."""
    if not (hasattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC") and hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC")):
        pytest.skip("this OpenCV has no open/read timeout parameters: its fixed 30 s open timeout applies")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)  # the kernel completes the handshake; nobody ever reads or answers
        url = "rtsp://127.0.0.1:{}/stream".format(silent.getsockname()[1])
        source = CaptureSource(url, url, live=True, timeout_s=1.0)
        with pytest.raises(UserError, match="cannot open it"):
            source.open()


# ------------------------------------------------------------------ the Python API

QUIET_STREAM = """
import sys
import dfseg
from dfseg.errors import UserError

model_path, url, refused = sys.argv[1:]
with dfseg.load(model_path, backend="onnxruntime", threads=1) as model:
    for bad in (url + "-nothing", refused):
        try:
            model.stream(bad)
        except UserError as exc:
            print("refused:", exc)
    with model.stream(url, max_frames=5) as stream:
        print("frames:", sum(1 for _ in stream))
"""


def api_stream(model, url, **levels):
    """QUIET_STREAM in a fresh Python: an unknown stream path (the server answers 404), a port that
    refuses the connection, then five frames of ``url``; OpenCV's and FFmpeg's levels as ``levels`` say
    (none set: whatever dfseg chooses)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENCV_LOG_LEVEL", "OPENCV_FFMPEG_LOGLEVEL")}
    env.update(levels)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        refused = "rtsp://127.0.0.1:{}/stream".format(probe.getsockname()[1])  # closed again: refused
    return subprocess.run([sys.executable, "-c", QUIET_STREAM, model, url, refused], env=env, timeout=120,
                          capture_output=True, text=True)


def test_the_api_lets_neither_opencv_nor_ffmpeg_print(server, model):
    """The API never prints: FFmpeg's "404 Not Found" and "Connection refused" and OpenCV's warnings stay
    off stderr; the program hears of both failures through UserError, and a good stream still plays."""
    proc = api_stream(model, server.url)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("refused: {}-nothing: cannot open it".format(server.url)), lines
    assert lines[1].startswith("refused: rtsp://127.0.0.1:") and "cannot open it" in lines[1], lines
    assert len(lines) == 3 and 1 <= int(lines[2].split()[-1]) <= 5, lines  # a live source drops stale frames
    assert proc.stderr == ""


def test_a_users_own_opencv_log_levels_win_over_the_apis(server, model):
    """OPENCV_LOG_LEVEL and OPENCV_FFMPEG_LOGLEVEL set by the user are kept: OpenCV's warnings print (on
    stderr) and so do FFmpeg's errors (16: AV_LOG_ERROR; OpenCV's callback prints them on stdout)."""
    proc = api_stream(model, server.url, OPENCV_LOG_LEVEL="WARNING", OPENCV_FFMPEG_LOGLEVEL="16")
    assert proc.returncode == 0, proc.stderr
    assert "[ WARN" in proc.stderr, proc.stderr
    assert "404 (Not Found)" in proc.stdout and "Connection refused" in proc.stdout, proc.stdout


# ------------------------------------------------------------------ dfseg-run end to end


def check_outputs(tmp_path, model, written):
    """The video, the frame folder and the labels hold the same ``written`` frames; each rendered frame
    shows (left) the stream frame its name numbers and (right) the colours of its own segmentation."""
    count, size = count_frames(str(tmp_path / "out.avi"))
    assert (count, size) == (written, (STREAM_H, 2 * STREAM_W, 3))
    assert not [name for name in os.listdir(tmp_path) if "partial" in name]
    frames = numbered_pngs(str(tmp_path / "frames"))
    labels = {k: cv2.imread(str(tmp_path / "labels" / "{:06d}.png".format(k)), cv2.IMREAD_UNCHANGED) for k in frames}
    assert len(frames) == written >= 1
    renderer = Renderer("side")
    with OnnxRuntimeRunner(model) as runner:
        segmenter = Segmenter(runner)
        for number, image in frames.items():
            assert image.shape == (STREAM_H, 2 * STREAM_W, 3)
            stream_frame, colours = image[:, :STREAM_W], image[:, STREAM_W:]
            assert read_pattern(stream_frame) == number
            assert labels[number].shape == (STREAM_H, STREAM_W)
            np.testing.assert_array_equal(labels[number], segmenter.segment(stream_frame))
            np.testing.assert_array_equal(colours, renderer.colorize(labels[number]))
    return sorted(frames)




def run_args(model, url, tmp_path, *extra):
    return ("--model", model, url, str(tmp_path / "out.avi"), str(tmp_path / "frames") + "/", "--save-labels",
            str(tmp_path / "labels"), "--overlay", "side", "--no-legend", "--no-status") + extra


def test_dfseg_run_segments_an_rtsp_stream(server, model, tmp_path):
    proc = run_cli(*run_args(model, server.url, tmp_path, "--max-frames", "30"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "dfseg-run: {} -> ".format(server.url) in proc.stderr
    summary = SUMMARY.findall(proc.stderr)
    assert len(summary) == 1 and summary[0][1] == "reached --max-frames 30", proc.stderr
    numbers = check_outputs(tmp_path, model, int(summary[0][0]))
    assert all(0 <= n < 30 for n in numbers)  # one session, no reconnection: stream frames 0..29 captured
    assert wait_for(lambda: "TEARDOWN" in [r[0] for r in server.requests], 5.0)


def test_dfseg_run_retries_a_lost_server_then_ends_cleanly(server, model, tmp_path):
    """The server goes away mid-stream: two reconnection attempts, then exit 1 with one message, and
    every output finalised with the frames that came before."""
    frames_dir = str(tmp_path / "frames")
    done = threading.Event()

    def kill_server_once_frames_are_out():
        while not done.is_set():
            if os.path.isdir(frames_dir) and len(os.listdir(frames_dir)) >= 5:
                server.stop()
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_server_once_frames_are_out, daemon=True)
    killer.start()
    try:
        proc = run_cli(*run_args(model, server.url, tmp_path, "--reconnect-attempts", "2", "--reconnect-delay", "0.2"),
                       timeout=120)
    finally:
        done.set()
        killer.join()
    assert proc.returncode == 1, proc.stderr  # run.py: 1 = a live source was lost for good
    assert "Traceback" not in proc.stderr
    lost = "{} disconnected; gave up after 2 reconnection attempts".format(server.url)
    lines = proc.stderr.splitlines()
    assert [line for line in lines if "reconnecting" in line] == [
        "{}: no frame; reconnecting (1/2)".format(server.url), "{}: no frame; reconnecting (2/2)".format(server.url)]
    assert lines.count(lost) == 1  # the source's own message, one line
    summary = SUMMARY.findall(proc.stderr)
    assert len(summary) == 1 and summary[0][1] == lost and lines[-1].startswith("dfseg-run: "), proc.stderr
    check_outputs(tmp_path, model, int(summary[0][0]))


def test_a_password_in_the_url_is_never_shown(server, model, tmp_path):
    """The stream opens with the credentials, but the status page (open to the network) and every
    message show the URL with its userinfo masked; SIGTERM then finalises the run (exit 143)."""
    secret = "s3cretPW"
    url = server.url.replace("rtsp://", "rtsp://admin:{}@".format(secret))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "dfseg.cli.run", "--model", model, url,
                             "http://127.0.0.1:{}".format(port), "--no-status"], stderr=subprocess.PIPE, text=True)
    pages = []

    def status_page_shows_frames():
        try:
            with urllib.request.urlopen("http://127.0.0.1:{}/status.json".format(port), timeout=5) as response:
                pages.append(response.read().decode("utf-8"))
        except OSError:
            return False
        return json.loads(pages[-1])["frames"] > 0

    try:
        assert wait_for(status_page_shows_frames, 60.0), pages[-1:]
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert json.loads(pages[-1])["input"] == server.url.replace("rtsp://", "rtsp://***@")
    assert secret not in "".join(pages) + stderr and "rtsp://***@127.0.0.1" in stderr
