"""PNG plots: matplotlib on its file-only backend, and atomic PNG writes.

Device side (Python 3.6, no torch); matplotlib is optional there and imported only when a plot is
made, so callers that can do without a plot catch ImportError.
"""

import io
from typing import Any

from .fileio import write_atomic


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed); ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(figure: Any, path: str, dpi: int = 110) -> str:
    """Write ``figure`` to ``path`` atomically and release it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(figure)
    write_atomic(path, buffer.getvalue())
    return path
