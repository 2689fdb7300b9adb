"""The parts of a network with their tensor shapes: the one shape walk that the models, the
latency table and the search all share.

Each ``Part`` is a unit the latency table measures (the paper's Latency(c_i, h_i, w_i, c_o, h_o,
w_o), section 3.2); ``part.name`` is the module path of the same unit in the PyTorch model and the
scope prefix of its ONNX nodes, so per-layer profiles can be attributed back to parts.

Spatial sizes: every stride-2 3x3 convolution (padding 1) maps h to ceil(h / 2), so sizes that are
not multiples of 32 work.  Where a x2 upsampled low-resolution tensor is one pixel larger than the
skip tensor it is fused with, the decoder crops it (see ``dfseg.models``).

Device side: Python 3.6, no torch.
"""

import re
from typing import List, NamedTuple, Optional, Tuple

from .arch import BASIC, BOTTLENECK, Arch, Block

STEM = "stem"
CLASSIFIER = "classifier"
PYRAMID_POOLING = "ppm"
WIDTH_CONTROLLER = "wc"
FUSION = "fuse"
HEAD = "head"

# Fixed by the authors' release: pyramid-pooling branch width and output width.
PPM_BRANCH_WIDTH = 128
PPM_OUT_WIDTH = 512
PPM_BINS = (1, 2, 4, 8)


class Part(NamedTuple):
    name: str
    kind: str
    c_in: int
    h_in: int
    w_in: int
    c_out: int
    h_out: int
    w_out: int
    stride: int = 1
    inner: int = 0
    projection: bool = False

    @property
    def key(self) -> str:
        """The latency-table key: kind, input and output shapes, stride, inner width, and ``/p`` for a
        projection shortcut that the shapes do not already imply (see ``needs_projection``)."""
        key = "{}:{}x{}x{}->{}x{}x{}/s{}".format(
            self.kind, self.c_in, self.h_in, self.w_in, self.c_out, self.h_out, self.w_out, self.stride
        )
        if self.inner:
            key += "/i{}".format(self.inner)
        if self.projection and self.stride == 1 and self.c_in == self.c_out:
            key += "/p"
        return key


def down(size: int) -> int:
    """Output size of a 3x3, stride-2, padding-1 convolution."""
    return (size + 1) // 2


def stage_shapes(height: int, width: int) -> List[Tuple[int, int]]:
    """(h, w) after each of the five stride-2 stages: 1/2, 1/4, 1/8, 1/16, 1/32."""
    shapes = []
    h, w = height, width
    for _ in range(5):
        h, w = down(h), down(w)
        shapes.append((h, w))
    return shapes


