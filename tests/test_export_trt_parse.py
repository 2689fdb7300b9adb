"""Every graph dfseg exports parses on TensorRT 8.2 (dfseg.trt_parse_rules), and the initializer
folding that makes it so changes no output in ONNX Runtime.

The defect it guards (issue 24, item 0): ``torch.onnx.export`` deduplicates equal initializers, an
untrained network's BatchNorm-folded biases are equal, so most Conv biases reached the graph as
``Identity`` nodes, which TensorRT 8.2's Conv importer refuses."""

import json
import os
import subprocess
import sys
import warnings
from typing import List

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from dfseg.arch import PRESETS  # noqa: E402
from dfseg.bench.boundary import write_stubbed_part  # noqa: E402
from dfseg.errors import UserError  # noqa: E402
from dfseg.export import (  # noqa: E402
    export_onnx,
    export_part_onnx,
    fold_batchnorm,
    fold_static_shapes,
    plain_initializers,
)
from dfseg.models import create_model, list_models  # noqa: E402
from dfseg.parts import network_parts  # noqa: E402
from dfseg.trt_parse_rules import check_file, check_model, count_by_rule  # noqa: E402

SEG_SIZE = (64, 48)  # width, height: every rule is size independent, so the smallest honest size
BACKBONE_SIZE = (64, 64)


def _size(name: str):
    return SEG_SIZE if name in PRESETS and PRESETS[name].is_segmentation else BACKBONE_SIZE


def _export_the_old_way(name: str, path: str) -> "onnx.ModelProto":
    """What dfseg's export wrote before the fix: an untrained model, BatchNorm folded, traced by
    torch.onnx.export, shape arithmetic folded, and no initializer folding."""
    torch.manual_seed(0)
    model = fold_batchnorm(create_model(name).eval())
    width, height = _size(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(model, (torch.randn(1, 3, height, width),), path, input_names=["input"],
                              output_names=["logits"], opset_version=13, do_constant_folding=True, dynamo=False)
    proto = fold_static_shapes(onnx.load(path))
    onnx.save(proto, path)
    return proto


def _identity_fed_biases(proto: "onnx.ModelProto") -> List[str]:
    made_by = {out: node.op_type for node in proto.graph.node for out in node.output}
    return [node.name for node in proto.graph.node
            if node.op_type == "Conv" and len(node.input) > 2 and made_by.get(node.input[2]) == "Identity"]


def _run(path: str, feed: dict) -> List[np.ndarray]:
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feed)


@pytest.mark.parametrize("name", ["df1-seg", "df2-seg2"])
def test_the_old_export_hands_tensorrt_82_identity_biases(name: str, tmp_path) -> None:
    proto = _export_the_old_way(name, str(tmp_path / "old.onnx"))
    convs = [node for node in proto.graph.node if node.op_type == "Conv"]
    through_identity = _identity_fed_biases(proto)
    assert len(through_identity) > len(convs) // 2  # most biases: they are all equal before training
    findings = check_model(proto)
    assert count_by_rule(findings) == {"conv-bias-initializer": len(through_identity)}
    assert sorted(f.node for f in findings) == sorted(through_identity)
    # the fix, applied to the same graph
    assert plain_initializers(proto) >= len(through_identity)
    assert check_model(proto) == [] and "Identity" not in {node.op_type for node in proto.graph.node}
    onnx.checker.check_model(proto, full_check=True)


def test_folded_graph_computes_what_the_unfolded_one_does(tmp_path) -> None:
    old = str(tmp_path / "old.onnx")
    proto = _export_the_old_way("df1-seg", old)
    assert _identity_fed_biases(proto)
    plain_initializers(proto)
    new = str(tmp_path / "new.onnx")
    onnx.save(proto, new)
    x = np.random.RandomState(1).standard_normal((1, 3, SEG_SIZE[1], SEG_SIZE[0])).astype(np.float32)
    (expected,), (actual,) = _run(old, {"input": x}), _run(new, {"input": x})
    assert actual.shape == expected.shape == (1, 19, SEG_SIZE[1], SEG_SIZE[0])
    # same weights, same operators: only where the weights live differs
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6 * float(np.abs(expected).max()))


