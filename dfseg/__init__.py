"""dfseg: DF networks, Jetson deployment and Partial Order Pruning search.

Importing dfseg is cheap and safe on a device without torch or TensorRT: heavy and optional
dependencies are imported by the modules that need them, when they need them.
"""

__version__ = "0.1.0"


def load(*args, **kwargs):  # type: ignore[no-untyped-def]
    """``dfseg.api.load``, imported on first use so that ``import dfseg`` stays cheap (see dfseg/api.py)."""
    from .api import load as _load

    return _load(*args, **kwargs)
