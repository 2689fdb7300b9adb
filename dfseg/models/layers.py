"""Building blocks of the DF networks, as the authors' Caffe release defines them.

Every convolution has no bias and is followed by BatchNorm (Caffe's eps 1e-4).  ``ConvBN`` keeps the
pair together under the names ``conv`` and ``bn`` so that BN folding for deployment
(``dfseg.export.fold_batchnorm``) and a converter for the released weights (``res2.0.conv1`` and
``res2.0.conv1/bn``) both find them without guessing.
"""

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..parts import ppm_kernels

BN_EPS = 1e-4


def spatial_size(x: torch.Tensor) -> Tuple[int, int]:
    """(height, width) of ``x`` as Python ints.

    While ``torch.onnx.export`` traces, ``x.shape`` yields tensors and would put Shape/Gather nodes
    into the graph; plain ints make every crop and resize static, which TensorRT 8.2 prefers.  The
    export silences the tracer's warning about this conversion: shapes are static by design.
    """
    return int(x.shape[-2]), int(x.shape[-1])


class ConvBN(nn.Module):
    """Convolution without bias, BatchNorm, optional ReLU (the release's conv + /bn + /bn_scale)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.relu = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        if self.relu is not None:
            x = self.relu(x)
        return x


def _shortcut(c_in: int, c_out: int, stride: int, projection: Optional[bool] = None) -> Optional[ConvBN]:
    """1x1 projection + BN whenever stride or width changes (stage 3's first block included).

    ``projection=True`` forces one where the tensor shapes alone would allow identity (see
    ``Bottleneck``); None applies the shape rule.
    """
    if projection is None:
        projection = stride != 1 or c_in != c_out
    return ConvBN(c_in, c_out, 1, stride, relu=False) if projection else None


class BasicBlock(nn.Module):
    """Post-activation basic block; the stride sits on the first 3x3."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvBN(c_in, c_out, 3, stride)
        self.conv2 = ConvBN(c_out, c_out, 3, relu=False)
        self.shortcut = _shortcut(c_in, c_out, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.conv2(self.conv1(x)) + identity)


class Bottleneck(nn.Module):
    """Post-activation bottleneck (1x1 to inner, 3x3 at inner, 1x1 to out); stride on the 3x3.

    ``projection``: None = projection iff stride or width changes; True/False forces it.  The
    release also projects where only the inner width grows (DF2A's first (512,512,1024) block
    after (256,256,1024) ones), see ``dfseg.parts.needs_projection``.
    """

    def __init__(self, c_in: int, inner: int, c_out: int, stride: int = 1, projection: Optional[bool] = None) -> None:
        super().__init__()
        self.conv1 = ConvBN(c_in, inner, 1)
        self.conv2 = ConvBN(inner, inner, 3, stride)
        self.conv3 = ConvBN(inner, c_out, 1, relu=False)
        self.shortcut = _shortcut(c_in, c_out, stride, projection)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class Stem(nn.Module):
    """Paper stages 1 and 2: two 3x3 stride-2 convolutions."""

    def __init__(self, widths: Tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = ConvBN(3, widths[0], 3, 2)
        self.conv2 = ConvBN(widths[0], widths[1], 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class Classifier(nn.Module):
    """Global average pool (the release's 7x7 pool at 224x224) and a fully connected layer with bias."""

    def __init__(self, c_in: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)  # exported as GlobalAveragePool
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Caffe's ``bilinear`` filler for a grouped deconvolution: weight of shape (C, 1, k, k)."""
    factor = math.ceil(kernel_size / 2)
    center = (2 * factor - 1 - factor % 2) / (2.0 * factor)
    taps = 1 - torch.abs(torch.arange(kernel_size, dtype=torch.float64) / factor - center)
    kernel = (taps[:, None] * taps[None, :]).to(torch.float32)
    return kernel.expand(channels, 1, kernel_size, kernel_size).contiguous()


class FixedBilinearUpsample(nn.Module):
    """x``factor`` bilinear upsampling as the release does it: an untrained grouped deconvolution
    (kernel 2*factor, stride factor, padding factor/2) with a fixed bilinear kernel.

    The kernel is a non-persistent buffer: it is not a weight, so it is not saved or loaded.
    Output size is exactly ``factor`` times the input; callers crop where they need less.
    """

    def __init__(self, channels: int, factor: int) -> None:
        super().__init__()
        self.channels = channels
        self.factor = factor
        self.kernel_size = 2 * factor
        self.padding = factor // 2
        self.register_buffer("weight", bilinear_kernel(channels, self.kernel_size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(x, self.weight, stride=self.factor, padding=self.padding, groups=self.channels)

    def extra_repr(self) -> str:
        return "channels={}, factor={}".format(self.channels, self.factor)


class PyramidPooling(nn.Module):
    """Pyramid pooling on the stage-5 output.

    Four average-pool branches (kernel = stride from ``dfseg.parts.ppm_kernels``, ceil mode: the
    release's fixed 32/16/8/4 at 2048x1024, and static operators at any size), each a 1x1 conv to
    ``branch_width`` + BN + ReLU, resized back with align-corners bilinear; then concat
    [x, p1..p4] and a 3x3 conv to ``c_out`` + BN + ReLU.
    """

    def __init__(self, c_in: int, branch_width: int, c_out: int, num_branches: int = 4) -> None:
        super().__init__()
        self.branches = nn.ModuleList(ConvBN(c_in, branch_width, 1) for _ in range(num_branches))
        self.conv = ConvBN(c_in + num_branches * branch_width, c_out, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = spatial_size(x)
        pooled = [x]
        for branch, kernel in zip(self.branches, ppm_kernels(*size)):
            # No padding, so excluding "padding" only means dividing the ceil-mode overhang window
            # by its valid pixels; saying so explicitly makes ONNX/TensorRT agree with torch.
            y = F.avg_pool2d(x, kernel, kernel, ceil_mode=True, count_include_pad=False)
            y = branch(y)
            pooled.append(F.interpolate(y, size=size, mode="bilinear", align_corners=True))
        return self.conv(torch.cat(pooled, 1))


class Fusion(nn.Module):
    """Fuse a low-resolution tensor into a high-resolution one (H is a width-controller output).

    1x1 conv C_l -> C_h + BN + ReLU, fixed bilinear x2 deconvolution, crop to H's size (odd input
    sizes make the upsampled tensor one pixel larger), concat [H, up], 3x3 conv 2C_h -> C_h + BN + ReLU.
    """

    def __init__(self, c_low: int, c_high: int) -> None:
        super().__init__()
        self.proj = ConvBN(c_low, c_high, 1)
        self.up = FixedBilinearUpsample(c_high, 2)
        self.conv = ConvBN(2 * c_high, c_high, 3)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        up = self.up(self.proj(low))
        h, w = spatial_size(high)
        if spatial_size(up) != (h, w):
            up = up[:, :, :h, :w]
        return self.conv(torch.cat([high, up], 1))


class SegHead(nn.Module):
    """3x3 conv C3 -> classes + BN (no ReLU), then the fixed bilinear x8 deconvolution.

    ``upsample=False`` is the d8 variant: the prediction stays at 1/8 resolution.  The x8 output
    is cropped to ``out_size`` (the network passes its input size); a standalone head built for
    a latency measurement carries its part's output size in ``self.out_size`` instead.
    """

    def __init__(self, c_in: int, num_classes: int, upsample: bool = True) -> None:
        super().__init__()
        self.conv = ConvBN(c_in, num_classes, 3, relu=False)
        self.up = FixedBilinearUpsample(num_classes, 8) if upsample else None
        self.out_size: Optional[Tuple[int, int]] = None

    def forward(self, x: torch.Tensor, out_size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        x = self.conv(x)
        if self.up is None:
            return x
        x = self.up(x)
        h, w = out_size or self.out_size or spatial_size(x)
        if spatial_size(x) != (h, w):
            x = x[:, :, :h, :w]
        return x


def init_weights(module: nn.Module) -> None:
    """torchvision's ResNet initialisation: Kaiming-normal convs, unit-scale BN, small FC."""
    if any(p.is_meta for p in module.parameters()):
        return  # built on the meta device for shapes and MACs: there are no values to set
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def randomize_batchnorm(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random, non-identity statistics and affine parameters.

    A freshly initialised BN is (almost) the identity, which hides mistakes in BN folding and in
    weight conversion; tests and latency measurements call this instead.  Returns ``module``.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return module
