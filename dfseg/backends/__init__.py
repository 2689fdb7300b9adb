"""Inference backends behind one runner interface (see ``base.BaseRunner``).

Nothing heavy is imported here: ``onnxruntime``, ``tensorrt`` and ``torch`` load when a runner
activates, so ``import dfseg.backends`` works on any machine.  Device side: Python 3.6.
"""

import importlib.util
import shutil
from typing import List, Optional, Sequence

from ..build_config import BuildConfig
from ..errors import UserError
from .base import BaseRunner, RunnerError, TensorMeta, TimingResult

__all__ = [
    "BACKENDS",
    "ENGINE_SUFFIXES",
    "BaseRunner",
    "RunnerError",
    "TensorMeta",
    "TimingResult",
    "available_backends",
    "backend_for",
    "best_backend",
    "get_runner",
]

# Preference order when the user does not choose.
BACKENDS = ("tensorrt", "trtexec", "onnxruntime")
# File name endings of serialised TensorRT engines.
ENGINE_SUFFIXES = (".engine", ".trt", ".plan")


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def available_backends() -> List[str]:
    """Backends usable on this machine, fastest first."""
    found = []
    if _has_module("tensorrt"):
        found.append("tensorrt")
    if shutil.which("trtexec") or shutil.which("/usr/src/tensorrt/bin/trtexec"):
        found.append("trtexec")
    if _has_module("onnxruntime"):
        found.append("onnxruntime")
    return found


def best_backend() -> str:
    found = available_backends()
    if not found:
        raise UserError("no inference backend is installed: pip install onnxruntime (or install TensorRT)")
    return found[0]


def backend_for(backend: str, model_path: str) -> str:
    """The backend for ``model_path``: ``auto`` becomes tensorrt for an engine file and onnxruntime for
    an .onnx file; any other choice (or ``auto`` for another file name) is returned unchanged."""
    if backend == "auto":
        if model_path.endswith(ENGINE_SUFFIXES):
            return "tensorrt"
        if model_path.endswith(".onnx"):
            return "onnxruntime"
    return backend


def get_runner(
    backend: str,
    model_path: str,
    providers: Optional[Sequence[str]] = None,
    threads: Optional[int] = None,
    config: Optional[BuildConfig] = None,
    **options
) -> BaseRunner:
    """A runner for ``model_path`` on ``backend`` (``auto`` picks the best available), building the model
    as ``config`` says (precision and the rest; FP32 defaults when None)."""
    config = (config or BuildConfig()).checked()
    if backend == "auto":
        backend = best_backend()
    if backend == "onnxruntime":
        from .onnxrt import OnnxRuntimeRunner

        return OnnxRuntimeRunner(model_path, providers=providers, threads=threads, config=config, **options)
    if backend == "tensorrt":
        from .tensorrt.runner import TensorRTRunner

        return TensorRTRunner(model_path, config=config, **options)
    if backend == "trtexec":
        from .tensorrt.trtexec import TrtexecRunner

        return TrtexecRunner(model_path, config=config, **options)
    raise UserError("unknown backend {!r}; choose one of: auto, {}".format(backend, ", ".join(BACKENDS)))
