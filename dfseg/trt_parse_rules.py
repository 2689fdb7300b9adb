"""A static check of an ONNX graph against TensorRT 8.2's ONNX parser (onnx-tensorrt release/8.2-GA).

JetPack 4.6 (TX2, Nano, Xavier) ships TensorRT 8.2 and JetPack 5.0 ships 8.4; both parse ONNX with the
onnx-tensorrt importers of their release.  Several of those importers need an input to be *weights*
(known at parse time) rather than a tensor, and fail the whole parse otherwise.  ``check_model`` holds
a graph to those rules, for the operators dfseg's graphs use (models, the block suite, the bundle's
stubs and probes, FP16 and TensorRT-INT8 graphs), so a graph that would not parse on a device is caught
on the host.  It reads the graph only: no TensorRT is needed, and no torch.

What counts as weights at parse time (onnx-tensorrt ``ModelImporter.cpp``, ``parseGraph``, tag
release/8.2-GA): every graph initializer, and the output of a ``Constant`` node (its importer returns
weights, ``builtin_op_importers.cpp`` ``Constant``) or of a ``Transpose`` of weights (its importer
transposes the weights at parse time).  Every other importer returns a tensor: in particular
``Identity`` (``builtin_op_importers.cpp`` ``Identity``, release/8.2-GA: ``addIdentity(convertToTensor(...))``)
turns weights into a tensor, which is how ``torch.onnx.export``'s deduplicated initializers (an
``Identity`` over another initializer) break a Conv bias.

Each rule below names the importer and tag it comes from; "8.4" and "8.5" say where a later
release changed it (tags release/8.4-GA, release/8.5-GA of https://github.com/onnx/onnx-tensorrt).
Rules are ours, written from reading that source; nothing of it is copied.

Device-safe: Python 3.6 syntax; the onnx package is imported only to load a file.
"""

from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Set

from .errors import UserError

TENSORRT_VERSION = "8.2"
SOURCE = "onnx-tensorrt release/8.2-GA"
# docs/operators.md at release/8.2-GA: "TensorRT 8.2 supports operators up to Opset 13" (8.4-GA: 17).
MAX_OPSET = 13
MIN_OPSET = 7  # ModelImporter.cpp (release/8.2-GA) warns below 7 that a graph is "not guaranteed to work"

# Operators with a builtin importer in builtin_op_importers.cpp at release/8.2-GA (the names passed to
# DEFINE_BUILTIN_OP_IMPORTER, TensorRT-internal TRT_* ones left out).  Any other operator goes to the
# FallbackPluginImporter, which fails unless a TensorRT plugin of that name is registered.
SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu
Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div
Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU Gather GatherElements GatherND Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual HardSigmoid Identity If ImageScaler
InstanceNormalization IsNaN LRN LSTM LeakyRelu Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool
MatMul Max MaxPool Mean Min Mul Neg NonMaxSuppression Not Or PRelu Pad ParametricSoftplus Pow
QuantizeLinear RNN RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum
ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
ReverseSequence Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Sigmoid Sign Sin Sinh
Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile
TopK Transpose Unsqueeze Upsample Where
""".split())

# ONNX TensorProto data types convertDtype accepts (onnx2trt_utils.cpp, release/8.2-GA): DOUBLE, FLOAT,
# INT8, FLOAT16, BOOL, INT32, INT64 (the last cast down to INT32).
CAST_TYPES = frozenset((11, 1, 3, 10, 9, 6, 7))
# Resize coordinate_transformation_mode values the Resize importer maps (release/8.2-GA); others fail.
RESIZE_COORDINATE_MODES = frozenset(("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                                     "align_corners"))


class Finding(NamedTuple):
    """One reason TensorRT 8.2's parser would reject a graph."""

    node: str  # node name (or output name when unnamed); "" for graph-level findings
    op: str
    rule: str  # short id, e.g. "conv-bias-initializer"
    message: str

    def __str__(self) -> str:
        where = "{} node {!r}".format(self.op, self.node) if self.op else "graph"
        return "{}: {} [{}]".format(where, self.message, self.rule)


