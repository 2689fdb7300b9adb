"""ONNX export for TensorRT 8.2 (JetPack 4.6) and ONNX Runtime.

The exported graph is static (batch 1, one input size), uses opset 13 by default (TensorRT 8.2's
parser reads up to 13), has BatchNorm folded into the convolutions (done explicitly on a copy and
checked numerically, so the graph holds no BatchNormalization node) and names:

* input ``input``: 1x3xHxW float32, preprocessed as ``dfseg.preprocess.preprocess`` does;
* output ``logits`` (1xKxHxW, or 1xK for backbones) or ``classmap``: the argmax over classes
  inside the graph, as int32 (1xHxW, or 1).  int32 because TensorRT 8.2 has no int64 tensors:
  its ArgMax (a TopK) yields int32 and int64 graph outputs cannot be bound, so the ONNX ArgMax's
  int64 is cast to int32 in the graph (ONNX Runtime returns the same int32).

Node names carry the module path as torch writes scopes, e.g. ``/stage3/stage3.0/conv1/conv/Conv``
or ``/stem/conv1/conv/Conv``; module paths equal ``dfseg.parts.Part`` names, so per-layer profiles
map back to parts with ``dfseg.backends.tensorrt.profiling.part_of_node``.  Shape arithmetic torch emits around Resize is folded
into constants (``fold_static_shapes``): the graph holds no Shape node.  Every constant is a plain initializer
(``plain_initializers``: no Identity over an initializer, no Constant node), and every graph written is held to
TensorRT 8.2's ONNX importer rules (``dfseg.trt_parse_rules``); one that breaks them is an error, not a file.
Host side (needs torch, onnx).
"""

import copy
import os
import warnings
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .arch import Arch
from .backends.tensorrt.profiling import module_path_of_node, part_of_node  # noqa: F401  (node name -> part: one implementation, device side)
from .errors import UserError
from .fileio import atomic_output
from .models.layers import ConvBN, randomize_batchnorm
from .parts import FUSION, Part
from .sizes import SizeLike, as_size
from .trt_parse_rules import MAX_OPSET as TRT_MAX_OPSET
from .trt_parse_rules import require_parsable

OUTPUTS = ("logits", "classmap")
DEFAULT_OPSET = 13
# ArgMax, Resize with align_corners and ceil-mode pooling need opset 11; torch's TorchScript
# exporter writes up to 20.  TensorRT 8.2 reads up to 13 (TRT_MAX_OPSET); graphs at 11..13 are held to
# its parser's rules (dfseg.trt_parse_rules), higher opsets to the same rules except the opset.
MIN_OPSET, MAX_OPSET = 11, 20
# Folding is size independent; check it on a small input so large exports stay quick.
FOLD_CHECK_SIDE = 64
FOLD_TOLERANCE = 1e-4  # relative to the output's range


class ExportError(UserError):
    """Bad export request (size, opset, output, path); the message says what to use instead."""


