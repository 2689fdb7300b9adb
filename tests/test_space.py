"""dfseg.space: the search space definition shared with dfseg-bench --table."""

import itertools

import pytest

from dfseg.arch import PRESETS
from dfseg.errors import UserError
from dfseg.parts import network_parts
from dfseg.search.landscapes import tiny_space
from dfseg.sizes import Size
from dfseg.space import DEFAULT_WIDTHS, DecoderSpace, SearchSpace


def members(space):
    """Every member of a (small) space, by brute force over counts and width multisets."""
    ranges = [range(lo, hi + 1) for lo, hi in space.blocks_per_stage]
    for counts in itertools.product(*ranges):
        for widths in itertools.combinations_with_replacement(space.widths, sum(counts)):
            stages, start = [], 0
            for count in counts:
                stages.append(list(widths[start:start + count]))
                start += count
            yield space.make(stages)


def test_defaults_contain_released_backbones():
    space = SearchSpace()
    assert space.widths == DEFAULT_WIDTHS and space.input_size == Size(224, 224)
    assert space.contains(PRESETS["df1"]) and space.contains(PRESETS["df2"])
    assert not space.contains(PRESETS["df2a"])  # bottleneck stages: not a basic-block space
    assert not space.contains(PRESETS["df1-seg"])  # has a decoder, the space has a classifier


def test_size_matches_brute_force_and_keys_round_trip():
    space = tiny_space()
    archs = list(members(space))
    assert space.size_without_window() == len(archs) == len({a.dumps() for a in archs})
    for arch in archs:
        assert space.contains(arch)
        assert space.from_order_key(space.order_key(arch)) == arch
    assert len({space.order_key(a) for a in archs}) == len(archs)


@pytest.mark.parametrize("decoder", [None, (19, 32, 128)])
def test_all_parts_covers_every_member(decoder):
    space = tiny_space(decoder=decoder, input_size=Size(640, 360) if decoder else Size(224, 224))
    keys = {part.key for part in space.all_parts()}
    needed = set()
    for arch in members(space):
        needed |= {p.key for p in network_parts(arch, space.input_size.height, space.input_size.width)}
    assert needed == keys


def test_decoder_space_parts_and_order_key():
    space = DecoderSpace(PRESETS["df1"], input_size=Size(320, 180))
    assert len(space.settings()) == 6 ** 3 and space.choices[0] == 19
    keys = {p.key for p in space.all_parts()}
    for setting in space.settings():
        arch = space.make(setting)
        assert space.contains(arch)
        assert {p.key for p in network_parts(arch, 180, 320)} <= keys
    assert space.order_key(PRESETS["df1-seg"]) == (1, 2, 4)
    assert not space.contains(PRESETS["df2-seg1"])


def test_bottleneck_space():
    space = SearchSpace(block=["basic", "bottleneck", "bottleneck"], widths=(64, 128, 256, 512, 1024))
    arch = space.make([[64, 64, 128], [512] * 3, [1024] * 2])
    assert space.contains(arch) and arch.stages[1][0].inner == 128
    assert {p.kind for p in space.all_parts()} >= {"bottleneck", "basic", "stem", "classifier"}


@pytest.mark.parametrize("kwargs", [
    dict(widths=(32, 64)),  # narrower than the stem
    dict(blocks_per_stage=((0, 2), (1, 2), (1, 2))),
    dict(blocks_per_stage=((3, 2), (1, 2), (1, 2))),
    dict(blocks_per_stage=((1, 2), (1, 2))),
    dict(block="dense"),
    dict(t_min=5.0, t_max=1.0),
    dict(decoder=(19, 33, 128)),
])
def test_bad_settings_are_user_errors(kwargs):
    with pytest.raises(UserError):
        SearchSpace(**kwargs)
