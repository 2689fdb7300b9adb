"""Inference backends behind one runner interface (see ``base.BaseRunner``).

Nothing heavy is imported here: ``onnxruntime`` and ``tensorrt`` load when a runner activates or when
``--backend auto`` asks which of them import, so ``import dfseg.backends`` works on any machine.
Device side: Python 3.6.
"""

import importlib
from typing import List, NamedTuple, Optional, Sequence

from ..build_config import BuildConfig
from ..errors import UserError
from .base import BaseRunner, RunnerError, TensorMeta, TimingResult
from .tensorrt.trtexec_path import locate_trtexec

__all__ = [
    "BACKENDS",
    "ENGINE_SUFFIXES",
    "BackendChoice",
    "BaseRunner",
    "RunnerError",
    "TensorMeta",
    "TimingResult",
    "available_backends",
    "best_backend",
    "get_runner",
    "refuse_trtexec",
    "resolve_backend",
]

# Preference order when the user does not choose.
BACKENDS = ("tensorrt", "trtexec", "onnxruntime")
# File name endings of serialised TensorRT engines.
ENGINE_SUFFIXES = (".engine", ".trt", ".plan")
# The CUDA bindings the tensorrt runner can use (``tensorrt.cuda_memory``): pycuda or cuda-python.
CUDA_BINDINGS = (("pycuda.driver",), ("cuda.bindings.runtime", "cuda.cudart"))


def _imports(name: str) -> bool:
    try:
        importlib.import_module(name)
    except Exception:  # not installed, or installed for another Python / CUDA: unusable either way
        return False
    return True


def _tensorrt_missing() -> Optional[str]:
    """What the tensorrt backend lacks in this Python (None when it has everything)."""
    if not _imports("tensorrt"):
        return "the tensorrt module"
    if not any(any(_imports(name) for name in names) for names in CUDA_BINDINGS):
        return "pycuda or cuda-python (pip install pycuda)"
    return None


def available_backends() -> List[str]:
    """Backends usable on this machine, fastest first: tensorrt where its module and CUDA bindings
    import, trtexec where the binary is found ($TRTEXEC, PATH, JetPack's location), onnxruntime."""
    found = []
    if _tensorrt_missing() is None:
        found.append("tensorrt")
    if locate_trtexec():
        found.append("trtexec")
    if _imports("onnxruntime"):
        found.append("onnxruntime")
    return found


class BackendChoice(NamedTuple):
    backend: str
    note: Optional[str]  # one line for the user when ``auto`` passed over an installed TensorRT


def resolve_backend(choice: str, model_path: Optional[str] = None) -> BackendChoice:
    """What ``--backend CHOICE`` means, the same in every command.  ``auto``: tensorrt for an engine file;
    else tensorrt where its Python module and CUDA bindings import, else onnxruntime.  ``auto`` never picks
    trtexec: it times engines in a process of its own (``dfseg-bench --backend trtexec``) and runs no
    frames.  Where TensorRT is installed but this Python cannot use it, ``note`` says how to fix that."""
    if choice != "auto":
        return BackendChoice(choice, None)
    if model_path is not None and model_path.endswith(ENGINE_SUFFIXES):
        return BackendChoice("tensorrt", None)
    missing = _tensorrt_missing()
    if missing is None:
        return BackendChoice("tensorrt", None)
    if not _imports("onnxruntime"):
        raise UserError("no inference backend is installed: pip install onnxruntime (or make TensorRT's Python "
                        "module importable: {} is missing)".format(missing))
    trtexec = locate_trtexec()
    note = None
    if trtexec:
        note = ("TensorRT is installed ({}) but this Python cannot import {}, so --backend auto uses onnxruntime; "
                "to use TensorRT, run the system python3 or a virtualenv made with --system-site-packages "
                "(python3 -m venv --system-site-packages VENV), where JetPack's tensorrt module imports "
                "(dfseg-bench --backend trtexec times engines without it)".format(trtexec, missing))
    return BackendChoice("onnxruntime", note)


def best_backend() -> str:
    """The backend ``auto`` picks for an ONNX model (see ``resolve_backend``)."""
    return resolve_backend("auto").backend


def refuse_trtexec(backend: str) -> None:
    """For commands that run frames: trtexec cannot (one process and a text dump of every output per frame)."""
    if backend == "trtexec":
        raise UserError("--backend trtexec: trtexec only builds and times engines (one process per call, outputs "
                        "as text); use --backend tensorrt (TensorRT's Python module) or onnxruntime, and dfseg-bench "
                        "--backend trtexec to time engines")


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
        backend = resolve_backend(backend, model_path).backend
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
