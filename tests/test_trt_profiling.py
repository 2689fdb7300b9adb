"""Layer -> part attribution of TensorRT profiles.

Node names come from a real ONNX export of DF1-Seg (dfseg.export.export_onnx); TensorRT's layer names
are built from them with TensorRT's documented naming forms (``A + B`` fusion, ``PWN(...)``,
``Reformatting CopyNode for ...``, ``{ForeignNode[A...B]}``), as seen in the recorded profiles of
tests/data/trtexec.
"""

import os

import pytest

from dfseg.arch import get_preset
from dfseg.backends.tensorrt.profiling import (
    OUTSIDE_PARTS,
    REFORMATTING,
    UNNAMED,
    attribute_layers,
    in_context_table,
    module_path_of_node,
    node_names_in_layer,
    part_of_node,
)
from dfseg.backends.tensorrt.trtexec_output import parse_profile
from dfseg.onnx_wire import OnnxSummary
from dfseg.parts import network_parts

WIDTH, HEIGHT = 128, 64


@pytest.fixture(scope="module")
def df1_seg_onnx(tmp_path_factory):
    pytest.importorskip("torch")
    from dfseg.export import export_onnx

    path = str(tmp_path_factory.mktemp("onnx") / "df1-seg.onnx")
    export_onnx("df1-seg", "{}x{}".format(WIDTH, HEIGHT), path)
    return path


@pytest.fixture(scope="module")
def df1_seg_nodes(df1_seg_onnx):
    onnx = pytest.importorskip("onnx")
    return [node.name for node in onnx.load(df1_seg_onnx).graph.node if node.name.startswith("/")]


def test_module_paths():
    assert module_path_of_node("/stage3/stage3.0/conv1/conv/Conv") == "stage3.0.conv1.conv"
    assert module_path_of_node("/stem/conv1/conv/Conv") == "stem.conv1.conv"
    assert module_path_of_node("/ppm/branches.2/conv/Conv") == "ppm.branches.2.conv"
    # From the recorded TensorRT 8.2 build log (torchvision ResNet inside a wrapper module).
    assert module_path_of_node("/model/layer2/layer2.0/downsample/downsample.0/Conv") == \
        "model.layer2.0.downsample.0"
    assert module_path_of_node("/Resize") == ""
    parts = ["stem.conv1", "stage3.0", "stage3.1", "ppm", "head"]
    assert part_of_node("/stage3/stage3.1/relu/Relu", parts) == "stage3.1"
    assert part_of_node("/stage3/stage3.10/relu/Relu", parts) is None  # not a prefix at a dot boundary
    assert part_of_node("/Resize", parts) is None


def test_node_names_in_fused_layers():
    assert node_names_in_layer("/stage3/stage3.0/conv1/conv/Conv + /stage3/stage3.0/conv1/relu/Relu") == [
        "/stage3/stage3.0/conv1/conv/Conv", "/stage3/stage3.0/conv1/relu/Relu"]
    assert node_names_in_layer("PWN(PWN(/model.0/act/Sigmoid), /model.0/act/Mul)") == [
        "/model.0/act/Sigmoid", "/model.0/act/Mul"]
    assert node_names_in_layer("{ForeignNode[/ppm/AveragePool.../head/conv/Conv]}") == [
        "/ppm/AveragePool", "/head/conv/Conv"]
    assert node_names_in_layer("(Unnamed Layer* 48) [Shuffle]") == []
    assert node_names_in_layer("639 copy") == []


def test_agrees_with_the_exporter_on_every_node(df1_seg_nodes):
    """The export module's part_of_node (host side) and this one (device side) must never disagree."""
    from dfseg import export

    names = [p.name for p in network_parts(get_preset("df1-seg"), HEIGHT, WIDTH)]
    for node in df1_seg_nodes:
        assert part_of_node(node, names) == export.part_of_node(node, names), node


