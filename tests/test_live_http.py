"""dfseg-run's http:// output, read with a real HTTP client on 127.0.0.1."""

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
from signals import like_a_terminal
from test_live_pipeline import HEIGHT, WIDTH, tiny_onnx, write_video


def start_http_run(tmp_path):
    """dfseg-run looping a clip into http://127.0.0.1:<free port>; returns (process, base URL)."""
    model = tiny_onnx(str(tmp_path / "tiny.onnx"))
    video = write_video(str(tmp_path / "clip.avi"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dfseg.cli.run", "--model", model, video, "http://127.0.0.1:0", "--input-loop", "-1"],
        stderr=subprocess.PIPE, text=True, preexec_fn=like_a_terminal,
    )
    url = None
    deadline = time.time() + 60
    while url is None and time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        match = re.search(r"streaming on (http://127\.0\.0\.1:\d+)", line)
        url = match.group(1) if match else None
    if url is None:
        proc.kill()
        proc.wait()
    assert url, "dfseg-run did not report its address"
    return proc, url


@pytest.fixture
def server(tmp_path):
    proc, url = start_http_run(tmp_path)
    yield proc, url
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def read_mjpeg_frames(url, count):
    frames = []
    with urllib.request.urlopen(url + "/stream.mjpg", timeout=30) as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace; boundary=")
        while len(frames) < count:
            line = response.readline()
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
                response.readline()  # blank line ending the part's headers
                data = response.read(length)
                frames.append(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    return frames


def test_stream_page_and_status(server):
    proc, url = server
    frames = read_mjpeg_frames(url, 3)
    assert all(frame is not None and frame.shape == (HEIGHT, WIDTH, 3) for frame in frames)

    with urllib.request.urlopen(url + "/", timeout=10) as response:
        page = response.read().decode("utf-8")
    assert '<img id="stream" src="/stream.mjpg"' in page and "/status.json" in page

    with urllib.request.urlopen(url + "/status.json", timeout=10) as response:
        status = json.loads(response.read())
    assert status["state"] == "running" and status["frames"] >= 3
    assert status["network_fps"] > 0 and status["pipeline_fps"] > 0 and status["latency_ms"] > 0
    assert status["model"].startswith("tiny.onnx")

    with urllib.request.urlopen(url + "/snapshot.jpg", timeout=10) as response:
        assert response.headers["Content-Type"] == "image/jpeg"
        assert cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR).shape == (HEIGHT, WIDTH, 3)

    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url + "/nothing", timeout=10)
    assert info.value.code == 404

    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in stderr


def test_busy_port_is_a_user_error(tmp_path):
    import socket

    model = tiny_onnx(str(tmp_path / "tiny.onnx"))
    video = write_video(str(tmp_path / "clip.avi"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "dfseg.cli.run", "--model", model, video, "http://127.0.0.1:{}".format(port)],
            capture_output=True, text=True, timeout=120,
        )
    assert proc.returncode == 2 and "cannot listen there" in proc.stderr