def _fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Make ``conv`` (in place) compute conv followed by eval-mode ``bn``: scale the weights per
    output channel, add the shift as a bias.  Computed in float64 to keep the fold exact."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    with torch.no_grad():
        conv.weight.copy_(conv.weight.double() * scale.reshape(-1, 1, 1, 1))
        conv.bias = nn.Parameter(((bias - bn.running_mean.double()) * scale + bn.bias.double()).float())


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode deep copy of ``model`` with every BatchNorm folded into its convolution.

    DF modules keep each conv/BN pair in a ``ConvBN`` (module paths are preserved: ``conv`` gains a
    bias, ``bn`` becomes Identity).  Other models (the reference backbones) go through torch.fx's
    conv-BN fusion.  Raises RuntimeError if a BatchNorm is left over.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, ConvBN) and isinstance(module.bn, nn.BatchNorm2d):
            _fold_conv_bn(module.conv, module.bn)
            module.bn = nn.Identity()
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules()):
        from torch.fx.experimental.optimization import fuse

        folded = fuse(folded, inplace=True)
    leftover = [name for name, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if leftover:
        raise RuntimeError("BatchNorm could not be folded at: {}".format(", ".join(leftover)))
    return folded


def check_folding(original: nn.Module, folded: nn.Module, inputs: Sequence[torch.Tensor]) -> float:
    """Max abs difference between the two models on ``inputs``; RuntimeError above tolerance."""
    with torch.no_grad():
        expected = original.eval()(*inputs)
        actual = folded(*inputs)
    error = float((expected - actual).abs().max())
    spread = float(expected.max() - expected.min())
    if error > FOLD_TOLERANCE * max(spread, 1e-6):
        raise RuntimeError("BN folding changed the output: max abs diff {:.3g} (output range {:.3g})".format(error, spread))
    return error


class _ClassMap(nn.Module):
    """Argmax over the class axis as int32 (see the module docstring for why int32)."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.argmax(logits, dim=1).to(torch.int32)


def _attach_classmap(model: nn.Module) -> nn.Module:
    # A forward hook keeps the model the root of the trace, so node names stay equal to part names.
    model.classmap = _ClassMap()
    model.register_forward_hook(lambda module, inputs, output: module.classmap(output))
    return model


def _check_opset(opset: int) -> int:
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(
            "opset {!r} is not supported: use {}..{} ({} for TensorRT 8.2)".format(opset, MIN_OPSET, MAX_OPSET, DEFAULT_OPSET)
        )
    return opset


def _check_output_path(path: str) -> str:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ExportError("{}: output directory {} does not exist; create it first".format(path, directory))
    if not os.access(directory, os.W_OK):
        raise ExportError("{}: output directory {} is not writable; choose another -o path".format(path, directory))
    if os.path.isdir(path):
        raise ExportError("{}: is a directory; give a file name such as model.onnx".format(path))
    return path


# Ops whose result is computable once their inputs are constants (the shape arithmetic torch emits
# around Resize: Shape -> Slice/Gather -> Concat).  Nothing that touches image data is folded.
_SHAPE_OPS = {"Shape", "Slice", "Gather", "Concat", "Unsqueeze", "Squeeze", "Cast", "Mul", "Div", "Add", "Sub", "Floor"}


def fold_static_shapes(proto: "onnx.ModelProto") -> "onnx.ModelProto":  # noqa: F821
    """Replace shape computations by constants (the input shape is static).

    torch exports ``F.interpolate(size=...)`` as ``Resize(x, sizes=Concat(Shape(x)[0:2], [h, w]))``;
    with a static graph every Shape is known, so the chain folds into one constant and the graph
    holds no Shape node (TensorRT 8.2 then sees plain static Resize sizes).
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    inferred = onnx.shape_inference.infer_shapes(proto)
    static = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in info.type.tensor_type.shape.dim]
        if info.type.tensor_type.HasField("shape") and all(d > 0 for d in dims):
            static[info.name] = dims
    constants = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    nodes = []
    for node in proto.graph.node:
        value = None
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "Shape" and node.input[0] in static and not node.attribute:
            value = np.array(static[node.input[0]], dtype=np.int64)
        elif node.op_type in _SHAPE_OPS and all(name == "" or name in constants for name in node.input):
            feeds = {name: constants[name] for name in node.input if name}
            graph = helper.make_graph(
                [node], "fold",
                [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for n, v in feeds.items()],
                [helper.make_tensor_value_info(node.output[0], onnx.TensorProto.UNDEFINED, None)],
            )
            model = helper.make_model(graph, opset_imports=proto.opset_import)
            value = ReferenceEvaluator(model).run(None, feeds)[0]
        if value is None:
            nodes.append(node)
            continue
        constants[node.output[0]] = np.asarray(value)
        tensor = numpy_helper.from_array(np.asarray(value), node.output[0] + "_value")
        nodes.append(helper.make_node("Constant", [], [node.output[0]], name=node.name, value=tensor))
    # Drop constants nothing reads any more.
    while True:
        used = {name for node in nodes for name in node.input} | {out.name for out in proto.graph.output}
        kept = [node for node in nodes if node.op_type != "Constant" or node.output[0] in used]
        if len(kept) == len(nodes):
            break
        nodes = kept
    _replace(proto.graph.node, nodes)
    return proto


def plain_initializers(proto: "onnx.ModelProto") -> int:  # noqa: F821
    """Make every constant input of ``proto`` a plain initializer, in place; returns how many nodes went.

    * ``Identity`` over an initializer (or over another such Identity: chains fold) becomes a copy of
      that initializer named as the Identity's output.  ``torch.onnx.export`` deduplicates equal
      initializers and writes the duplicates this way; an untrained network's BatchNorm-folded biases
      are all equal, so most Conv biases arrived as Identity outputs, which TensorRT 8.2's Identity
      importer turns into tensors and its Conv importer refuses (``dfseg.trt_parse_rules``).
    * ``Constant`` nodes (the x2/x8 bilinear kernels, Resize sizes) become initializers: an FP16
      conversion that keeps a layer in FP32 casts a Constant input back to FP32 through a Cast node,
      which again hands the layer a tensor where 8.2 needs weights; it leaves initializers as they are.

    An Identity that writes a graph output is kept (the output must be a node's).
    """
    from onnx import TensorProto

    graph = proto.graph
    outputs = {out.name for out in graph.output}
    known = {init.name: init for init in graph.initializer}
    removed = set()  # output names of the nodes that became initializers (unique: SSA)

    def add_copy(source: "onnx.TensorProto", name: str) -> None:  # noqa: F821
        tensor = TensorProto()
        tensor.CopyFrom(source)
        tensor.name = name
        graph.initializer.append(tensor)
        known[name] = tensor
        removed.add(name)

    for node in graph.node:
        if (node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value"
                and node.output[0] not in outputs):
            add_copy(node.attribute[0].t, node.output[0])
    changed = True
    while changed:  # one pass for a topologically sorted graph; more only for one that is not
        changed = False
        for node in graph.node:
            if (node.op_type == "Identity" and node.input[0] in known and node.output[0] not in removed
                    and node.output[0] not in outputs):
                add_copy(known[node.input[0]], node.output[0])
                changed = True
    if not removed:
        return 0
    _replace(graph.node, [n for n in graph.node if n.op_type not in ("Constant", "Identity") or n.output[0] not in removed])
    # Initializers that only Identity nodes read are read by nothing now.
    used = {name for node in graph.node for name in node.input} | outputs
    _replace(graph.initializer, [init for init in graph.initializer if init.name in used])
    _replace(graph.input, [info for info in graph.input if info.name in used or info.name not in known])
    return len(removed)


