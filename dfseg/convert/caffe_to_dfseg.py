"""The authors' released Caffe weights -> our PyTorch state dict, checked layer by layer.

Layer names (../shared/spec/dfnet-architecture.md) and where they go:

=====================================  =====================================
``conv1``, ``conv2``                   ``stem.conv1``, ``stem.conv2``
``res{k}.{j}.conv1`` .. ``conv3``      ``stage{k+1}.{j-base}.conv1`` .. ``conv3``
``res{k}.{j}.skipConv``                ``stage{k+1}.{j-base}.shortcut``
``fc``                                 ``classifier.fc`` (weight and bias)
``psp.pool{i}.conv``                   ``ppm.branches.{i-1}``
``psp.concat.conv``                    ``ppm.conv``
``Decoder_wc3/4/5``                    ``wc3``/``wc4``/``wc5``
``Decoder4_4.proj``, ``.conv1``        ``fuse4.proj``, ``fuse4.conv``
``Decoder3_3.proj``, ``.conv1``        ``fuse3.proj``, ``fuse3.conv``
``Decoder_score``                      ``head.conv``
=====================================  =====================================

Each convolution ``X`` (one blob, no bias) has a BatchNorm ``X/bn`` (mean, variance, scale factor:
our running statistics are the first two divided by the third, as Caffe does; a zero factor means
zero statistics) and a Scale ``X/bn_scale`` (gamma, beta).  Projection BN/Scale layers are named
``res{k}.{j}skipConv/bn`` in the release (no dot); the dotted spelling is accepted too.  The
release's block numbering base (0 or 1) is read from the file.  The fixed bilinear deconvolutions
(``*/up2``, ``Decoder_score.up8``) are not weights here; when a file has them, they are checked to
be the bilinear kernel our model uses.  Every other layer with blobs, every model tensor left
unfilled and every shape mismatch is an error naming the layer.

Merged-BN releases (``*_mergebn.caffemodel``; the only release of DFlite-Seg) have no BN/Scale
layers: each convolution has a bias (two blobs) that already holds the folded BN.  Such a conv
becomes our conv weight plus an identity BN carrying the bias (mean 0, variance 1 - eps, scale 1),
which computes the same function.  Projection shortcuts follow ``dfseg.parts.needs_projection``
(the model's rule), so DF2A's ``res4.5.skipConv`` (1024 -> 1024) is mapped.

Host side (torch).
"""

import re
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from ..arch import BOTTLENECK, Arch, Block
from ..errors import UserError
from ..parts import needs_projection
from .caffe_schema import CaffeLayer

# The release's untrained bilinear deconvolutions and their upsampling factors.
_FIXED_DECONVS = {"Decoder4_4.proj/up2": 2, "Decoder3_3.proj/up2": 2, "Decoder_score.up8": 8}
_BLOCK_LAYER = re.compile(r"^res(\d+)\.(\d+)[./]?")


class ConversionError(UserError):
    """The caffemodel does not fit the architecture; the message lists every problem by layer name."""


class Mapped(NamedTuple):
    caffe: str  # layer name
    tensor: str  # our state-dict key
    shape: Tuple[int, ...]


def conv_bn_names(arch: Arch, block_base: int = 1) -> List[Tuple[str, str]]:
    """(Caffe convolution name, our ConvBN module path) for every conv + BN of ``arch``."""
    pairs = [("conv1", "stem.conv1"), ("conv2", "stem.conv2")]
    c_in = arch.stem[1]
    for s, stage in enumerate(arch.stages):
        release_stage = s + 2
        previous: Optional[Block] = None
        for j, block in enumerate(stage):
            prefix = "res{}.{}".format(release_stage, j + block_base)
            ours = "stage{}.{}".format(s + 3, j)
            convs = ("conv1", "conv2", "conv3") if block.kind == BOTTLENECK else ("conv1", "conv2")
            pairs.extend(("{}.{}".format(prefix, c), "{}.{}".format(ours, c)) for c in convs)
            # The model's own rule, so DF2A's res4.5.skipConv (1024 -> 1024, inner width 256 -> 512) maps.
            if needs_projection(block, previous, c_in, 2 if j == 0 else 1):
                pairs.append(("{}.skipConv".format(prefix), "{}.shortcut".format(ours)))
            c_in, previous = block.width, block
    if arch.is_segmentation:
        pairs.extend(("psp.pool{}.conv".format(i + 1), "ppm.branches.{}".format(i)) for i in range(4))
        pairs.append(("psp.concat.conv", "ppm.conv"))
        pairs.extend(("Decoder_wc{}".format(i), "wc{}".format(i)) for i in (3, 4, 5))
        for release, ours in (("Decoder4_4", "fuse4"), ("Decoder3_3", "fuse3")):
            pairs.append(("{}.proj".format(release), "{}.proj".format(ours)))
            pairs.append(("{}.conv1".format(release), "{}.conv".format(ours)))
        pairs.append(("Decoder_score", "head.conv"))
    return pairs