def ppm_kernels(h: int, w: int) -> List[int]:
    """Average-pool kernel (= stride, ceil mode) of each pyramid branch on an h x w stage-5 map.

    The release pools 1, 2, 4 and 8 bins along the short side of a 1024-pixel crop (kernels 32,
    16, 8, 4 on its 32x64 map); we keep those bins for any size: kernel = ceil(short / bins).
    """
    short = min(h, w)
    return [max(1, -(-short // bins)) for bins in PPM_BINS]


def needs_projection(block: Block, previous: Optional[Block], c_in: int, stride: int) -> bool:
    """Whether ``block`` has a projection shortcut (``previous``: the block before it in its stage).

    Projection whenever stride or width changes.  For bottlenecks the release's "width" is the
    block's nominal (inner) width: DF2A's first (512,512,1024) block, fed by a (256,256,1024)
    block, has a 1x1 1024->1024 projection although input and output shapes agree.  This is what
    makes DF2A 1.916G MACs at 224x224 as the release computes (without it: 1.865G; with a
    projection on both (512,512,1024) blocks: 1.967G, the paper's printed 1.97G).
    """
    if stride != 1 or c_in != block.width:
        return True
    return block.kind == BOTTLENECK and previous is not None and previous.inner != block.inner


def backbone_parts(arch: Arch, height: int, width: int) -> List[Part]:
    """Stem and residual blocks of ``arch`` at an input of ``width`` x ``height``."""
    shapes = stage_shapes(height, width)
    parts = []
    channels, (h, w) = 3, (height, width)
    for i, stem_width in enumerate(arch.stem):
        h_out, w_out = shapes[i]
        parts.append(Part("stem.conv{}".format(i + 1), STEM, channels, h, w, stem_width, h_out, w_out, 2))
        channels, h, w = stem_width, h_out, w_out
    for s, stage in enumerate(arch.stages):
        previous = None  # type: Optional[Block]
        for j, block in enumerate(stage):
            stride = 2 if j == 0 else 1
            h_out, w_out = shapes[2 + s] if j == 0 else (h, w)
            inner = block.inner if block.kind == BOTTLENECK else 0
            parts.append(
                Part(
                    "stage{}.{}".format(s + 3, j), block.kind, channels, h, w,
                    block.width, h_out, w_out, stride, inner or 0,
                    needs_projection(block, previous, channels, stride),
                )
            )
            channels, h, w, previous = block.width, h_out, w_out, block
    return parts


def network_parts(arch: Arch, height: int, width: int) -> List[Part]:
    """Every measured part of ``arch`` at ``width`` x ``height``: backbone, then classifier or decoder."""
    parts = backbone_parts(arch, height, width)
    last = parts[-1]
    if not arch.is_segmentation:
        parts.append(Part(CLASSIFIER, CLASSIFIER, last.c_out, last.h_out, last.w_out, arch.classes, 1, 1))
        return parts
    assert arch.decoder is not None
    c3, c4, c5 = arch.decoder
    ends = {s: [p for p in parts if p.name.startswith("stage{}.".format(s))][-1] for s in (3, 4, 5)}
    s3, s4, s5 = ends[3], ends[4], ends[5]
    parts.append(Part(PYRAMID_POOLING, PYRAMID_POOLING, s5.c_out, s5.h_out, s5.w_out, PPM_OUT_WIDTH, s5.h_out, s5.w_out))
    parts.append(Part("wc3", WIDTH_CONTROLLER, s3.c_out, s3.h_out, s3.w_out, c3, s3.h_out, s3.w_out))
    parts.append(Part("wc4", WIDTH_CONTROLLER, s4.c_out, s4.h_out, s4.w_out, c4, s4.h_out, s4.w_out))
    parts.append(Part("wc5", WIDTH_CONTROLLER, PPM_OUT_WIDTH, s5.h_out, s5.w_out, c5, s5.h_out, s5.w_out))
    parts.append(Part("fuse4", FUSION, c5, s5.h_out, s5.w_out, c4, s4.h_out, s4.w_out))
    parts.append(Part("fuse3", FUSION, c4, s4.h_out, s4.w_out, c3, s3.h_out, s3.w_out))
    if arch.output_stride == 8:
        h_out, w_out = s3.h_out, s3.w_out
    else:
        h_out, w_out = height, width
    parts.append(Part(HEAD, HEAD, c3, s3.h_out, s3.w_out, arch.classes, h_out, w_out))
    return parts


_KEY = re.compile(r"^(?P<kind>[a-z]+):(?P<c_in>\d+)x(?P<h_in>\d+)x(?P<w_in>\d+)->(?P<c_out>\d+)x(?P<h_out>\d+)x"
                  r"(?P<w_out>\d+)/s(?P<stride>\d+)(?:/i(?P<inner>\d+))?(?P<p>/p)?$")


def parse_part_key(key: str) -> Part:
    """The part that ``key`` names (``Part.key``'s inverse; the module path is not in the key: name "")."""
    found = _KEY.match(key)
    if found is None:
        raise ValueError("{!r} is not a latency-table part key (kind:CxHxW->CxHxW/sN[/iK][/p])".format(key))
    n = {k: int(v) for k, v in found.groupdict().items() if k not in ("kind", "p") and v is not None}
    stride, c_in, c_out = n["stride"], n["c_in"], n["c_out"]
    kind = found.group("kind")
    projection = kind in (BASIC, BOTTLENECK) and (found.group("p") is not None or stride != 1 or c_in != c_out)
    return Part("", kind, c_in, n["h_in"], n["w_in"], c_out, n["h_out"], n["w_out"], stride,
                n.get("inner", 0), projection)


def _conv(c_in: int, c_out: int, kernel: int) -> int:
    return c_in * c_out * kernel * kernel + c_out  # batch norm folded into a bias


def part_weight_count(part: Part) -> int:
    """The numbers a part reads besides its input: its weights (batch norm folded into biases, as exported)
    and the fixed upsampling kernels.  What it cannot keep in a cache inside a network (``dfseg.bench``)."""
    projection = part.projection or part.stride != 1 or part.c_in != part.c_out
    shortcut = _conv(part.c_in, part.c_out, 1) if projection else 0  # blocks only
    kind, c_in, c_out = part.kind, part.c_in, part.c_out
    if kind == STEM:
        return _conv(c_in, c_out, 3)
    if kind == BASIC:
        return _conv(c_in, c_out, 3) + _conv(c_out, c_out, 3) + shortcut
    if kind == BOTTLENECK:
        return _conv(c_in, part.inner, 1) + _conv(part.inner, part.inner, 3) + _conv(part.inner, c_out, 1) + shortcut
    if kind == CLASSIFIER:
        return c_in * c_out + c_out
    if kind == PYRAMID_POOLING:
        return len(PPM_BINS) * _conv(c_in, PPM_BRANCH_WIDTH, 1) + _conv(c_in + len(PPM_BINS) * PPM_BRANCH_WIDTH, c_out, 3)
    if kind == WIDTH_CONTROLLER:
        return _conv(c_in, c_out, 1)
    if kind == FUSION:
        return _conv(c_in, c_out, 1) + c_out * 4 * 4 + _conv(2 * c_out, c_out, 3)  # x2 deconvolution kernel 4x4
    if kind == HEAD:
        upsampled = part.h_out != part.h_in or part.w_out != part.w_in
        return _conv(c_in, c_out, 3) + (c_out * 16 * 16 if upsampled else 0)  # x8 deconvolution kernel 16x16
    raise ValueError("no weight count for part kind {!r}".format(kind))