class _Graph:
    """What the rules need to know about a graph: which names are weights at parse time, which node
    produced each tensor, and constant values where they are known."""

    def __init__(self, graph: Any, opset: int) -> None:
        self.opset = opset
        self.values: Dict[str, Any] = {}
        for init in graph.initializer:
            self.values[init.name] = init
        self.producer: Dict[str, Any] = {}
        self.weights: Set[str] = set(self.values)
        for node in graph.node:  # in ONNX order, which onnx.checker requires to be topological
            for name in node.output:
                self.producer[name] = node
            if node.op_type == "Constant" and node.output:
                self.weights.add(node.output[0])
                for attr in node.attribute:
                    if attr.name == "value":
                        self.values[node.output[0]] = attr.t
            elif node.op_type == "Transpose" and node.input and node.input[0] in self.weights and node.output:
                self.weights.add(node.output[0])

    def is_weights(self, name: str) -> bool:
        return name in self.weights

    def produced_by(self, name: str) -> str:
        node = self.producer.get(name)
        return node.op_type if node is not None else ("initializer" if name in self.values else "graph input")

    def array(self, name: str) -> Optional[Any]:
        """The value of a weights input, or None when it is not a known constant."""
        tensor = self.values.get(name)
        if tensor is None:
            return None
        from onnx import numpy_helper

        return numpy_helper.to_array(tensor)


def _input(node: Any, index: int) -> str:
    """Input ``index`` of ``node``; "" when absent or left empty (an omitted optional input)."""
    return node.input[index] if index < len(node.input) else ""


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            value = helper.get_attribute_value(attr)
            return value.decode("utf-8") if isinstance(value, bytes) else value
    return default


def _needs_weights(graph: _Graph, node: Any, index: int, what: str, rule: str, source: str) -> List[Finding]:
    name = _input(node, index)
    if not name or graph.is_weights(name):
        return []
    return [Finding(_node_name(node), node.op_type, rule, "{} {!r} is a tensor (made by {}), but {} needs an "
                    "initializer ({})".format(what, name, graph.produced_by(name), SOURCE, source))]


def _weights_or_dequantized(graph: _Graph, node: Any, what: str, rule: str) -> List[Finding]:
    """The kernel ``W`` of Conv and ConvTranspose.

    release/8.2-GA: with tensor weights the Conv importer goes to ``convMultiInput`` and ConvTranspose
    sets the kernel as a layer input, a path TensorRT 8.2 builds only for explicit quantization (the
    weights come out of a DequantizeLinear); docs/operators.md at release/8.2-GA: "Weights `W` must be
    an initializer".  8.5-GA's operators.md drops the restriction.
    """
    name = _input(node, 1)
    if not name or graph.is_weights(name) or graph.produced_by(name) == "DequantizeLinear":
        return []
    return [Finding(_node_name(node), node.op_type, rule, "{} {!r} is a tensor (made by {}), but {} needs an "
                    "initializer or a DequantizeLinear output (docs/operators.md)".format(
                        what, name, graph.produced_by(name), SOURCE))]


def _rule_conv(graph: _Graph, node: Any) -> List[Finding]:
    """Conv: the bias ``B`` must be weights.

    builtin_op_importers.cpp ``Conv`` at release/8.2-GA (and release/8.4-GA) asserts "The bias tensor is
    required to be an initializer for the Conv operator" on both the weights and the multi-input path;
    release/8.5-GA sends a tensor bias to ``convMultiInput`` instead.  ``W``: see ``_weights_or_dequantized``.
    """
    return (_weights_or_dequantized(graph, node, "weights W", "conv-weights-initializer")
            + _needs_weights(graph, node, 2, "bias B", "conv-bias-initializer", "builtin_op_importers.cpp Conv"))