def tensorrt_style_profile(nodes):
    """Per-layer ms of a plausible TensorRT engine of the exported graph, with fusions and extras."""
    profile = {}
    convs = [n for n in nodes if n.endswith("/Conv") and "/ppm/" not in n and not n.startswith("/head")]
    for index, conv in enumerate(convs):
        relu = conv.replace("/conv/Conv", "/relu/Relu")
        name = conv + (" + " + relu if relu in nodes else "")
        profile[name] = 0.01 * (index + 1)
    adds = [n for n in nodes if n.endswith("/Add")]
    for add in adds:
        profile["PWN({}, {})".format(add, add.replace("/Add", "/relu/Relu"))] = 0.002
    profile["Reformatting CopyNode for Input Tensor 0 to " + convs[0]] = 0.004
    ppm_first = [n for n in nodes if n.startswith("/ppm/")][0]
    head_last = [n for n in nodes if n.startswith("/head/")][-1]
    profile["{{ForeignNode[{}...{}]}}".format(ppm_first, head_last)] = 0.3
    profile["(Unnamed Layer* 48) [Shuffle]"] = 0.001
    profile["/Resize_outside"] = 0.005
    return profile


def test_attribution_of_a_whole_network(df1_seg_nodes):
    arch = get_preset("df1-seg")
    parts = network_parts(arch, HEIGHT, WIDTH)
    names = [p.name for p in parts]
    profile = tensorrt_style_profile(df1_seg_nodes)
    result = attribute_layers(profile, names)
    assert result.total_ms == pytest.approx(sum(profile.values()))
    assert result.attributed_ms + sum(result.unattributed.values()) == pytest.approx(result.total_ms)
    assert result.unattributed[REFORMATTING] == pytest.approx(0.004)
    assert result.unattributed[UNNAMED] == pytest.approx(0.001)
    assert result.unattributed[OUTSIDE_PARTS] == pytest.approx(0.005)
    assert result.shared_ms == pytest.approx(0.3)
    # Every backbone block got its own convolutions and its residual add.
    for part in parts:
        if part.name.startswith("stage"):
            expected = sum(ms for layer, ms in profile.items()
                           if "/{}/".format(part.name) in layer and "ForeignNode" not in layer)
            assert result.parts[part.name] == pytest.approx(expected), part.name
    # The Myelin region is split between the first and last node's parts.
    assert result.parts["ppm"] > 0 and result.parts["head"] > 0

    table = in_context_table(profile, arch, HEIGHT, WIDTH)
    keys = {p.key for p in parts}
    assert set(table) <= keys
    stage3_parts = [p for p in parts if p.name.startswith("stage3.")]
    assert table[stage3_parts[0].key] == pytest.approx(result.parts[stage3_parts[0].name])
    same_key = [p for p in stage3_parts[1:] if p.key == stage3_parts[1].key]
    assert table[stage3_parts[1].key] == pytest.approx(sum(result.parts[p.name] for p in same_key) / len(same_key))
    # Parts that received no layer (all fused away) are absent, not 0 ms.
    for key in table:
        assert any(result.layers.get(p.name) for p in parts if p.key == key)


def test_recorded_8x_profile_reports_unattributed_time():
    """Old-exporter names (Conv_0) carry no scope: nothing is guessed, it is all reported unattributed."""
    profile = parse_profile(os.path.join(os.path.dirname(__file__), "data", "trtexec", "trt8_profile.json")).per_layer_ms()
    result = attribute_layers(profile, ["stage3.0", "head"])
    assert result.attributed_ms == 0.0
    assert sum(result.unattributed.values()) == pytest.approx(sum(profile.values()))
    assert result.unattributed[REFORMATTING] == pytest.approx(0.058695)


def test_a_myelin_region_charges_every_part_inside_it(df1_seg_onnx, df1_seg_nodes):
    """``{ForeignNode[A...B]}`` names only its ends; the parts between them ran inside it too."""
    names = [p.name for p in network_parts(get_preset("df1-seg"), HEIGHT, WIDTH)]
    first = next(n for n in df1_seg_nodes if n.startswith("/stage3/stage3.0/"))
    last = [n for n in df1_seg_nodes if n.startswith("/stage4/stage4.0/")][-1]
    profile = {"{{ForeignNode[{}...{}]}}".format(first, last): 1.2}
    inside = ["stage3.0", "stage3.1", "stage3.2", "stage4.0"]
    order = OnnxSummary(df1_seg_onnx).node_names  # read without the onnx package, as on a device
    assert [n for n in order if n.startswith("/")] == df1_seg_nodes
    for node_order in (order, None):  # the graph's order, or network-part order without the file
        result = attribute_layers(profile, names, node_order)
        charged = sorted(name for name, ms in result.parts.items() if ms > 0)
        assert charged == inside, node_order is None
        assert result.parts["stage3.1"] == pytest.approx(1.2 / len(inside))
        assert result.attributed_ms == pytest.approx(1.2) and result.shared_ms == pytest.approx(1.2)
