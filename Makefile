# Two commands set up everything on a fresh machine:  make demo  and  make test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The device side alone with a GUI OpenCV (opencv-python, not -headless: both install cv2), for test-display.
DISPLAY_VENV := .venv-display
# Modules that run on the Jetson under Python 3.6 (JetPack 4.6); vermin proves the floor.
# tests/test_device_modules.py fails when a module that dfseg-bench, dfseg-run or dfseg-eval can import is missing here.
DEVICE_MODULES := dfseg/__init__.py dfseg/api.py dfseg/errors.py dfseg/trt_parse_rules.py dfseg/uri.py dfseg/fileio.py dfseg/onnx_wire.py dfseg/arch.py dfseg/sizes.py dfseg/parts.py \
	dfseg/space.py dfseg/preprocess.py dfseg/build_config.py dfseg/backends/__init__.py dfseg/backends/base.py \
	dfseg/backends/onnxrt.py dfseg/backends/versions.py dfseg/backends/tensorrt \
	dfseg/latency dfseg/bench dfseg/live dfseg/eval.py dfseg/calibration.py dfseg/precision.py \
	dfseg/jetson.py dfseg/plots.py dfseg/journal.py dfseg/clocks.py dfseg/cityscapes.py dfseg/opencv_log.py \
	dfseg/cli/__init__.py dfseg/cli/common.py dfseg/cli/space_options.py dfseg/cli/bench.py dfseg/cli/run.py \
	dfseg/cli/eval.py

# A real H.264 RTSP server for tests/test_live_rtsp_h264.py: Debian's gst-rtsp-server, run by the system
# Python (python3-gi).  make test installs what is missing where it runs as root with apt-get (about
# 15 s, once); elsewhere, or when apt-get fails, those tests skip and say why.
RTSP_TEST_PACKAGES := python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-ugly

.PHONY: demo test test-packages test-browser test-display lint vermin clean

# The file target: rebuilt when the packaging changes.  CPU torch 2.13.0 comes first so that the
# host extra's torch range is already satisfied and pip never pulls a CUDA build.
$(VENV): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[host,dev,distributed]"
	touch $(VENV)

lint: $(VENV)
	$(BIN)/ruff check .

vermin: $(VENV)
	$(BIN)/vermin --no-tips --violations --eval-annotations --backport dataclasses --backport typing -t=3.6- $(DEVICE_MODULES)

test: $(VENV) lint vermin test-packages
	bash tools/run_pytest.sh $(BIN)/python

test-packages:
	@/usr/bin/python3 tests/gst_rtsp_server.py --check >/dev/null 2>&1 || \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(RTSP_TEST_PACKAGES) >/dev/null; } || \
		echo "make test: no GStreamer RTSP server here (needs root and apt-get): the H.264 RTSP tests will skip"

# The live page in a real headless Chromium (Debian's package; needs root for apt-get).
test-browser: $(VENV)
	command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)
	$(BIN)/python -m pytest tests/browser -q

# dfseg-run's window (display://0) on a real X server (Debian's Xvfb; needs root for apt-get): the
# main venv exports the model, $(DISPLAY_VENV) runs dfseg-run with an OpenCV that has a GUI.
$(DISPLAY_VENV): setup.py pyproject.toml
	$(PYTHON) -m venv $(DISPLAY_VENV)
	$(DISPLAY_VENV)/bin/pip install --quiet --upgrade pip
	$(DISPLAY_VENV)/bin/pip install --quiet -e ".[onnxruntime]" "opencv-python<5"
	touch $(DISPLAY_VENV)

test-display: $(VENV) $(DISPLAY_VENV)
	command -v Xvfb >/dev/null && command -v xwd >/dev/null && command -v xwininfo >/dev/null || \
		(apt-get update && apt-get install -y --no-install-recommends xvfb x11-utils x11-apps)
	$(BIN)/python -m pytest tests/display -q

demo: $(VENV)
	$(BIN)/python tools/demo.py

clean:
	rm -rf $(VENV) $(DISPLAY_VENV) build *.egg-info demo-out
