"""dfseg.trt_parse_rules on small hand-built graphs: each TensorRT 8.2 importer rule refuses the graph
that breaks it and accepts the one beside it that keeps it.  No torch: the checker is device-safe."""

import subprocess
import sys
from typing import Dict, List, Optional

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from dfseg.errors import UserError  # noqa: E402
from dfseg.trt_parse_rules import check_model, count_by_rule, require_parsable, summary  # noqa: E402

F = TensorProto.FLOAT


def _model(nodes: List, inits: Dict[str, np.ndarray], opset: int = 13, x_shape=(1, 2, 4, 4),
           y_shape: Optional[List] = None, y_type: int = F) -> "onnx.ModelProto":
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", F, list(x_shape))],
        [helper.make_tensor_value_info("y", y_type, y_shape)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


W = np.ones((2, 2, 1, 1), np.float32)
B = np.zeros(2, np.float32)


def _conv(bias: str = "b", weight: str = "w", op: str = "Conv") -> object:
    return helper.make_node(op, ["x", weight, bias], ["y"], name="conv", kernel_shape=[1, 1])


def _identity(src: str, dst: str) -> object:
    return helper.make_node("Identity", [src], [dst], name="id_" + dst)


def _dq(src: str, dst: str, zero: str = "zp") -> object:
    return helper.make_node("DequantizeLinear", [src, "s", zero], [dst], name="dq_" + dst, axis=0)


def _resize(inputs: List[str], **attrs) -> object:
    attrs.setdefault("mode", "linear")
    return helper.make_node("Resize", ["x"] + inputs, ["y"], name="resize", **attrs)


SCALES = np.array([1, 1, 2, 2], np.float32)
SIZES = np.array([1, 2, 8, 8], np.int64)
QW = np.ones((2, 2, 1, 1), np.int8)
QS = np.full(2, 0.1, np.float32)
QZ = np.zeros(2, np.int8)

CASES = [
    # (id, nodes, initializers, opset, rule expected or None)
    ("conv bias initializer", [_conv()], {"w": W, "b": B}, 13, None),
    ("conv without bias", [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1])], {"w": W}, 13, None),
    ("conv bias through Identity", [_identity("b0", "b"), _conv()], {"w": W, "b0": B}, 13, "conv-bias-initializer"),
    ("conv bias through an Identity chain", [_identity("b0", "b1"), _identity("b1", "b"), _conv()],
     {"w": W, "b0": B}, 13, "conv-bias-initializer"),
    ("conv bias at opset 11", [_identity("b0", "b"), _conv()], {"w": W, "b0": B}, 11, "conv-bias-initializer"),
    ("conv bias from a Constant", [helper.make_node("Constant", [], ["b"], value=numpy_helper.from_array(B, "c")),
                                   _conv()], {"w": W}, 13, None),
    ("conv bias computed from the input",
     [helper.make_node("ReduceMean", ["x"], ["b"], axes=[0, 2, 3], keepdims=0), _conv()], {"w": W}, 13,
     "conv-bias-initializer"),
    ("conv weights through Identity", [_identity("w0", "w"), _conv()], {"w0": W, "b": B}, 13,
     "conv-weights-initializer"),
    ("conv weights from DequantizeLinear", [_dq("qw", "w"), _conv()], {"qw": QW, "s": QS, "zp": QZ, "b": B}, 13,
     None),
    ("conv weights transposed at parse time",
     [helper.make_node("Transpose", ["w0"], ["w"], perm=[1, 0, 2, 3]), _conv()], {"w0": W, "b": B}, 13, None),
    ("deconv bias initializer", [_conv(op="ConvTranspose")], {"w": W, "b": B}, 13, None),
    ("deconv bias through Identity", [_identity("b0", "b"), _conv(op="ConvTranspose")], {"w": W, "b0": B}, 13,
     "deconv-bias-initializer"),
    ("resize scales initializer", [_resize(["", "scales"])], {"scales": SCALES}, 13, None),
    ("resize scales through Identity", [_identity("s0", "scales"), _resize(["", "scales"])], {"s0": SCALES}, 13,
     "resize-scales-initializer"),
    ("resize with neither scales nor sizes", [_resize(["", ""])], {}, 13, "resize-scales-initializer"),
    ("resize sizes as a tensor", [_identity("z0", "sizes"), _resize(["", "", "sizes"])], {"z0": SIZES}, 13, None),
    ("resize sizes left empty", [_resize(["", "scales", ""])], {"scales": SCALES}, 13, "resize-sizes"),
    ("resize cubic", [_resize(["", "scales"], mode="cubic")], {"scales": SCALES}, 13, "resize-mode"),
    ("resize align_corners", [_resize(["", "scales"], coordinate_transformation_mode="align_corners")],
     {"scales": SCALES}, 13, None),
    ("resize tf_crop_and_resize", [_resize(["", "scales"], coordinate_transformation_mode="tf_crop_and_resize")],
     {"scales": SCALES}, 13, "resize-coordinate-mode"),
    ("resize linear on the batch axis", [_resize(["", "scales"])], {"scales": np.array([2, 1, 1, 1], np.float32)},
     13, "resize-linear-dims"),
    ("slice axes initializer", [helper.make_node("Slice", ["x", "st", "en", "ax"], ["y"])],
     {"st": np.array([0], np.int64), "en": np.array([1], np.int64), "ax": np.array([1], np.int64)}, 13, None),
    ("slice axes through Identity", [_identity("a0", "ax"), helper.make_node("Slice", ["x", "st", "en", "ax"], ["y"])],
     {"st": np.array([0], np.int64), "en": np.array([1], np.int64), "a0": np.array([1], np.int64)}, 13,
     "slice-axes-initializer"),
    ("dequantize with a non-zero zero point", [_dq("qw", "w", "zq"), _conv()],
     {"qw": QW, "s": QS, "zq": np.ones(2, np.int8), "b": B}, 13, "qdq-zero-point"),
    ("dequantize without a zero point", [helper.make_node("DequantizeLinear", ["qw", "s"], ["w"], axis=0), _conv()],
     {"qw": QW, "s": QS, "b": B}, 13, "qdq-inputs"),
    ("argmax select_last_index at opset 11",
     [helper.make_node("ArgMax", ["x"], ["y"], axis=1, keepdims=0, select_last_index=1)], {}, 11,
     "argmax-select-last"),
    ("argmax at opset 13", [helper.make_node("ArgMax", ["x"], ["y"], axis=1, keepdims=0)], {}, 13, None),
    ("maxpool with indices", [helper.make_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2])], {}, 13,
     "maxpool-indices"),
    ("maxpool with dilations", [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2])],
     {}, 13, "pool-dilations"),
    ("ceil-mode average pool", [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2],
                                                 ceil_mode=1, count_include_pad=0)], {}, 13, None),
    ("cast to int32", [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT32)], {}, 13, None),
    ("cast to uint8", [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.UINT8)], {}, 13, "cast-type"),
    ("an operator 8.2 has no importer for", [helper.make_node("Mish", ["x"], ["y"])], {}, 13, "unsupported-op"),
    ("an operator of another domain", [helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")], {}, 13,
     "unsupported-op"),
    ("clip with tensor bounds (elementwise at 8.2)", [_identity("lo0", "lo"), helper.make_node("Clip", ["x", "lo"], ["y"])],
     {"lo0": np.array(0, np.float32)}, 13, None),
    ("opset 17", [helper.make_node("Relu", ["x"], ["y"])], {}, 17, "opset"),
]