def detect_block_base(layers: List[CaffeLayer]) -> int:
    """0 or 1: the smallest block index in the file's ``res{k}.{j}`` names (1 if there are none)."""
    indices = [int(m.group(2)) for m in (_BLOCK_LAYER.match(layer.name) for layer in layers) if m]
    if not indices:
        return 1
    base = min(indices)
    if base not in (0, 1):
        raise ConversionError("residual blocks are numbered from {} (res{{k}}.{{j}}); expected 0 or 1".format(base))
    return base


def _leftover_problems(arch: Arch, by_name: Dict[str, CaffeLayer], used: set, tensors: Dict[str, np.ndarray],
                       expected: Dict[str, Tuple[int, ...]]) -> List[str]:
    """What the mapping left: fixed upsampling layers that are not bilinear, layers with weights nothing took,
    model tensors nothing provided."""
    problems = []  # type: List[str]
    for name, factor in _FIXED_DECONVS.items():
        layer = by_name.get(name)
        if layer is None or not layer.blobs:
            continue
        used.add(name)
        problem = _check_bilinear(layer, factor)
        if problem:
            problems.append(problem)
    unmapped = [layer.name for layer in by_name.values() if layer.blobs and layer.name not in used]
    if unmapped:
        problems.append("layers with weights that {} has no place for: {}".format(arch.short(), ", ".join(unmapped)))
    missing = [key for key in expected if key not in tensors and not key.endswith("num_batches_tracked")]
    if missing:
        problems.append("model tensors no layer provides: {}".format(", ".join(missing)))
    return problems