def _replace(field: Any, items: List[Any]) -> None:
    """Set a protobuf repeated field to ``items`` (copied out of it first)."""
    items = list(items)
    del field[:]
    field.extend(items)


def _write_onnx(
    module: nn.Module, inputs: Tuple[torch.Tensor, ...], path: str, input_names: List[str],
    output_names: List[str], opset: int,
) -> str:
    """Trace ``module`` to ONNX, check the model, then move it into place atomically."""
    import onnx

    try:
        with atomic_output(path) as tmp:
            with warnings.catch_warnings():
                # Shapes are static by design (dfseg.models.layers.spatial_size): silence the tracer.
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                # dynamo=False is deliberate (TensorRT 8.2 needs opset <= 13): silence torch's notice.
                warnings.filterwarnings("ignore", category=DeprecationWarning,
                                        message=".*TorchScript-based ONNX export")
                with torch.no_grad():
                    torch.onnx.export(
                        module, inputs, tmp, input_names=input_names, output_names=output_names,
                        opset_version=opset, do_constant_folding=True, dynamo=False,
                    )
            proto = fold_static_shapes(onnx.load(tmp))
            plain_initializers(proto)
            onnx.checker.check_model(proto, full_check=True)
            require_parsable(proto, path, check_opset=opset <= TRT_MAX_OPSET)
            batchnorms = [node.name for node in proto.graph.node if node.op_type == "BatchNormalization"]
            if batchnorms:
                raise RuntimeError("exported graph still holds BatchNormalization nodes: {}".format(batchnorms[:5]))
            with open(tmp, "wb") as handle:
                handle.write(proto.SerializeToString())
    except OSError as exc:
        raise ExportError("{}: cannot write ONNX file ({})".format(path, exc.strerror or exc)) from None
    return path


def export_onnx(
    model_or_arch: Union[nn.Module, Arch, str],
    size: SizeLike,
    path: str,
    opset: int = DEFAULT_OPSET,
    output: str = "logits",
    weights: Optional[str] = None,
) -> str:
    """Export a model (module, ``Arch`` or registry name) at ``size`` (width x height) to ``path``.

    ``weights`` loads a weights file into a model built from an ``Arch`` or name.  Returns ``path``.
    """
    if output not in OUTPUTS:
        raise ExportError("output {!r}: use one of {}".format(output, ", ".join(OUTPUTS)))
    _check_opset(opset)
    size = as_size(size)
    _check_output_path(path)
    if isinstance(model_or_arch, nn.Module):
        model = model_or_arch
        if weights is not None:
            raise ExportError("weights: pass a model name or Arch with weights, or load them into the module yourself")
    else:
        from .models.registry import create_model

        model = create_model(model_or_arch, pretrained_weights=weights)
    model.eval()
    folded = fold_batchnorm(model)
    check_side = (min(size.height, FOLD_CHECK_SIDE), min(size.width, FOLD_CHECK_SIDE))
    check_folding(model, folded, (torch.randn(1, 3, *check_side, generator=torch.Generator().manual_seed(0)),))
    if output == "classmap":
        folded = _attach_classmap(folded)
    example = torch.randn(1, 3, size.height, size.width, generator=torch.Generator().manual_seed(0))
    return _write_onnx(folded, (example,), path, ["input"], [output], opset)


def part_input_names(part: Part) -> List[str]:
    """ONNX input names of a standalone part: ``low``/``high`` for fusion, else ``input``."""
    return ["low", "high"] if part.kind == FUSION else ["input"]


def make_part_module(part: Part, seed: int = 0) -> nn.Module:
    """The standalone module of ``part`` with weights and (non-identity) BN drawn from ``seed``:
    what ``export_part_onnx`` exports, so its output can be reproduced."""
    from .models.part_modules import build_part

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build_part(part)
    return randomize_batchnorm(module, seed)


def export_part_onnx(part: Part, path: str, opset: int = DEFAULT_OPSET, seed: int = 0) -> str:
    """Export the standalone module of ``part`` (random weights, random BN, BN folded) to ``path``.

    Inputs are named by ``part_input_names``, the output ``output``.  For the latency suite.
    """
    from .models.part_modules import part_inputs

    _check_opset(opset)
    _check_output_path(path)
    module = make_part_module(part, seed)
    folded = fold_batchnorm(module)
    inputs = part_inputs(part, seed)
    check_folding(module, folded, inputs)
    return _write_onnx(folded, inputs, path, part_input_names(part), ["output"], opset)