def _rule_conv_transpose(graph: _Graph, node: Any) -> List[Finding]:
    """ConvTranspose: the bias ``B`` must be weights.

    builtin_op_importers.cpp ``ConvTranspose`` at release/8.2-GA and release/8.4-GA asserts "The bias
    tensor is required to be an initializer for the Deconvolution operator" before anything else;
    release/8.5-GA takes a tensor bias (``biasTensorPtr``).  ``W``: see ``_weights_or_dequantized``.
    """
    return (_weights_or_dequantized(graph, node, "weights W", "deconv-weights-initializer")
            + _needs_weights(graph, node, 2, "bias B", "deconv-bias-initializer",
                             "builtin_op_importers.cpp ConvTranspose"))


def _rule_resize(graph: _Graph, node: Any) -> List[Finding]:
    """Resize at opset >= 11 (release/8.2-GA, builtin_op_importers.cpp ``Resize``).

    * Without ``sizes`` (no 4th input) the ``scales`` must be weights: "Resize scales must be an
      initializer!" (release/8.4-GA also takes a tensor scales).  With 4 inputs the 4th (``sizes``) is
      converted to a tensor, so it must be given (an empty name there is a null tensor).
    * ``mode`` "cubic" is refused; ``coordinate_transformation_mode`` must be one of
      ``RESIZE_COORDINATE_MODES``; "tf_half_pixel_for_nn" only with ``nearest_mode`` "round_prefer_floor".
    * Linear resize with known scales: only the outermost 3 dimensions may scale (``canUseLinearResize``,
      onnx2trt_utils.cpp), i.e. scales before the last 3 must be 1.
    """
    found: List[Finding] = []
    name = _node_name(node)
    mode = _attr(node, "mode", "nearest")
    if graph.opset < 11:
        return _needs_weights(graph, node, 1, "scales", "resize-scales-initializer", "builtin_op_importers.cpp Resize")
    transform = _attr(node, "coordinate_transformation_mode", "half_pixel")
    nearest = _attr(node, "nearest_mode", "round_prefer_floor")
    if mode == "cubic":
        found.append(Finding(name, "Resize", "resize-mode", "mode 'cubic' is not supported by {}".format(SOURCE)))
    if transform not in RESIZE_COORDINATE_MODES:
        found.append(Finding(name, "Resize", "resize-coordinate-mode", "coordinate_transformation_mode {!r} is not "
                             "supported by {}: use one of {}".format(transform, SOURCE,
                                                                      ", ".join(sorted(RESIZE_COORDINATE_MODES)))))
    elif transform == "tf_half_pixel_for_nn" and nearest != "round_prefer_floor":
        found.append(Finding(name, "Resize", "resize-nearest-mode", "tf_half_pixel_for_nn needs nearest_mode "
                             "round_prefer_floor in {}".format(SOURCE)))
    if len(node.input) >= 4:
        if not _input(node, 3):
            found.append(Finding(name, "Resize", "resize-sizes", "4 inputs with an empty sizes: {} converts the 4th "
                                 "input to a tensor; drop it and give scales".format(SOURCE)))
        return found
    scales = _input(node, 2)
    if not scales or not graph.is_weights(scales):
        found.append(Finding(name, "Resize", "resize-scales-initializer", "scales {!r} is {} and no sizes are given, "
                             "but {} needs initializer scales (builtin_op_importers.cpp Resize)".format(
                                 scales, "a tensor made by " + graph.produced_by(scales) if scales else "empty",
                                 SOURCE)))
        return found
    values = graph.array(scales)
    if mode == "linear" and values is not None and values.size > 3 and any(v != 1 for v in values[:-3]):
        found.append(Finding(name, "Resize", "resize-linear-dims", "linear resize of scales {} scales a dimension "
                             "beyond the outermost 3, which {} refuses".format(list(values), SOURCE)))
    return found


def _rule_slice(graph: _Graph, node: Any) -> List[Finding]:
    """Slice at opset >= 10: ``axes`` (input 3), when given, must be weights.

    builtin_op_importers.cpp ``Slice`` (release/8.2-GA) asserts the axes' values are known ("This version
    of TensorRT does not support dynamic axes"); starts, ends and steps may be tensors (shape tensors).
    docs/operators.md: "`axes` must be an initializer" (still so at release/8.5-GA).
    """
    if graph.opset < 10:
        return []
    return _needs_weights(graph, node, 3, "axes", "slice-axes-initializer", "builtin_op_importers.cpp Slice")