@pytest.mark.parametrize("nodes,inits,opset,rule", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rule_refuses_what_breaks_it_and_accepts_its_neighbour(nodes, inits, opset, rule) -> None:
    findings = check_model(_model(nodes, inits, opset))
    assert [f.rule for f in findings] == ([rule] if rule else []), findings


def test_identity_chain_reports_the_conv_and_who_made_its_bias() -> None:
    model = _model([_identity("b0", "b1"), _identity("b1", "b"), _conv()], {"w": W, "b0": B})
    (finding,) = check_model(model)
    assert finding.node == "conv" and finding.op == "Conv"
    assert "'b'" in finding.message and "Identity" in finding.message and "release/8.2-GA" in finding.message


def test_higher_opsets_can_be_held_to_the_node_rules_only() -> None:
    model = _model([_identity("b0", "b"), _conv()], {"w": W, "b0": B}, opset=17)
    assert count_by_rule(check_model(model)) == {"opset": 1, "conv-bias-initializer": 1}
    assert count_by_rule(check_model(model, check_opset=False)) == {"conv-bias-initializer": 1}


def test_summary_and_error_are_one_line_naming_the_file(tmp_path) -> None:
    nodes = [_identity("bias", "b{}".format(i)) for i in range(5)]
    nodes += [helper.make_node("Conv", ["x" if i == 0 else "t{}".format(i), "w", "b{}".format(i)],
                               ["y" if i == 4 else "t{}".format(i + 1)], name="conv{}".format(i)) for i in range(5)]
    model = _model(nodes, {"w": W, "bias": B})
    findings = check_model(model)
    assert len(findings) == 5
    line = summary(findings)
    assert "\n" not in line and line.startswith("5 finding(s)") and "and 2 more" in line
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    with pytest.raises(UserError) as info:
        require_parsable(None, str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value) and "conv-bias-initializer" in str(info.value)
    require_parsable(_model([_conv()], {"w": W, "b": B}), str(path))  # a parsable graph raises nothing


def test_checker_imports_without_torch() -> None:
    code = ("import sys; sys.modules['torch'] = None; import dfseg.trt_parse_rules as r; "
            "print(len(r.SUPPORTED_OPS))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 100
