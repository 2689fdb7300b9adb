"""The shared shape walk and size parsing."""

import pytest

from dfseg.arch import PRESETS, Arch
from dfseg.parts import network_parts, ppm_kernels, stage_shapes
from dfseg.sizes import Size, SizeError, parse_size


@pytest.mark.parametrize(
    "text, expected",
    [("360p", (640, 360)), ("720p", (1280, 720)), ("1080P", (1920, 1080)), ("640x360", (640, 360)),
     ("2048x1024", (2048, 1024)), ("224", (224, 224))],
)
def test_parse_size_uses_video_order(text, expected):
    assert parse_size(text) == Size(*expected)


@pytest.mark.parametrize("text", ["", "360", "x360", "640x", "640*360", "16x16", "-640x360"])
def test_parse_size_rejects_bad_input_with_the_accepted_forms(text):
    if text == "360":
        assert parse_size(text) == Size(360, 360)
        return
    with pytest.raises(SizeError, match="WIDTHxHEIGHT in video order"):
        parse_size(text)


def test_size_label():
    assert parse_size("1280x720").label == "720p"
    assert str(parse_size("250x170")) == "250x170"


def test_stage_shapes_use_ceil_division():
    assert stage_shapes(360, 640) == [(180, 320), (90, 160), (45, 80), (23, 40), (12, 20)]
    assert stage_shapes(224, 224)[-1] == (7, 7)


def test_ppm_kernels_reproduce_the_release_at_cityscapes_size():
    assert ppm_kernels(32, 64) == [32, 16, 8, 4]
    assert ppm_kernels(12, 20) == [12, 6, 3, 2]


def test_backbone_parts_chain_shapes_and_names():
    parts = network_parts(PRESETS["df1"], 224, 224)
    names = [p.name for p in parts]
    assert names[:3] == ["stem.conv1", "stem.conv2", "stage3.0"] and names[-1] == "classifier"
    for before, after in zip(parts, parts[1:]):
        assert (before.c_out, before.h_out, before.w_out) == (after.c_in, after.h_in, after.w_in)
    assert parts[2].key == "basic:64x56x56->64x28x28/s2"
    assert parts[-1].key == "classifier:512x7x7->1000x1x1/s1"
    assert len(parts) == 2 + 10 + 1


def test_segmentation_parts_at_a_size_that_is_not_a_multiple_of_32():
    parts = {p.name: p for p in network_parts(PRESETS["df1-seg"], 360, 640)}
    assert parts["ppm"].key == "ppm:512x12x20->512x12x20/s1"
    assert parts["fuse4"].key == "fuse:128x12x20->32x23x40/s1"
    assert parts["fuse3"].key == "fuse:32x23x40->19x45x80/s1"
    assert parts["head"].key == "head:19x45x80->19x360x640/s1"
    d8 = {p.name: p for p in network_parts(PRESETS["df1-seg-d8"], 360, 640)}
    assert d8["head"].key == "head:19x45x80->19x45x80/s1"


def test_bottleneck_parts_carry_their_inner_width():
    parts = network_parts(PRESETS["df2a"], 224, 224)
    first = [p for p in parts if p.name == "stage4.0"][0]
    assert first.key == "bottleneck:128x28x28->512x14x14/s2/i128"
    assert len(parts) == 2 + 3 + 11 + 6 + 1
    arch = Arch.from_short("64x1_128x1_256x1")
    assert len({p.key for p in network_parts(arch, 64, 64)}) == len(network_parts(arch, 64, 64))


def test_df2a_projection_on_an_inner_width_change_is_part_of_the_key():
    parts = {p.name: p for p in network_parts(PRESETS["df2a"], 224, 224)}
    assert parts["stage5.4"].projection and parts["stage5.4"].key.endswith("/i512/p")
    assert not parts["stage5.5"].projection and parts["stage5.5"].key.endswith("/i512")
    assert parts["stage4.0"].projection and not parts["stage4.0"].key.endswith("/p")  # implied by stride


def _every_kind_of_part():
    """Parts of every kind: DF2A (stem, basic, bottleneck with the inner-width projection, classifier), DF1-Seg
    and its d8 variant (pyramid pooling, width controllers, fusions, both heads)."""
    found = {}
    for arch, size in ((PRESETS["df2a"], "224x224"), (PRESETS["df1-seg"], "200x104"),
                       (PRESETS["df1-seg-d8"], "200x104")):
        size = parse_size(size)
        for part in network_parts(arch, size.height, size.width):
            found.setdefault(part.key, part)
    return list(found.values())


def test_part_keys_parse_back_to_the_same_part():
    from dfseg.parts import parse_part_key

    for part in _every_kind_of_part():
        again = parse_part_key(part.key)
        assert again.key == part.key and again._replace(name=part.name) == part
    with pytest.raises(ValueError, match="not a latency-table part key"):
        parse_part_key("basic:64x28x28")


def test_weight_count_is_what_the_exported_part_holds(tmp_path):
    """The count (weights with batch norm folded, fixed upsampling kernels) against the initializers of the
    part's real ONNX export."""
    import onnx
    from onnx import numpy_helper

    from dfseg.export import export_part_onnx
    from dfseg.parts import part_weight_count

    kinds = set()
    for i, part in enumerate(_every_kind_of_part()):
        path = export_part_onnx(part, str(tmp_path / "part{}.onnx".format(i)))
        graph = onnx.load(path).graph
        numbers = [numpy_helper.to_array(t).size for t in graph.initializer]
        numbers += [numpy_helper.to_array(a.t).size for n in graph.node if n.op_type == "Constant"
                    for a in n.attribute if a.name == "value"]
        held = sum(n for n in numbers if n > 8)  # shape and index constants are not weights
        assert part_weight_count(part) == pytest.approx(held, rel=0.002), part.key
        kinds.add(part.kind)
    assert kinds == {"stem", "basic", "bottleneck", "classifier", "ppm", "wc", "fuse", "head"}
