"""Timing a part in context: boundary stubs around it, their cost measured once and taken off.

ONNX Runtime on CPU (``ORT_ENABLE_ALL``) runs convolutions in a blocked layout (NCHWc).  A part
exported alone has NCHW graph inputs and outputs, so its session reorders them into and out of the
blocked layout, and an identity shortcut's residual Add and ReLU, whose operand is then the NCHW
graph input, stay separate NCHW operators instead of being fused into the last convolution as they
are inside a network.  For cheap, tensor-heavy parts (1x1 bottlenecks on 14x14 and 7x7 maps) that
made the sum of parts over-estimate whole networks by ~7%.

So a part is timed between *stubs*: each 4-D input and the output pass through a depthwise 1x1
convolution (unit weights), which ONNX Runtime blocks like any convolution.  The reorders move onto
the stubs and the part sees blocked tensors produced by a convolution, as inside a network.  The
stubs' own cost comes from a probe per tensor shape, two chained stubs: T(probe) - overhead = R_in +
2 d + R_out, and one stub with its reorder costs half of that (R_in ~ R_out; measured ones differ by
a few microseconds).  A table entry is ``T(stubbed part) - overhead - sum of its stubs``.  On
backends without layout changes the stubs are plain cheap layers and the subtraction removes them.

Device side: Python 3.6, no torch (writing ONNX files needs the onnx package, host side).
"""

from typing import List, Tuple

from ..parts import CLASSIFIER, FUSION, Part

Shape = Tuple[int, int, int]  # channels, height, width
PROBE_DEPTH = 2  # stubs in a boundary probe
STUB_SUFFIX = "__stub"


def shape_label(shape: Shape) -> str:
    return "{}x{}x{}".format(*shape)


def input_shapes(part: Part) -> List[Shape]:
    """Shapes of the part's inputs in the order of ``dfseg.export.part_input_names``."""
    shapes = [(part.c_in, part.h_in, part.w_in)]
    if part.kind == FUSION:
        shapes.append((part.c_out, part.h_out, part.w_out))  # the skip ("high") input
    return shapes


def boundary_shapes(part: Part) -> List[Shape]:
    """The 4-D tensors crossing ``part``'s boundary, one stub each: its inputs and its output (a
    classifier's output is a vector, never blocked, and gets no stub)."""
    shapes = input_shapes(part)
    if part.kind != CLASSIFIER:
        shapes.append((part.c_out, part.h_out, part.w_out))
    return shapes


def probe_name(shape: Shape) -> str:
    return "boundary:{}".format(shape_label(shape))


def stub_ms(probe_ms: float, overhead_ms: float) -> float:
    """One stub's cost (with its reorder) from the probe's median: (T(probe) - overhead) / 2, never negative."""
    return max((probe_ms - overhead_ms) / PROBE_DEPTH, 0.0)


def _stub_node(source: str, target: str, channels: int, weight: str):
    from onnx import helper

    return helper.make_node("Conv", [source, weight], [target], name=target, group=channels, kernel_shape=[1, 1])


def _stub_weight(channels: int, name: str):
    import numpy as np
    from onnx import numpy_helper

    return numpy_helper.from_array(np.ones((channels, 1, 1, 1), dtype=np.float32), name)


def write_probe_model(path: str, shape: Shape) -> None:
    """``PROBE_DEPTH`` chained stubs on a 1 x C x H x W tensor."""
    from onnx import TensorProto, helper

    from ..fileio import write_atomic

    channels = shape[0]
    dims = [1] + list(shape)
    nodes, weights = [], []
    current = "x"
    for i in range(PROBE_DEPTH):
        weight = "stub_w{}".format(i)
        weights.append(_stub_weight(channels, weight))
        output = "y" if i == PROBE_DEPTH - 1 else "t{}".format(i)
        nodes.append(_stub_node(current, output, channels, weight))
        current = output
    graph = helper.make_graph(nodes, "boundary", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7  # readable by the ONNX Runtime builds of JetPack 4.6
    write_atomic(path, model.SerializeToString())


def write_stubbed_part(part: Part, bare_path: str, path: str) -> None:
    """Copy the exported part at ``bare_path`` to ``path`` with a stub on every boundary tensor.

    Graph input and output names are unchanged; inside, consumers of an input read its stub's
    output and the part's last node writes into the output stub.
    """
    import onnx

    from ..fileio import write_atomic

    model = onnx.load(bare_path)
    graph = model.graph
    shapes = boundary_shapes(part)
    stubs = []
    for graph_input, shape in zip(graph.input, input_shapes(part)):
        inner = graph_input.name + STUB_SUFFIX
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name == graph_input.name:
                    node.input[i] = inner
        weight = inner + "_w"
        graph.initializer.append(_stub_weight(shape[0], weight))
        stubs.append(_stub_node(graph_input.name, inner, shape[0], weight))
    if len(shapes) > len(graph.input):  # the output has a stub
        output = graph.output[0].name
        inner = output + STUB_SUFFIX
        for node in graph.node:
            for i, name in enumerate(node.output):
                if name == output:
                    node.output[i] = inner
        weight = inner + "_w"
        graph.initializer.append(_stub_weight(shapes[-1][0], weight))
        graph.node.append(_stub_node(inner, output, shapes[-1][0], weight))
    nodes = stubs + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    write_atomic(path, model.SerializeToString())
