"""DF backbones (DF1, DF2, DF2A and any other ``Arch`` without a decoder) for ImageNet.

Input sizes: any.  Every stride-2 3x3 convolution (padding 1) maps h to ceil(h / 2), the same rule as
``dfseg.parts.stage_shapes``, and the classifier pools globally (the release's 7x7 average pool is
global at 224x224).
"""

from typing import Optional, Tuple

import torch
from torch import nn

from ..arch import BOTTLENECK, Arch, Block
from ..parts import needs_projection
from .layers import BasicBlock, Bottleneck, Classifier, Stem, init_weights


def make_block(block: Block, c_in: int, stride: int, projection: bool) -> nn.Module:
    if block.kind == BOTTLENECK:
        assert block.inner is not None
        return Bottleneck(c_in, block.inner, block.width, stride, projection)
    return BasicBlock(c_in, block.width, stride)


def make_stage(stage: Tuple[Block, ...], c_in: int) -> nn.Sequential:
    """One stage: the first block has stride 2, later blocks stride 1."""
    blocks = []
    previous: Optional[Block] = None
    for j, block in enumerate(stage):
        stride = 2 if j == 0 else 1
        blocks.append(make_block(block, c_in, stride, needs_projection(block, previous, c_in, stride)))
        c_in, previous = block.width, block
    return nn.Sequential(*blocks)


class Backbone(nn.Module):
    """Stem and stages 3-5 of ``arch``; module paths are the ``dfseg.parts.Part`` names
    (``stem.conv1``, ``stage3.0``, ...)."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        self.arch = arch
        self.stem = Stem(arch.stem)
        c_in = arch.stem[1]
        self.stage3 = make_stage(arch.stages[0], c_in)
        self.stage4 = make_stage(arch.stages[1], arch.stages[0][-1].width)
        self.stage5 = make_stage(arch.stages[2], arch.stages[1][-1].width)

    def features(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Outputs of stages 3, 4 and 5 (1/8, 1/16, 1/32 of the input, rounded up)."""
        c3 = self.stage3(self.stem(x))
        c4 = self.stage4(c3)
        return c3, c4, self.stage5(c4)


class DFNet(Backbone):
    """A DF classification network: backbone + global average pool + fully connected layer."""

    def __init__(self, arch: Arch) -> None:
        if arch.is_segmentation:
            raise ValueError("DFNet builds backbones; use DFSeg for {}".format(arch.short()))
        super().__init__(arch)
        self.classifier = Classifier(arch.stages[2][-1].width, arch.classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)[2])