def convert_layers(
    layers: List[CaffeLayer], arch: Arch, expected: Dict[str, Tuple[int, ...]], source: str = "caffemodel"
) -> Tuple[Dict[str, np.ndarray], List[Mapped]]:
    """Map ``layers`` onto state-dict keys with shapes ``expected``; raise ConversionError listing
    every unmapped layer, missing tensor and shape mismatch."""
    by_name = {}  # type: Dict[str, CaffeLayer]
    problems = []  # type: List[str]
    for layer in layers:
        if layer.name in by_name and layer.blobs:
            problems.append("layer {} appears twice".format(layer.name))
        if layer.blobs or layer.name not in by_name:
            by_name[layer.name] = layer
    used = set()
    tensors = {}  # type: Dict[str, np.ndarray]
    mapped = []  # type: List[Mapped]

    def take(layer_name: str, alternatives: Tuple[str, ...], count: int) -> Optional[CaffeLayer]:
        for name in (layer_name,) + alternatives:
            layer = by_name.get(name)
            if layer is not None:
                used.add(name)
                if len(layer.blobs) != count:
                    problems.append("layer {} has {} blobs, expected {}".format(name, len(layer.blobs), count))
                    return None
                return layer
        problems.append("layer {} is missing".format(layer_name))
        return None

    def put(layer: CaffeLayer, blob: np.ndarray, key: str) -> None:
        want = expected.get(key)
        if want is None:
            problems.append("layer {} maps to {}, which this model does not have".format(layer.name, key))
            return
        array = blob
        if array.shape != want and array.size == int(np.prod(want)) and tuple(d for d in array.shape if d != 1) == tuple(d for d in want if d != 1):
            array = array.reshape(want)  # legacy 4-D blobs (1, 1, 1, C)
        if array.shape != want:
            problems.append("layer {}: blob shape {} but {} needs {}".format(layer.name, list(blob.shape), key, list(want)))
            return
        tensors[key] = array.astype(np.float32)
        mapped.append(Mapped(layer.name, key, want))

    base = detect_block_base(layers)
    for caffe_name, ours in conv_bn_names(arch, base):
        alternatives = (caffe_name.replace(".skipConv", "skipConv"),) if caffe_name.endswith(".skipConv") else ()
        bn_layers = [n + suffix for n in (caffe_name,) + alternatives for suffix in ("/bn", "/bn_scale")]
        merged = by_name.get(caffe_name)
        if merged is not None and len(merged.blobs) == 2 and not any(n in by_name for n in bn_layers):
            used.add(caffe_name)  # merged-BN release: conv weight and bias, BN folded in
            _put_merged(merged, ours, put)
            continue
        conv = take(caffe_name, (), 1)
        if conv is not None:
            put(conv, conv.blobs[0], ours + ".conv.weight")
        bn = take(caffe_name + "/bn", tuple(a + "/bn" for a in alternatives), 3)
        if bn is not None:
            mean, variance, factor = bn.blobs
            scale = 0.0 if float(factor.ravel()[0]) == 0.0 else 1.0 / float(factor.ravel()[0])
            put(bn, mean * np.float32(scale), ours + ".bn.running_mean")
            put(bn, variance * np.float32(scale), ours + ".bn.running_var")
        affine = take(caffe_name + "/bn_scale", tuple(a + "/bn_scale" for a in alternatives), 2)
        if affine is not None:
            put(affine, affine.blobs[0], ours + ".bn.weight")
            put(affine, affine.blobs[1], ours + ".bn.bias")
    if not arch.is_segmentation:
        fc = take("fc", (), 2)
        if fc is not None:
            put(fc, fc.blobs[0], "classifier.fc.weight")
            put(fc, fc.blobs[1], "classifier.fc.bias")
    problems += _leftover_problems(arch, by_name, used, tensors, expected)
    if problems:
        raise ConversionError("{}: does not fit {}: {}".format(source, arch.short(), "; ".join(problems)))
    return tensors, mapped


def _put_merged(conv: CaffeLayer, ours: str, put: Callable[[CaffeLayer, np.ndarray, str], None]) -> None:
    """A merged-BN convolution (weight, bias): the weight, and an identity BN that adds the bias."""
    from ..models.layers import BN_EPS

    weight, bias = conv.blobs
    bias = bias.ravel()
    put(conv, weight, ours + ".conv.weight")
    put(conv, bias, ours + ".bn.bias")
    put(conv, np.zeros_like(bias), ours + ".bn.running_mean")
    put(conv, np.full_like(bias, 1.0 - BN_EPS), ours + ".bn.running_var")  # var + eps == 1 exactly
    put(conv, np.ones_like(bias), ours + ".bn.weight")


def _check_bilinear(layer: CaffeLayer, factor: int) -> Optional[str]:
    from ..models.layers import bilinear_kernel

    weight = layer.blobs[0]
    if weight.ndim != 4 or weight.shape[1] != 1 or weight.shape[2] != 2 * factor:
        return "fixed deconvolution {} has shape {}, expected (C, 1, {}, {})".format(
            layer.name, list(weight.shape), 2 * factor, 2 * factor
        )
    reference = bilinear_kernel(weight.shape[0], 2 * factor).numpy()
    if len(layer.blobs) > 1 and np.any(layer.blobs[1] != 0):
        return "fixed deconvolution {} has a non-zero bias; our model has none".format(layer.name)
    if not np.allclose(weight, reference, atol=1e-6):
        return "deconvolution {} is not the fixed bilinear kernel (trained upsampling is not supported)".format(layer.name)
    return None


def convert_caffemodel(path: str, arch: Arch):
    """Read ``path`` and return (a model of ``arch`` holding the weights, the mapping list)."""
    from .caffe_schema import read_caffemodel

    layers = read_caffemodel(path)  # before importing torch: a bad file fails fast
    import torch

    from ..models.registry import build_model

    model = build_model(arch)
    state = model.state_dict()
    expected = {key: tuple(value.shape) for key, value in state.items()}
    tensors, mapped = convert_layers(layers, arch, expected, source=path)
    model.load_state_dict({key: torch.from_numpy(value) for key, value in tensors.items()}, strict=False)
    return model.eval(), mapped