def _rule_quantize(graph: _Graph, node: Any) -> List[Finding]:
    """QuantizeLinear / DequantizeLinear (``QuantDequantLinearHelper``, builtin_op_importers.cpp,
    release/8.2-GA): exactly 3 inputs (the zero point is required); a zero point given as weights must
    be all zeros ("TRT only supports symmetric quantization"); a scale given as weights must be all
    positive.  Tensor scales and zero points are accepted."""
    name = _node_name(node)
    if len(node.input) != 3 or not all(node.input):
        return [Finding(name, node.op_type, "qdq-inputs", "needs 3 inputs (x, scale, zero_point) in {}; it has "
                        "{}".format(SOURCE, [str(i) for i in node.input]))]
    found: List[Finding] = []
    scale, zero = graph.array(node.input[1]), graph.array(node.input[2])
    if scale is not None and not (scale > 0).all():
        found.append(Finding(name, node.op_type, "qdq-scale", "scale {!r} has coefficients <= 0, refused by {}".format(
            node.input[1], SOURCE)))
    if zero is not None and (zero != 0).any():
        found.append(Finding(name, node.op_type, "qdq-zero-point", "zero point {!r} is not all zeros: {} supports "
                             "symmetric quantization only (export with --target tensorrt)".format(node.input[2], SOURCE)))
    return found


def _rule_arg_extreme(graph: _Graph, node: Any) -> List[Finding]:
    """ArgMax / ArgMin (``argMinMaxHelper``, onnx2trt_utils.cpp, release/8.2-GA): ``select_last_index``
    needs opset >= 12."""
    if _attr(node, "select_last_index", 0) and graph.opset < 12:
        return [Finding(_node_name(node), node.op_type, "argmax-select-last", "select_last_index=1 needs opset "
                        ">= 12 in {}".format(SOURCE))]
    return []


def _rule_pool(graph: _Graph, node: Any) -> List[Finding]:
    """AveragePool / MaxPool (``poolingHelper``, onnx2trt_utils.cpp, release/8.2-GA): 1-D (on a 3-D
    input), 2-D or 3-D kernels; dilations other than 1 are refused at opset >= 10.  MaxPool
    (builtin_op_importers.cpp): no ``Indices`` output."""
    found: List[Finding] = []
    name = _node_name(node)
    kernel = _attr(node, "kernel_shape", [])
    if not 1 <= len(kernel) <= 3:
        found.append(Finding(name, node.op_type, "pool-rank", "kernel_shape {} : {} pools 1-3 spatial dimensions".format(
            list(kernel), SOURCE)))
    if graph.opset >= 10 and any(d != 1 for d in _attr(node, "dilations", [])):
        found.append(Finding(name, node.op_type, "pool-dilations", "dilations {} are not supported by {}".format(
            list(_attr(node, "dilations")), SOURCE)))
    if node.op_type == "MaxPool" and len([o for o in node.output if o]) > 1:
        found.append(Finding(name, node.op_type, "maxpool-indices", "the Indices output is not supported by "
                             "{}".format(SOURCE)))
    return found


def _rule_cast(graph: _Graph, node: Any) -> List[Finding]:
    """Cast (builtin_op_importers.cpp ``Cast``, ``convertDtype`` in onnx2trt_utils.cpp, release/8.2-GA):
    ``to`` must be one of ``CAST_TYPES``."""
    to = _attr(node, "to")
    if to not in CAST_TYPES:
        return [Finding(_node_name(node), "Cast", "cast-type", "cast to ONNX data type {} is not supported by {}".format(
            to, SOURCE))]
    return []


def _rule_constant(graph: _Graph, node: Any) -> List[Finding]:
    """Constant (builtin_op_importers.cpp ``Constant``, release/8.2-GA): ``sparse_value``,
    ``value_string`` and ``value_strings`` are refused."""
    refused = [a.name for a in node.attribute if a.name in ("sparse_value", "value_string", "value_strings")]
    if refused:
        return [Finding(_node_name(node), "Constant", "constant-attribute", "attribute {} is not supported by {}".format(
            refused[0], SOURCE))]
    return []


