"""Architecture encoding: presets, canonical JSON and short-form round trips, every validation error."""

import json

import pytest

from dfseg.arch import (
    BACKBONE_PRESETS,
    BASIC,
    BOTTLENECK,
    PRESETS,
    SEGMENTATION_PRESETS,
    Arch,
    ArchError,
    Block,
    get_preset,
    preset_name,
)
from dfseg.errors import UserError


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_round_trips_through_json_short_form_and_parse(name, tmp_path):
    arch = PRESETS[name]
    assert Arch.from_json(arch.to_json()) == arch
    assert Arch.from_json(arch.dumps()) == arch
    assert Arch.from_short(arch.short()) == arch
    assert Arch.parse(name) == arch
    assert Arch.parse(arch.short()) == arch
    assert Arch.parse(arch.dumps()) == arch
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(arch.to_json()))
    assert Arch.parse(str(path)) == arch
    assert preset_name(arch) == name


def test_canonical_json_matches_the_documented_form():
    assert PRESETS["df1"].to_json() == {
        "stem": [32, 64],
        "stages": [[64, 64, 64], [128, 128, 128], [256, 256, 256, 512]],
        "block": "basic",
    }
    seg = PRESETS["df1-seg"].to_json()
    assert seg["decoder"] == [19, 32, 128] and seg["classes"] == 19
    assert PRESETS["df1-seg-d8"].to_json()["output_stride"] == 8
    df2a = PRESETS["df2a"].to_json()
    assert df2a["block"] == [BASIC, BOTTLENECK, BOTTLENECK]
    assert df2a["stages"][1][0] == [128, 512] and df2a["stages"][2][-1] == [512, 1024]


def test_presets_have_the_release_depths_and_short_forms():
    assert [PRESETS[n].depth for n in ("df1", "df2", "df2a")] == [23, 43, 60]
    assert PRESETS["df1"].short() == "64x3_128x3_256x3+512x1"
    assert PRESETS["df2a"].short() == "64x2+128x1_128b512x10+256b1024x1_256b1024x4+512b1024x2"
    assert PRESETS["df2-seg2"].short() == "64x2+128x1_128x10+256x1_256x4+512x2-wc19.256.512"
    assert set(BACKBONE_PRESETS) == {"df1", "df2", "df2a"}
    assert set(SEGMENTATION_PRESETS) == {"df1-seg", "df2-seg1", "df2-seg2", "dflite-seg", "df1-seg-d8"}


def test_bare_width_in_bottleneck_stage_uses_expansion_four():
    arch = Arch.create([[64], [512], [1024]], block=BOTTLENECK)
    assert arch.stages[1][0] == Block(BOTTLENECK, 512, 128)


def test_non_default_stem_and_classes_survive_the_short_form():
    arch = Arch.create([[64], [128], [256]], stem=[16, 32], classes=10)
    assert arch.short() == "s16.32-64x1_128x1_256x1-k10"
    assert Arch.from_short(arch.short()) == arch
    assert Arch.from_json(arch.dumps()) == arch


def test_backbone_and_with_decoder():
    seg = PRESETS["df1"].with_decoder([19, 32, 128])
    assert seg == PRESETS["df1-seg"]
    assert seg.backbone() == PRESETS["df1"]


