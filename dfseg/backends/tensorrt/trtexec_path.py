"""Where trtexec is, without importing anything heavy (``dfseg.backends.available_backends`` asks on every
``--backend auto``).  Device side: Python 3.6, no torch."""

import os
import shutil
from typing import Optional

# JetPack and NVIDIA's containers install trtexec here, off PATH.
DEFAULT_LOCATIONS = ("/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec")


def locate_trtexec() -> Optional[str]:
    """$TRTEXEC, else trtexec on PATH, else JetPack's install location; None where none is executable."""
    for candidate in (os.environ.get("TRTEXEC"), shutil.which("trtexec")) + DEFAULT_LOCATIONS:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None
