"""Boundary stubs: the stubbed part computes exactly what the bare part does, and on ONNX Runtime it
runs in context (layout reorders on the stubs, the residual Add fused as inside a network)."""

import os

import numpy as np
import onnx
import onnxruntime
import pytest

from dfseg.arch import Arch
from dfseg.bench.boundary import STUB_SUFFIX, boundary_shapes, input_shapes, stub_ms
from dfseg.bench.model_files import HostSource, safe_filename
from dfseg.export import part_input_names
from dfseg.parts import CLASSIFIER, FUSION, network_parts

# bottlenecks with an identity shortcut, a classifier (vector output), and a segmentation decoder (fusion)
BACKBONE = Arch.parse("64x1_16b64x2_16b64x1+32b128x1")
SEGMENTATION = Arch.parse("64x1_64x1_64x1-wc19.19.19")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return HostSource(str(tmp_path_factory.mktemp("onnx")))


def _session(path, optimized=None):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    if optimized:
        options.optimized_model_filepath = optimized
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _bare_path(source, part):
    source.part_path(part)  # exporting the stubbed part writes the bare one beside it, in any test order
    return os.path.join(source.work_dir, "parts", safe_filename(part.key) + ".onnx")


def _distinct_kinds(parts):
    found = {}
    for part in parts:
        found.setdefault((part.kind, part.stride, part.projection), part)
    return list(found.values())


def test_stubbed_parts_compute_the_bare_parts_function(source):
    parts = _distinct_kinds(network_parts(BACKBONE, 64, 64) + network_parts(SEGMENTATION, 64, 64))
    assert {p.kind for p in parts} >= {"bottleneck", CLASSIFIER, FUSION}
    rng = np.random.RandomState(0)
    for part in parts:
        stubbed_path = source.part_path(part)
        stubbed, bare = _session(stubbed_path), _session(_bare_path(source, part))
        names = part_input_names(part)
        assert [i.name for i in stubbed.get_inputs()] == names == [i.name for i in bare.get_inputs()]
        feed = {name: rng.randn(1, *shape).astype(np.float32) for name, shape in zip(names, input_shapes(part))}
        np.testing.assert_allclose(stubbed.run(None, feed)[0], bare.run(None, feed)[0], rtol=1e-5, atol=1e-5)
        stubs = [n for n in onnx.load(stubbed_path).graph.node if n.name.endswith(STUB_SUFFIX) or n.name == "output"]
        assert len(stubs) == len(boundary_shapes(part))  # no stub on a classifier's vector output


def test_probe_is_two_identity_stubs(source):
    shape = (16, 5, 7)
    path = source.boundary_path(shape)
    model = onnx.load(path)
    assert [n.op_type for n in model.graph.node] == ["Conv", "Conv"]
    x = np.random.RandomState(1).randn(1, *shape).astype(np.float32)
    np.testing.assert_array_equal(_session(path).run(None, {"x": x})[0], x)
    assert stub_ms(0.5, 0.1) == pytest.approx(0.2) and stub_ms(0.05, 0.1) == 0.0


def test_stubs_move_reorders_off_the_part_and_let_the_residual_add_fuse(source, tmp_path):
    """Why stubs: alone, an identity-shortcut block's Add reads the NCHW graph input and is not fused."""
    part = [p for p in network_parts(BACKBONE, 64, 64) if p.kind == "bottleneck" and not p.projection][0]

    def optimized_ops(path, name):
        target = str(tmp_path / name)
        _session(path, optimized=target)
        return [n.op_type for n in onnx.load(target).graph.node]

    bare = optimized_ops(_bare_path(source, part), "bare.onnx")
    if "ReorderInput" not in bare:
        pytest.skip("this CPU's ONNX Runtime does not use the blocked (NCHWc) layout")
    stubbed = optimized_ops(source.part_path(part), "stubbed.onnx")
    assert "Add" in bare
    assert "Add" not in stubbed and "Relu" not in stubbed  # fused into the last convolution, as in a network
    assert stubbed.count("Conv") == bare.count("Conv") + 2  # the two stubs carry the reorders
