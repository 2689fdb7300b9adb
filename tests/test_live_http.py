"""dfseg-run's http:// output, read with a real HTTP client on 127.0.0.1."""

import base64
import json
import os
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


def start_http_run(tmp_path, host="127.0.0.1", extra=(), env=None, lines=None):
    """dfseg-run looping a clip into http://HOST:<free port>; returns (process, base URL on 127.0.0.1).
    ``lines`` collects what dfseg-run printed up to its address."""
    model = tiny_onnx(str(tmp_path / "tiny.onnx"))
    video = write_video(str(tmp_path / "clip.avi"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dfseg.cli.run", "--model", model, video, "http://{}:0".format(host), "--input-loop",
         "-1", *extra], stderr=subprocess.PIPE, text=True, preexec_fn=like_a_terminal, env=env,
    )
    url = None
    deadline = time.time() + 60
    while url is None and time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if lines is not None:
            lines.append(line)
        match = re.search(r"streaming on http://[^:]+:(\d+)", line)
        url = "http://127.0.0.1:" + match.group(1) if match else None
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


def read_mjpeg_frames(url, count, query=""):
    frames = []
    with urllib.request.urlopen(url + "/stream.mjpg" + query, timeout=30) as response:
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
    output = status["latency"]["output"]
    assert output["frames"] >= 3 and 0 <= output["p50"] <= output["p95"] <= output["p99"]
    assert 'id="latency_output"' in page

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


TOKEN = "s3cret-token-for-the-test"


def status_of(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read(1)
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_token_protects_every_path_and_is_never_printed(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    lines = []
    proc, url = start_http_run(tmp_path, extra=["--http-token-file", str(token_file)], lines=lines)
    try:
        for path in ("/", "/status.json", "/snapshot.jpg", "/stream.mjpg", "/nothing"):
            assert status_of(url + path) == 401, path
            assert status_of(url + path + "?token=" + TOKEN[:-1]) == 401, path
            assert status_of(url + path + "?token=" + TOKEN + "x") == 401, path
            assert status_of(url + path, {"Authorization": "Bearer wrong-token-value"}) == 401, path
        assert status_of(url + "/?token=" + TOKEN) == 200
        assert status_of(url + "/status.json", {"Authorization": "Bearer " + TOKEN}) == 200
        basic = base64.b64encode(("viewer:" + TOKEN).encode()).decode()
        assert status_of(url + "/status.json", {"Authorization": "Basic " + basic}) == 200
        assert status_of(url + "/status.json", {"Authorization": "Basic !!not base64"}) == 401
        with urllib.request.urlopen(url + "/?token=" + TOKEN, timeout=30) as response:
            page = response.read().decode()
        assert '"/stream.mjpg" + query' in page and '"/status.json" + query' in page  # the page passes it on
        assert len(read_mjpeg_frames(url, 2, "?token=" + TOKEN)) == 2
        assert any("token required" in line for line in lines)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert TOKEN not in "".join(lines) + err
    assert "warning" not in "".join(lines)


def test_serving_every_address_without_a_token_warns_and_with_one_does_not(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DFSEG_HTTP_TOKEN"}
    lines = []
    proc, url = start_http_run(tmp_path, host="0.0.0.0", env=env, lines=lines)
    proc.kill()
    proc.wait()
    warnings = [line for line in lines if "warning" in line]
    assert len(warnings) == 1 and "every host that can reach port" in warnings[0] and "--http-token-file" in warnings[0]
    lines = []
    proc, url = start_http_run(tmp_path, host="0.0.0.0", env=dict(env, DFSEG_HTTP_TOKEN=TOKEN), lines=lines)
    try:
        assert status_of(url + "/status.json") == 401
        assert status_of(url + "/status.json?token=" + TOKEN) == 200
    finally:
        proc.kill()
        proc.wait()
    assert not [line for line in lines if "warning" in line]


@pytest.mark.parametrize("content, message", [("short\n", "at least 12 printable characters"),
                                              ("has a space inside it\n", "without spaces"),
                                              (None, "cannot read it")])
def test_a_weak_or_missing_token_file_is_a_one_line_error(tmp_path, content, message):
    token_file = tmp_path / "token"
    if content is not None:
        token_file.write_text(content)
    model = tiny_onnx(str(tmp_path / "tiny.onnx"))
    video = write_video(str(tmp_path / "clip.avi"))
    proc = subprocess.run([sys.executable, "-m", "dfseg.cli.run", "--model", model, video, "http://127.0.0.1:0",
                           "--http-token-file", str(token_file)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("dfseg-run: error: --http-token-file ")
    assert message in proc.stderr


def test_the_status_names_a_built_model_only_while_it_exists(tmp_path) -> None:
    """dfseg-run of a model name exports into a scratch folder that is removed once the runtime has
    loaded it: the status page must not point people at a file that is gone."""
    from types import SimpleNamespace

    from dfseg.live.http import run_status
    graph = tmp_path / "model.fp16.onnx"
    graph.write_bytes(b"graph")
    runner = SimpleNamespace(backend="onnxruntime", artefact=str(graph))
    assert run_status(None, runner, "m", "fp16", "video.mp4")["built_model"] == str(graph)
    graph.unlink()
    assert run_status(None, runner, "m", "fp16", "video.mp4")["built_model"] is None
    assert run_status(None, None, "m", "fp16", "video.mp4")["built_model"] is None
