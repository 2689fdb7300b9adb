"""rtsp:// input from a real H.264 RTSP server: GStreamer's gst-rtsp-server (tests/gst_rtsp_server.py,
a subprocess of the system Python) with user and password, read by OpenCV's FFmpeg backend through
dfseg-run and the API.  Every frame carries its number in colour blocks (tests/frame_pattern.py), so
the tests check which frame arrived, through x264 and back.  ``make test`` installs Debian's
packages for the server; where they are missing (not root, no apt-get) the server tests skip.

The credentials check (rtsp_auth) is also held to RFC 2617's own Digest example, which needs no server."""

import os
import re
import signal
import subprocess
import sys
import threading
from urllib.parse import quote

import cv2
import numpy as np
import pytest
from gst_rtsp_server import H264RtspServer, missing
from rtsp_server import pattern_frame, read_pattern
from test_live_pipeline import run_cli, tiny_onnx
from test_live_rtsp import wait_for

import dfseg
from dfseg.backends.onnxrt import OnnxRuntimeRunner
from dfseg.errors import UserError
from dfseg.live import rtsp_auth
from dfseg.live.segmenter import Segmenter

USER = "viewer"
PASSWORD = "pa:ss@w/rd%1"  # every character that must be percent-encoded in a URL's userinfo
WIDTH, HEIGHT = 192, 96
_MISSING = []  # the reason the server cannot run here, asked once per session


def server_missing():
    if not _MISSING:
        _MISSING.append(missing())
    return _MISSING[0]


@pytest.fixture
def gst(tmp_path):
    """A factory of started servers (user and password set), all stopped at the end of the test."""
    reason = server_missing()
    if reason:
        pytest.skip("no GStreamer RTSP server: " + reason)
    servers = []

    def start(auth="basic", fps=25.0):
        server = H264RtspServer(str(tmp_path / "server-{}.log".format(len(servers))), USER, PASSWORD, auth=auth,
                                width=WIDTH, height=HEIGHT, fps=fps)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_onnx(str(tmp_path_factory.mktemp("model") / "tiny.onnx"))


def with_credentials(server, password=PASSWORD, user=USER):
    return server.url_with(quote(user, safe=""), quote(password, safe=""))


# ------------------------------------------------------------------ reading H.264


def test_the_api_segments_h264_frames_given_the_right_password(gst, model):
    server = gst()
    with dfseg.load(model, backend="onnxruntime", threads=1) as loaded:
        results = []
        with loaded.stream(with_credentials(server)) as stream:
            for result in stream:
                results.append(result)
                if len(results) == 25:
                    break
        numbers = [read_pattern(r.frame) for r in results]
        # One session: the stream's frames in order (a live source may drop a stale one, never reorder).
        assert None not in numbers and numbers == sorted(set(numbers)) and numbers[0] < 25, numbers
        for result, number in zip(results, numbers):
            assert result.frame.shape == (HEIGHT, WIDTH, 3) and result.frame.dtype == np.uint8
            # H.264 keeps flat blocks close to what the server encoded (the edges between blocks blur).
            expected = pattern_frame(number, WIDTH, HEIGHT).astype(int)
            assert np.median(np.abs(result.frame.astype(int) - expected)) <= 4
            np.testing.assert_array_equal(result.classmap, loaded(result.frame))


# ------------------------------------------------------------------ refused credentials


@pytest.mark.parametrize("auth", ["basic", "digest"])
def test_a_wrong_password_is_one_line_saying_the_credentials_were_refused(gst, model, auth):
    server = gst(auth)
    wrong = "not-" + PASSWORD
    proc = run_cli("--model", model, with_credentials(server, wrong), "none", timeout=180)
    assert proc.returncode == 2, proc.stderr
    redacted = server.url.replace("rtsp://", "rtsp://***@")
    assert proc.stderr.splitlines() == ["dfseg-run: error: {}: {}".format(redacted, rtsp_auth.REFUSED)], proc.stderr
    assert quote(wrong, safe="") not in proc.stderr + proc.stdout and USER not in proc.stderr
    # The same password is accepted: the message is about the password, not about the server.
    assert rtsp_auth.credentials_problem(with_credentials(server), 30.0) is None


def test_no_credentials_for_a_server_that_wants_them_says_so(gst, model):
    server = gst()
    proc = run_cli("--model", model, server.url, "none", timeout=180)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == ["dfseg-run: error: {}: {}".format(server.url, rtsp_auth.REQUIRED)]


