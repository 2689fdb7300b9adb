"""Which version of a backend's runtime is installed, for the records a benchmark or a table keeps.

Beside the backends rather than in them (``dfseg.backends`` is their registry): asking for a version
imports only the runtime's top module, never a runner.  Device side: Python 3.6, no torch.
"""

from typing import Optional

_MODULES = {"onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}


def backend_version(backend: str) -> Optional[str]:
    """The installed version of ``backend``'s runtime, or None when it is unknown or not installed."""
    if backend == "trtexec":
        # The binary's own release (its banner): the tensorrt module may be absent or another install.
        from ..errors import UserError
        from .tensorrt.trtexec import TrtexecError, find_trtexec, trtexec_version

        try:
            return trtexec_version(find_trtexec())[2]
        except (UserError, TrtexecError):
            return None
    module = _MODULES.get(backend)
    if module is None:
        return None
    try:
        return getattr(__import__(module), "__version__", None)
    except ImportError:
        return None
