"""The TensorRT runner on a machine without TensorRT: a clear one-line error, not an ImportError, and
the device-side modules stay importable (and compile) under Python 3.6."""

import glob
import os
import shutil
import subprocess
import sys

import pytest

from dfseg.backends import get_runner
from dfseg.build_config import BuildConfig
from dfseg.errors import UserError

DEVICE_SIDE = ["dfseg/build_config.py", "dfseg/calibration.py", "dfseg/jetson.py"] + sorted(
    glob.glob(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "dfseg/backends/tensorrt/*.py")))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_missing_tensorrt_is_a_user_error(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here; tests/gpu covers the real runner")
    except ImportError:
        pass
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    runner = get_runner("tensorrt", str(model), config=BuildConfig(precision="fp16"))
    with pytest.raises(UserError, match="pip install 'dfseg.tensorrt.'"):
        runner.activate()
    assert not runner.is_active
    with pytest.raises(UserError, match="precision 'bf16'"):
        get_runner("tensorrt", str(model), config=BuildConfig(precision="bf16"))


def test_device_side_modules_never_import_torch():
    code = ("import sys; import dfseg.build_config, dfseg.calibration, dfseg.jetson, "
            "dfseg.backends.tensorrt.engines, dfseg.backends.tensorrt.profiling, dfseg.backends.tensorrt.builder, "
            "dfseg.backends.tensorrt.runner, dfseg.backends.tensorrt.compat, dfseg.backends.tensorrt.trtexec, "
            "dfseg.backends.tensorrt.cuda_memory, dfseg.backends.tensorrt.calibrator; "
            "bad = [m for m in ('torch', 'tensorrt', 'pycuda', 'cv2', 'onnx') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_device_side_compiles_under_python_3_6():
    candidates = [os.environ.get("DFSEG_PYTHON36", "")] + sorted(
        glob.glob(os.path.expanduser("~/.pyenv/versions/3.6*/bin/python3.6"))) + [shutil.which("python3.6") or ""]
    python36 = next((c for c in candidates if c and os.path.exists(c)), None)
    if python36 is None:
        pytest.skip("no Python 3.6 interpreter here (CI checks the floor with vermin)")
    done = subprocess.run([python36, "-c", "import sys, py_compile; [py_compile.compile(f, doraise=True) "
                           "for f in sys.argv[1:]]"] + DEVICE_SIDE, cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0 and "pyenv: python3.6: command not found" in done.stdout:
        pytest.skip("python3.6 shim without an active 3.6")
    assert done.returncode == 0, done.stdout