def test_the_api_raises_the_refusal_as_a_user_error(gst, model):
    server = gst("digest")
    with dfseg.load(model, backend="onnxruntime", threads=1) as loaded:
        with pytest.raises(UserError) as refused:
            loaded.stream(with_credentials(server, "wrong"))
    assert str(refused.value) == "{}: {}".format(server.url.replace("rtsp://", "rtsp://***@"), rtsp_auth.REFUSED)


def test_digest_answers_rfc_2617s_own_example():
    """RFC 2617 section 3.5: user Mufasa, password "Circle Of Life", qop=auth, cnonce 0a4f113b."""
    challenge = rtsp_auth._parameters('realm="testrealm@host.com", qop="auth,auth-int", '
                                      'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    header = rtsp_auth._digest(challenge, "Mufasa", "Circle Of Life", "GET", "/dir/index.html", cnonce="0a4f113b")
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header and "qop=auth" in header and "nc=00000001" in header


# ------------------------------------------------------------------ the server restarted mid-run


def test_dfseg_run_reconnects_to_a_restarted_server_on_the_same_port(gst, model, tmp_path):
    """The server is killed (SIGKILL, as a crash) while frames flow and started again on the same port:
    dfseg-run reconnects with the same credentials and goes on segmenting the new session's frames,
    which start again at frame 0; SIGTERM then finalises the outputs."""
    server = gst(fps=10.0)  # 51 s before the frame numbers wrap: one wrap-free session whatever the load
    frames_dir = tmp_path / "frames"
    labels_dir = tmp_path / "labels"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dfseg.cli.run", "--model", model, with_credentials(server), str(frames_dir) + "/",
         "--save-labels", str(labels_dir), "--overlay", "side", "--no-legend", "--no-status",
         "--reconnect-attempts", "120", "--reconnect-delay", "0.5"],
        stderr=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    seen = {}  # frame file name: the stream frame number it shows

    def numbers():
        """The stream frame numbers of the frames written so far, in the order dfseg-run read them."""
        names = sorted(n for n in os.listdir(str(frames_dir)) if re.fullmatch(r"\d{6}\.png", n)) \
            if frames_dir.is_dir() else []
        for name in names:
            if name not in seen:
                image = cv2.imread(str(frames_dir / name))  # written atomically: whole or not there
                seen[name] = read_pattern(image[:, :WIDTH])
                assert seen[name] is not None, "{} shows no frame number".format(name)
        return [seen[name] for name in names]

    def after_restart():
        """The frames of the second session: those after the first step back in frame number."""
        shown = numbers()
        backs = [i for i in range(1, len(shown)) if shown[i] <= shown[i - 1]]
        return shown[backs[0]:] if backs else []

    try:
        assert wait_for(lambda: len(numbers()) >= 5, 180.0), "".join(lines)
        server.kill()
        assert wait_for(lambda: any("reconnecting" in line for line in lines), 120.0), "".join(lines)
        server.start(server.port)
        assert wait_for(lambda: len(after_restart()) >= 10, 180.0), ("".join(lines), numbers())
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=30)
    stderr = "".join(lines)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr and "gave up" not in stderr
    redacted = server.url.replace("rtsp://", "rtsp://***@")
    attempts = [line.rstrip("\n") for line in lines if "reconnecting" in line]
    assert attempts and all(re.fullmatch(re.escape(redacted) + r": no frame; reconnecting \(\d+/120\)", a)
                            for a in attempts), attempts
    assert quote(PASSWORD, safe="") not in stderr

    shown = numbers()  # every frame written, SIGTERM's last ones included
    # Two sessions, each in order (a live source drops stale frames, never reorders): one step back,
    # to the restarted server's first frames, then at least the ten waited for.
    backs = [i for i in range(1, len(shown)) if shown[i] <= shown[i - 1]]
    assert len(backs) == 1 and shown[backs[0]] < shown[backs[0] - 1] and len(shown) - backs[0] >= 10, shown
    names = sorted(seen)
    with OnnxRuntimeRunner(model) as runner:
        segmenter = Segmenter(runner)
        for name in names:
            frame = cv2.imread(str(frames_dir / name))
            labels = cv2.imread(str(labels_dir / name), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(labels, segmenter.segment(frame[:, :WIDTH]))