# Operators whose inputs need no rule at 8.2 although one might expect one (all release/8.2-GA,
# builtin_op_importers.cpp): Clip takes tensor min/max (it switches to elementwise max/min), Pad takes a
# tensor ``pads`` (slices of it), Reshape a tensor ``shape`` (a shape tensor), Gemm a tensor B or C
# (matrix multiply instead of fully connected).
RULES: Dict[str, Callable[[_Graph, Any], List[Finding]]] = {
    "Conv": _rule_conv,
    "ConvTranspose": _rule_conv_transpose,
    "Resize": _rule_resize,
    "Slice": _rule_slice,
    "QuantizeLinear": _rule_quantize,
    "DequantizeLinear": _rule_quantize,
    "ArgMax": _rule_arg_extreme,
    "ArgMin": _rule_arg_extreme,
    "AveragePool": _rule_pool,
    "MaxPool": _rule_pool,
    "Cast": _rule_cast,
    "Constant": _rule_constant,
}


def _node_name(node: Any) -> str:
    return node.name or (node.output[0] if node.output else node.op_type)


def _default_opset(model: Any) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def check_model(model: Any, check_opset: bool = True) -> List[Finding]:
    """Every reason TensorRT 8.2's ONNX parser would reject ``model`` (an onnx ModelProto); [] if none.

    ``check_opset`` also holds the default-domain opset to 8.2's documented range (7..13); pass False
    for a graph deliberately exported at a higher opset for a newer TensorRT.
    """
    opset = _default_opset(model)
    found: List[Finding] = []
    if check_opset and not MIN_OPSET <= opset <= MAX_OPSET:
        found.append(Finding("", "", "opset", "opset {} is outside {}..{}, the range TensorRT 8.2 supports "
                             "(docs/operators.md, {}): export with --opset 13".format(opset, MIN_OPSET, MAX_OPSET, SOURCE)))
    graph = _Graph(model.graph, opset)
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS:
            found.append(Finding(_node_name(node), node.op_type, "unsupported-op", "no importer for {}{} in {} "
                                 "(it would need a TensorRT plugin)".format(
                                     node.domain + "::" if node.domain else "", node.op_type, SOURCE)))
            continue
        rule = RULES.get(node.op_type)
        if rule is not None:
            found.extend(rule(graph, node))
    return found


def check_file(path: str, check_opset: bool = True) -> List[Finding]:
    """``check_model`` of the ONNX file at ``path`` (weights in external files are not needed)."""
    import onnx

    return check_model(onnx.load(path, load_external_data=False), check_opset)


def summary(findings: Sequence[Finding], limit: int = 3) -> str:
    """One line: how many findings, the first ``limit`` of them, and what is left out."""
    shown = "; ".join(str(f) for f in findings[:limit])
    more = len(findings) - limit
    return "{} finding(s): {}{}".format(len(findings), shown, "; and {} more".format(more) if more > 0 else "")


def count_by_rule(findings: Iterable[Finding]) -> Dict[str, int]:
    """How many findings each rule made (for reports and tests)."""
    counts: Dict[str, int] = {}
    for finding in findings:
        counts[finding.rule] = counts.get(finding.rule, 0) + 1
    return counts


class UnparsableGraph(UserError):
    """A graph dfseg wrote would not parse on TensorRT 8.2 (a dfseg defect: the message says so)."""


def require_parsable(model: Any, path: str, check_opset: bool = True) -> None:
    """Raise ``UnparsableGraph`` (one line naming ``path`` and the first findings) if ``check_model``
    finds anything in ``model``: a ModelProto, a file to read, or None to read ``path``."""
    source = path if model is None else model
    findings = check_file(source, check_opset) if isinstance(source, str) else check_model(source, check_opset)
    if findings:
        raise UnparsableGraph("{}: TensorRT 8.2 could not parse this graph: {}; this is a dfseg export defect, "
                              "please report it".format(path, summary(findings)))
