"""DF-Seg: a DF backbone with the release's decoder (pyramid pooling, width controllers, fusion).

Input sizes: any (224x224, 640x360, 1280x720, 1920x1080, 2048x1024, odd sizes such as 250x170).

* Stride-2 convolutions give ceil(h / 2) (``dfseg.parts.stage_shapes``).
* Pyramid pooling uses static average pools, kernel = stride = ``dfseg.parts.ppm_kernels`` with
  ceil mode, which reproduces the release's 32/16/8/4 at 2048x1024; no adaptive pooling.
* Where the x2 upsampled tensor is one pixel larger than the skip tensor, it is cropped (a static
  slice at the bottom/right).
* The head's x8 output is cropped to the input size.  The d8 variant (``output_stride == 8``)
  returns the prediction at 1/8; ``dfseg.preprocess.upsample_nearest`` enlarges it outside the network.

Module paths equal the ``dfseg.parts.Part`` names: ``ppm``, ``wc3``, ``wc4``, ``wc5``, ``fuse4``,
``fuse3``, ``head`` (exported ONNX nodes carry them as scope prefixes).
"""

import torch

from ..arch import Arch
from ..parts import PPM_BINS, PPM_BRANCH_WIDTH, PPM_OUT_WIDTH
from .dfnet import Backbone
from .layers import ConvBN, Fusion, PyramidPooling, SegHead, init_weights, spatial_size


class DFSeg(Backbone):
    """A DF-Seg network built from an ``Arch`` with a decoder ``[C3, C4, C5]``."""

    def __init__(self, arch: Arch) -> None:
        if not arch.is_segmentation or arch.decoder is None:
            raise ValueError("DFSeg needs an architecture with a decoder; {} has none".format(arch.short()))
        super().__init__(arch)
        c3, c4, c5 = arch.decoder
        widths = [stage[-1].width for stage in arch.stages]
        self.ppm = PyramidPooling(widths[2], PPM_BRANCH_WIDTH, PPM_OUT_WIDTH, len(PPM_BINS))
        self.wc3 = ConvBN(widths[0], c3, 1)
        self.wc4 = ConvBN(widths[1], c4, 1)
        self.wc5 = ConvBN(PPM_OUT_WIDTH, c5, 1)
        self.fuse4 = Fusion(c5, c4)
        self.fuse3 = Fusion(c4, c3)
        self.head = SegHead(c3, arch.classes, upsample=arch.output_stride == 1)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = spatial_size(x)
        c3, c4, c5 = self.features(x)
        f4 = self.fuse4(self.wc5(self.ppm(c5)), self.wc4(c4))
        f3 = self.fuse3(f4, self.wc3(c3))
        return self.head(f3, size)