def test_equal_architectures_give_equal_canonical_text():
    a = Arch.from_json({"stages": [[64], [128], [256]], "block": "basic", "stem": [32, 64]})
    b = Arch.from_json('{"block": "basic", "stages": [[64], [128], [256]]}')
    assert a == b and a.dumps() == b.dumps() and hash(a) == hash(b)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"stages": [[64], [128]]}, "expected a list of 3 stages"),
        ({"stages": [[64], [], [256]]}, "stages[1]: a stage needs at least one block"),
        ({"stages": [[128], [64], [256]]}, "stages[1][0]: width 64 is narrower than stages[0][0] (128)"),
        ({"stages": [[64], [128], [256, 128]]}, "stages[2][1]: width 128 is narrower"),
        ({"stages": [[64], [96], [256]]}, "stages[1][0]: width 96 is not allowed"),
        ({"stages": [[64], [128], [[64, 256]]], "block": "basic"}, "looks like a bottleneck"),
        ({"stages": [[64], [128], [[64, 256, 1]]], "block": "bottleneck"}, "a bottleneck block is [inner, out]"),
        ({"stages": [[64], [[48, 128]], [256]], "block": ["basic", "bottleneck", "basic"]}, "inner width 48 is not allowed"),
        ({"stages": [[64], [128], [256]], "block": "depthwise"}, "unknown kind 'depthwise'"),
        ({"stages": [[64], [128], [256]], "block": ["basic"]}, "block: expected"),
        ({"stages": [[64], [128], [256]], "stem": [32]}, "stem: expected 2 integers"),
        ({"stages": [[64], [128], [256]], "stem": [0, 64]}, "stem[0]: must be positive"),
        ({"stages": [[64], [128], [256]], "decoder": [19, 33, 128]}, "decoder[1]: width-controller width 33"),
        ({"stages": [[64], [128], [256]], "decoder": [19, 32]}, "decoder: expected 3 integers"),
        ({"stages": [[64], [128], [256]], "classes": -1}, "classes: must be positive"),
        ({"stages": [[64], [128], [256]], "output_stride": 8}, "only segmentation models"),
        ({"stages": [[64], [128], [256]], "decoder": [19, 32, 32], "output_stride": 4}, "output_stride: 4"),
        ({"stages": [[64], ["wide"], [256]]}, "stages[1][0]: expected an integer"),
        ({"stages": [[64], [True], [256]]}, "stages[1][0]: expected an integer"),
        # A quoted number is refused, not guessed at; the short form's digits (k19) are text by nature.
        ({"stages": [[64], [128], [256]], "decoder": [19, 32, 32], "classes": "19"},
         "classes: expected an integer, got the string '19'; write the number without quotes"),
        ({"stages": [[64], ["128"], [256]]}, "stages[1][0]: expected an integer, got the string '128'"),
        ({"stages": [[64], [128], [256]], "stem": ["32", 64]}, "stem[0]: expected an integer, got the string '32'"),
        ({"stages": [[64], 128, [256]]}, "stages[1]: expected a list of blocks"),
        ({"stages": [[64], [128], [256]], "width": 3}, "unknown field(s) width"),
        ({"block": "basic"}, 'needs "stages"'),
        ([64, 128], "must be an object"),
    ],
)
def test_every_validation_error_names_the_field(data, message):
    with pytest.raises(ArchError) as info:
        Arch.from_json(data)
    assert message in str(info.value)
    assert isinstance(info.value, UserError)


def test_allowed_widths_can_be_narrowed_by_the_caller():
    with pytest.raises(ArchError, match="width 1024 is not allowed"):
        Arch.create([[64], [128], [1024]], allowed_widths=(64, 128, 256, 512))


@pytest.mark.parametrize(
    "text, message",
    [
        ("64x3_128x3", "expected 3 stages"),
        ("64x3_128_256x1", "each run is WIDTHxCOUNT"),
        ("64x0_128x1_256x1", "each run is WIDTHxCOUNT"),
        ("64x1_128x1+32b128x1_256x1", "all blocks of a stage must be of one kind"),
        ("64x1_128x1_256x1-wc19.32", "expected 3 numbers"),
        ("wc19.32.128", "has no stages"),
        ("64x1_128x1_256x1-64x1_128x1_256x1", "unexpected part"),
    ],
)
def test_short_form_errors(text, message):
    with pytest.raises(ArchError, match=message.replace("(", r"\(").replace("+", r"\+")):
        Arch.from_short(text)


def test_parse_reports_presets_for_unknown_names():
    with pytest.raises(ArchError, match="neither a preset .*df1, df2"):
        Arch.parse("df3")
    with pytest.raises(ArchError, match="unknown model 'df3'"):
        get_preset("df3")


def test_load_names_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"stages": [[64], [128]')
    with pytest.raises(ArchError, match="bad.json: malformed JSON at line 1 column 24"):
        Arch.load(str(bad))
    with pytest.raises(ArchError, match="missing.json: cannot read"):
        Arch.load(str(tmp_path / "missing.json"))
