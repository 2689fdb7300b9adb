"""PyTorch DF networks (host side: needs torch).

``create_model("df1-seg")`` builds any preset, short string, JSON or ``Arch``; module paths equal
``dfseg.parts.Part`` names.  See ``dfseg.models.seg`` for how any input size is handled.
"""

from .dfnet import DFNet
from .macs import count_macs, count_params
from .part_modules import build_part, part_inputs
from .registry import build_model, create_model, list_models, model_arch
from .seg import DFSeg

__all__ = [
    "DFNet",
    "DFSeg",
    "build_model",
    "build_part",
    "count_macs",
    "count_params",
    "create_model",
    "list_models",
    "model_arch",
    "part_inputs",
]
