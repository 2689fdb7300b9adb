"""The search-space options: one definition read by dfseg-search and dfseg-bench, and the command the
search prints for missing parts, which must measure exactly the space's parts."""

import pytest

from dfseg.arch import PRESETS
from dfseg.bench.suite import CALIBRATION_COUNT
from dfseg.cli.bench import build_parser as bench_parser
from dfseg.cli.bench import table_suite_from_args as table_suite
from dfseg.cli.search import build_parser as search_parser
from dfseg.cli.space_options import space_from_args
from dfseg.errors import UserError
from dfseg.latency.table import measure_command
from dfseg.sizes import Size
from dfseg.space import DEFAULT_WIDTHS, DecoderSpace, SearchSpace

SPACES = {
    "basic": SearchSpace(widths=(64, 128), blocks_per_stage=((1, 2), (1, 2), (1, 1))),
    "bottleneck": SearchSpace(widths=(64, 256), blocks_per_stage=((1, 1), (1, 2), (1, 1)), block="bottleneck"),
    "df2a-like": SearchSpace(widths=(64, 128, 512), blocks_per_stage=((1, 2), (1, 2), (1, 1)),
                             block=("basic", "bottleneck", "bottleneck"), stem=(16, 64)),
    "segmentation": SearchSpace(widths=(64,), blocks_per_stage=((1, 1), (1, 2), (1, 1)), decoder=(11, 32, 64),
                                input_size=Size(128, 96), classes=11),
}


@pytest.mark.parametrize("name", sorted(SPACES))
def test_options_rebuild_the_space_in_both_commands(name):
    space = SPACES[name]
    argv = space.to_argv()
    searched = space_from_args(search_parser().parse_args(["--table", "t.json"] + argv), DEFAULT_WIDTHS)
    benched = space_from_args(bench_parser().parse_args(["--table", "t.json"] + argv), DEFAULT_WIDTHS)
    assert searched.to_json() == benched.to_json() == space.to_json()


@pytest.mark.parametrize("name", sorted(SPACES))
def test_the_printed_bench_command_measures_exactly_the_space(name):
    space = SPACES[name]
    command = measure_command("t.json", space=space)
    assert command[:3] == ["dfseg-bench", "--table", "t.json"]
    parts, sizes, calibration = table_suite(bench_parser().parse_args(command[1:]))
    assert sorted(p.key for p in parts) == sorted(p.key for p in space.all_parts())
    assert sizes == [str(space.input_size)]
    assert len(calibration) == min(CALIBRATION_COUNT, space.size_without_window())  # --space-only: no models to vary
    assert all(space.contains(spec.arch) for spec in calibration)


def test_the_decoder_space_command_measures_its_settings():
    space = DecoderSpace(PRESETS["df1"], classes=19, choices=(19, 32, 128), input_size=Size(160, 96))
    command = measure_command("t.json", space=space)
    parts, _, _ = table_suite(bench_parser().parse_args(command[1:]))
    assert {p.key for p in space.all_parts()} <= {p.key for p in parts}
    # nothing beyond the decoder settings' networks (the backbone's parts are in each of them)
    assert not {p.key for p in parts} - {p.key for p in space.all_parts()}


def test_space_defaults_differ_by_command_but_not_the_options():
    table_default = space_from_args(bench_parser().parse_args(["--table", "t.json"]), (64, 128, 256, 512))
    assert table_default.widths == (64, 128, 256, 512)
    args = search_parser().parse_args(["--table", "t.json", "--t-max", "4.5", "--blocks", "1-2,2,1-3"])
    space = space_from_args(args, DEFAULT_WIDTHS)
    assert space.widths == DEFAULT_WIDTHS and space.t_max == 4.5 and space.blocks_per_stage == ((1, 2), (2, 2), (1, 3))


@pytest.mark.parametrize("argv, message", [
    (["--blocks", "1-x,1,1"], "--blocks"),
    (["--widths", "64,abc"], "--widths"),
    (["--block", "basic,wide,basic"], "block"),
    (["--stem", "32"], "stem"),
])
def test_bad_space_options_are_user_errors(argv, message):
    with pytest.raises(UserError, match=message):
        space_from_args(bench_parser().parse_args(["--table", "t.json"] + argv), DEFAULT_WIDTHS)