def _chain_model() -> "onnx.ModelProto":
    """Identity chains over an initializer and over a Constant, and an Identity that is a graph output."""
    f = TensorProto.FLOAT
    weight = np.random.RandomState(0).standard_normal((3, 2, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Identity", ["b"], ["b1"]), helper.make_node("Identity", ["b1"], ["b2"]),
        helper.make_node("Constant", [], ["w0"], value=numpy_helper.from_array(weight, "w0")),
        helper.make_node("Identity", ["w0"], ["w1"]),
        helper.make_node("Conv", ["x", "w1", "b2"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["y"]),
        helper.make_node("Identity", ["b"], ["bias_out"]),
    ]
    graph = helper.make_graph(
        nodes, "chains", [helper.make_tensor_value_info("x", f, [1, 2, 3, 3])],
        [helper.make_tensor_value_info("y", f, [1, 3, 3, 3]), helper.make_tensor_value_info("bias_out", f, [3])],
        [numpy_helper.from_array(np.array([0.5, -1.0, 2.0], np.float32), "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_identity_chains_fold_and_run_the_same(tmp_path) -> None:
    proto = _chain_model()
    assert count_by_rule(check_model(proto)) == {"conv-bias-initializer": 1, "conv-weights-initializer": 1}
    before = str(tmp_path / "before.onnx")
    onnx.save(proto, before)
    assert plain_initializers(proto) == 4  # b1, b2, w0 (the Constant), w1
    onnx.checker.check_model(proto, full_check=True)
    assert check_model(proto) == []
    assert [node.op_type for node in proto.graph.node] == ["Conv", "Relu", "Identity"]  # the output's Identity stays
    assert {init.name for init in proto.graph.initializer} == {"b", "b2", "w1"}  # nothing unread is left
    after = str(tmp_path / "after.onnx")
    onnx.save(proto, after)
    x = np.random.RandomState(2).standard_normal((1, 2, 3, 3)).astype(np.float32)
    for expected, actual in zip(_run(before, {"x": x}), _run(after, {"x": x})):
        np.testing.assert_array_equal(actual, expected)


EXPORTED = [(name, output, opset) for name in list_models() for output, opset in [("logits", 13)]]
EXPORTED += [("df1-seg", "classmap", 13), ("df1-seg", "logits", 11), ("dflite-seg", "classmap", 11)]


@pytest.mark.parametrize("name,output,opset", EXPORTED)
def test_every_model_exports_a_graph_tensorrt_82_parses(name: str, output: str, opset: int, tmp_path) -> None:
    path = export_onnx(name, _size(name), str(tmp_path / "m.onnx"), opset=opset, output=output)
    assert check_file(path) == []
    ops = {node.op_type for node in onnx.load(path).graph.node}
    assert "Identity" not in ops and "Constant" not in ops


def _block_suite():
    """One part of every kind in the presets' shape walks (what the bundle's table suite is made of)."""
    seen = {}
    for name in ("df1-seg", "df2a", "df1-seg-d8"):
        for part in network_parts(PRESETS[name], 90, 160):
            seen.setdefault((part.kind, part.stride, bool(part.inner), part.projection, part.c_in == part.c_out), part)
    return list(seen.values())


def test_the_block_suite_parses_on_tensorrt_82(tmp_path) -> None:
    parts = _block_suite()
    assert {part.kind for part in parts} >= {"stem", "basic", "bottleneck", "classifier", "ppm", "wc", "fuse", "head"}
    for i, part in enumerate(parts):
        bare = export_part_onnx(part, str(tmp_path / "p{}.onnx".format(i)))
        stubbed = str(tmp_path / "s{}.onnx".format(i))
        write_stubbed_part(part, bare, stubbed)
        assert check_file(bare) == [] and check_file(stubbed) == [], part.key


def test_an_unparsable_graph_is_a_one_line_error_and_no_file(tmp_path) -> None:
    class Bicubic(torch.nn.Module):  # TensorRT 8.2 has no cubic Resize
        def forward(self, x):
            return torch.nn.functional.interpolate(x, scale_factor=2.0, mode="bicubic", align_corners=False)

    path = tmp_path / "cubic.onnx"
    with pytest.raises(UserError) as info:
        export_onnx(Bicubic(), (16, 16), str(path))
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "resize-mode" in message
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_derived_graphs_for_tensorrt_parse_on_tensorrt_82(precision: str, tmp_path) -> None:
    """The FP16 graph keeps the head (its x8 bilinear kernel) in FP32, which once cast a Constant
    kernel back through a Cast node; the INT8 graph is the symmetric Q/DQ one made for TensorRT."""
    from dfseg.cli.export import main

    cv2 = pytest.importorskip("cv2")
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.RandomState(0)
    for index in range(4):
        assert cv2.imwrite(str(images / "{}.png".format(index)), rng.randint(0, 256, (48, 64, 3)).astype(np.uint8))
    extra = ["--fp32-layers", "/head/"] if precision == "fp16" else ["--calibration", str(images)]
    out = str(tmp_path / "derived.onnx")
    assert main(["df1-seg", "--size", "64x48", "--precision", precision, "--target", "tensorrt", "-o", out] + extra) == 0
    assert check_file(out) == []
    (logits,) = _run(out, {"input": np.zeros((1, 3, 48, 64), np.float32)})
    assert logits.shape == (1, 19, 48, 64) and np.isfinite(logits).all()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """``dfseg-export --bundle`` as a user runs it, for one preset at 360p: its models, the table's whole
    block suite between boundary stubs, the probes, the validation networks and the reference."""
    directory = str(tmp_path_factory.mktemp("bundle") / "b")
    done = subprocess.run([sys.executable, "-m", "dfseg.cli.export", "--bundle", directory, "df1-seg", "--size", "360p"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return directory


@pytest.mark.slow  # the bundle export: 4-7 min of wall time on this project's shared 2-vCPU machines
def test_every_bundle_file_parses_on_tensorrt_82(bundle) -> None:
    with open(os.path.join(bundle, "manifest.json")) as handle:
        manifest = json.load(handle)
    listed = [entry["file"] for key in ("models", "parts", "boundaries") for entry in manifest[key]]
    listed += [manifest["overhead"]["file"], manifest["reference"]["file"]]
    on_disk = [os.path.relpath(os.path.join(root, name), bundle) for root, _, names in os.walk(bundle)
               for name in names if name.endswith(".onnx")]
    assert set(listed) <= set(on_disk) and len(manifest["parts"]) > 20 and len(manifest["models"]) > 20
    failing = {path: count_by_rule(check_file(os.path.join(bundle, path))) for path in on_disk}
    assert {path: found for path, found in failing.items() if found} == {}
