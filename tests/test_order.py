"""The partial order "shallower and narrower" (dfseg.search.order) and its laws."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dfseg.arch import PRESETS
from dfseg.search.landscapes import synthetic_table, tiny_space
from dfseg.search.order import comparable, precedent_mask, precedes, successor_mask
from dfseg.sizes import Size
from dfseg.space import DecoderSpace, SearchSpace

SPACE = SearchSpace(widths=(64, 128, 256, 512), blocks_per_stage=((1, 3), (1, 4), (1, 3)))
TABLE = synthetic_table(SPACE.all_parts())


@st.composite
def archs(draw, space=SPACE):
    counts = [draw(st.integers(lo, hi)) for lo, hi in space.blocks_per_stage]
    widths = sorted(draw(st.lists(st.sampled_from(space.widths), min_size=sum(counts), max_size=sum(counts))))
    stages, start = [], 0
    for count in counts:
        stages.append(widths[start:start + count])
        start += count
    return space.make(stages)


@st.composite
def shrunk(draw, arch, space=SPACE):
    """A member of the space that precedes ``arch`` by construction: drop blocks, narrow others."""
    stages = []
    for s, stage in enumerate(space.stage_widths(arch)):
        keep = draw(st.integers(space.blocks_per_stage[s][0], len(stage)))
        stages.append([w for w in stage[len(stage) - keep:]])
    flat = [w for stage in stages for w in stage]
    narrowed = [draw(st.sampled_from([v for v in space.widths if v <= w])) for w in flat]
    # Keep widths non-decreasing: a running maximum never exceeds the (non-decreasing) originals.
    running, out = 0, []
    for w in narrowed:
        running = max(running, w)
        out.append(running)
    result, start = [], 0
    for stage in stages:
        result.append(out[start:start + len(stage)])
        start += len(stage)
    return space.make(result)


def maps_onto(x, y, space=SPACE):
    """The definition: per stage an order-preserving injection onto blocks at least as wide."""
    for xs, ys in zip(space.stage_widths(x), space.stage_widths(y)):
        j = 0
        for width in xs:
            while j < len(ys) and ys[j] < width:
                j += 1
            if j == len(ys):
                return False
            j += 1
    return True


def key(arch):
    return SPACE.order_key(arch)


@settings(max_examples=150, deadline=None)
@given(archs(), archs())
def test_reflexive_antisymmetric_and_matches_definition(x, y):
    assert precedes(key(x), key(x))
    assert precedes(key(x), key(y)) == maps_onto(x, y)
    if precedes(key(x), key(y)) and precedes(key(y), key(x)):
        assert x == y


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_transitive_and_latency_monotone(data):
    z = data.draw(archs())
    y = data.draw(shrunk(z))
    x = data.draw(shrunk(y))
    assert maps_onto(y, z) and precedes(key(y), key(z))
    assert precedes(key(x), key(y)) and precedes(key(x), key(z))
    size = SPACE.input_size
    assert TABLE.estimate(x, size) <= TABLE.estimate(y, size) <= TABLE.estimate(z, size)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_vectorised_mask_matches_scalar_order(data):
    pool = [data.draw(archs()) for _ in range(12)]
    codes = np.asfortranarray(np.asarray([key(a) for a in pool], dtype=np.uint8))
    w = data.draw(st.sampled_from(pool))
    start = data.draw(st.integers(0, len(pool)))
    mask = precedent_mask(codes, key(w), start=start)
    assert mask.tolist() == [precedes(key(a), key(w)) for a in pool[start:]]
    assert successor_mask(codes, key(w)).tolist() == [precedes(key(w), key(a)) for a in pool]


def test_released_models_are_ordered_as_expected():
    space = SearchSpace()
    df1, df2 = PRESETS["df1"], PRESETS["df2"]
    # DF1's stage 5 (256x3 + 512x1) is not matched by DF2's (256x4 + 512x2)? It is: right-aligned.
    assert precedes(space.order_key(df1), space.order_key(df2))
    lite = space.make([[64, 64], [128, 128], [256, 512]])
    assert precedes(space.order_key(lite), space.order_key(df1))
    wide_shallow = space.make([[128], [256], [512]])
    assert not comparable(space.order_key(wide_shallow), space.order_key(df1))


def test_decoder_order_is_elementwise_and_latency_monotone():
    space = DecoderSpace(PRESETS["df1"], input_size=Size(320, 180))
    table = synthetic_table(space.all_parts())
    settings_list = space.settings()
    rng = np.random.default_rng(0)
    for _ in range(200):
        a, b = (settings_list[i] for i in rng.integers(len(settings_list), size=2))
        ka, kb = space.order_key(space.make(a)), space.order_key(space.make(b))
        assert precedes(ka, kb) == all(x <= y for x, y in zip(a, b))
        if precedes(ka, kb):
            assert table.estimate(space.make(a), space.input_size) <= table.estimate(space.make(b), space.input_size)


def test_tiny_space_helper_is_a_real_space():
    assert tiny_space().size_without_window() > 100
