"""The http:// status page in a real headless Chromium: the page's script must fill in the live
numbers from /status.json and the MJPEG stream must render.  Run with ``make test-browser``
(installs the distribution's chromium); skipped where no Chromium is installed.  Localhost only."""

import os
import re
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from test_live_http import start_http_run  # noqa: E402

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (make test-browser installs it)")


def chromium(*args):
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-extensions",
        "--disable-sync", "--no-first-run", "--disable-default-apps", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


def test_page_shows_live_numbers_and_stream(tmp_path):
    proc, url = start_http_run(tmp_path)
    try:
        # Let the page run its 1 s refresh a few times before the DOM is dumped.
        dom = chromium("--virtual-time-budget=4000", "--dump-dom", url + "/").stdout
        fps = re.search(r'id="network_fps">([0-9.]+)<', dom)
        assert fps and float(fps.group(1)) > 0, dom[-2000:]
        assert re.search(r'id="state">running<', dom)
        assert re.search(r'id="model">tiny\.onnx', dom)
        shot = tmp_path / "page.png"
        chromium("--screenshot={}".format(shot), "--window-size=640,480", "--virtual-time-budget=3000", url + "/")
        assert shot.exists() and shot.stat().st_size > 1000
    finally:
        proc.kill()
        proc.wait()
