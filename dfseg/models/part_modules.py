"""Standalone part modules: one ``dfseg.parts.Part`` built in isolation, for latency tables.

``build_part(part)`` returns the same module class the full network uses at ``part.name``, so it
computes exactly what that part computes inside the network (given the same weights and inputs).
Inputs (``part_inputs``): a fusion part takes ``(low, high)``, every other part one tensor.
"""

from typing import Optional, Tuple

import torch
from torch import nn

from ..parts import (
    CLASSIFIER,
    FUSION,
    HEAD,
    PPM_BINS,
    PPM_BRANCH_WIDTH,
    PYRAMID_POOLING,
    STEM,
    WIDTH_CONTROLLER,
    Part,
)
from .layers import BasicBlock, Bottleneck, Classifier, ConvBN, Fusion, PyramidPooling, SegHead, init_weights


def build_part(part: Part, projection: Optional[bool] = None) -> nn.Module:
    """The module for ``part`` (randomly initialised, eval mode).

    ``projection`` (bottlenecks only): whether the block has a projection shortcut; None takes
    ``part.projection`` (see ``dfseg.parts.needs_projection``).
    """
    kind = part.kind
    if kind == STEM:
        module: nn.Module = ConvBN(part.c_in, part.c_out, 3, part.stride)
    elif kind == "basic":
        module = BasicBlock(part.c_in, part.c_out, part.stride)
    elif kind == "bottleneck":
        if projection is None:
            projection = part.projection
        module = Bottleneck(part.c_in, part.inner, part.c_out, part.stride, projection)
    elif kind == CLASSIFIER:
        module = Classifier(part.c_in, part.c_out)
    elif kind == PYRAMID_POOLING:
        module = PyramidPooling(part.c_in, PPM_BRANCH_WIDTH, part.c_out, len(PPM_BINS))
    elif kind == WIDTH_CONTROLLER:
        module = ConvBN(part.c_in, part.c_out, 1)
    elif kind == FUSION:
        module = Fusion(part.c_in, part.c_out)
    elif kind == HEAD:
        # A head whose output stays at its input size is the d8 variant's.
        upsample = (part.h_out, part.w_out) != (part.h_in, part.w_in)
        head = SegHead(part.c_in, part.c_out, upsample=upsample)
        head.out_size = (part.h_out, part.w_out)
        module = head
    else:
        raise ValueError("unknown part kind {!r} ({})".format(kind, part.key))
    init_weights(module)
    return module.eval()


def part_inputs(part: Part, seed: int = 0) -> Tuple[torch.Tensor, ...]:
    """Example inputs for ``build_part(part)``: ``(low, high)`` for fusion, else ``(x,)``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, part.c_in, part.h_in, part.w_in, generator=generator)
    if part.kind != FUSION:
        return (x,)
    high = torch.randn(1, part.c_out, part.h_out, part.w_out, generator=generator)
    return x, high
