"""Which version of a backend's runtime is installed, for the records a benchmark or a table keeps.

Beside the backends rather than in them (``dfseg.backends`` is their registry): asking for a version
imports only the runtime's top module, never a runner.  Device side: Python 3.6, no torch.
"""

from typing import Optional

# trtexec reports the TensorRT it was built with; the Python module of the same install names it.
_MODULES = {"onnxruntime": "onnxruntime", "tensorrt": "tensorrt", "trtexec": "tensorrt"}


def backend_version(backend: str) -> Optional[str]:
    """The installed version of ``backend``'s runtime, or None when it is unknown or not installed."""
    module = _MODULES.get(backend)
    if module is None:
        return None
    try:
        return getattr(__import__(module), "__version__", None)
    except ImportError:
        return None
