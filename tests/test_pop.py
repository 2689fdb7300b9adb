"""Algorithm 1: enumeration of S^, pruning against a from-scratch reference, the front, the study."""

import numpy as np
import pytest
from test_space import members

from dfseg.arch import PRESETS
from dfseg.errors import UserError
from dfseg.latency.table import MissingEntriesError
from dfseg.search.candidates import enumerate_decoders, enumerate_space
from dfseg.search.landscapes import accuracy_landscape, synthetic_table, tiny_space
from dfseg.search.pop import PartialOrderPruning, violations
from dfseg.search.study import EXHAUSTED, FRONT_STABLE, SettingError, Study
from dfseg.sizes import Size
from dfseg.space import DecoderSpace


@pytest.fixture(scope="module")
def small():
    space = tiny_space(t_min=0.9, t_max=2.6)
    table = synthetic_table(space.all_parts())
    return space, table, enumerate_space(space, table)


def test_enumeration_is_exactly_the_latency_window(small):
    space, table, candidates = small
    expected = {}
    for arch in members(space):
        latency = table.estimate(arch, space.input_size)
        if space.t_min <= latency <= space.t_max:
            expected[arch.dumps()] = latency
    assert 0 < len(candidates) == len(expected) < space.size_without_window()
    assert np.all(np.diff(candidates.latency) >= 0)
    for index in range(len(candidates)):
        arch = candidates.arch(index)
        assert candidates.latency[index] == pytest.approx(expected[arch.dumps()], rel=1e-12)
        assert candidates.key(index) == space.order_key(arch)
        assert candidates.index_of(arch) == index
    assert candidates.index_of(PRESETS["df2"]) is None


def test_missing_table_entries_name_the_bench_command(small):
    space, table, _ = small
    partial = synthetic_table([p for p in space.all_parts() if "256" not in p.key], path="t.json")
    with pytest.raises(MissingEntriesError) as info:
        enumerate_space(space, partial)
    assert "dfseg-bench --table t.json --space-only --widths 64,128,256 --blocks" in str(info.value)
    assert isinstance(info.value, UserError)


def reference_pruned(codes, latency, trained, accuracy, eps):
    """Algorithm 1 recomputed from scratch with scalar loops (the paper's text, nothing incremental)."""
    pruned = set()
    for w, acc_w in zip(trained, accuracy):
        better = [latency[y] for y, acc_y in zip(trained, accuracy) if acc_y >= acc_w + eps]
        if not better:
            continue
        y_lat = min(better)
        for m in range(len(latency)):
            if all(codes[m] <= codes[w]) and latency[m] >= y_lat:
                pruned.add(m)
    return pruned


def reference_front(latency, trained, accuracy):
    return sorted(x for x, ax in zip(trained, accuracy)
                  if all(latency[w] >= latency[x] or aw <= ax for w, aw in zip(trained, accuracy)))


@pytest.mark.parametrize("eps", [0.0, 0.5])
@pytest.mark.parametrize("seed", range(4))
def test_incremental_pruning_equals_reference(small, seed, eps):
    _, _, candidates = small
    rng = np.random.default_rng(seed)
    # Rounded accuracies and a quantised latency produce ties in both on purpose.
    latency = np.round(candidates.latency, 1)
    pop = PartialOrderPruning(candidates.codes, latency, eps=eps)
    order = rng.permutation(len(candidates))[:25]
    accuracy = np.round(rng.uniform(50, 60, size=order.size))
    for step, (index, acc) in enumerate(zip(order, accuracy)):
        pop.add(index, acc)
        if step % 6 == 5 or step == order.size - 1:
            expected = reference_pruned(candidates.codes, latency, order[:step + 1], accuracy[:step + 1], eps)
            assert set(np.flatnonzero(pop.pruned)) == expected
            ref_front = reference_front(latency, order[:step + 1], accuracy[:step + 1])
            assert sorted(pop.front()) == ref_front
    with pytest.raises(ValueError):
        pop.add(order[0], 1.0)


def pareto_front(latency, accuracy):
    """Strictly non-dominated candidates: what pruning must never remove when the assumption holds."""
    return [x for x in range(len(latency))
            if not np.any((latency <= latency[x]) & (accuracy >= accuracy[x])
                          & ((latency < latency[x]) | (accuracy > accuracy[x])))]


@pytest.mark.parametrize("select", ["random", "guided"])
def test_pop_keeps_the_true_front_on_a_monotone_landscape(small, select):
    _, _, candidates = small
    accuracy = accuracy_landscape(candidates.codes, seed=3)
    study = Study(candidates, seed=1, patience=10 ** 6, select=select)
    while (trial := study.ask()) is not None:
        study.tell(trial.number, accuracy[trial.index])
    assert study.stop_reason() == EXHAUSTED and study.finished
    summary = study.summary()
    assert summary["trained"] + summary["pruned"] == len(candidates)
    assert summary["trained"] < len(candidates) / 2  # pruning saved at least half the trainings
    true_front = pareto_front(candidates.latency, accuracy)
    assert set(true_front) <= set(study.pop.front())
    assert not violations(candidates.codes, candidates.latency, study.pop.d_index, study.pop.d_accuracy)


def test_study_in_flight_failures_determinism_and_patience(small):
    _, _, candidates = small
    accuracy = accuracy_landscape(candidates.codes, seed=5)

    def run(seed):
        study = Study(candidates, seed=seed, patience=4)
        batch = [study.ask() for _ in range(3)]
        assert len({t.index for t in batch}) == 3
        study.tell_failed(batch[1].number, "boom")
        for trial in (batch[2], batch[0]):  # out of order
            study.tell(trial.number, accuracy[trial.index])
        while (trial := study.ask()) is not None:
            study.tell(trial.number, accuracy[trial.index])
        return study

    first, again, other = run(7), run(7), run(8)
    assert first.state() == again.state()
    assert first.state()["trained"] != other.state()["trained"]
    assert first.stop_reason() in (FRONT_STABLE, EXHAUSTED)
    assert first.failed.sum() == 1 and first.trials[0]["status"] == "failed"
    assert not first.available[np.flatnonzero(first.failed)].any()
    with pytest.raises(ValueError):
        first.tell(10 ** 6, 1.0)
    budget = Study(candidates, seed=0, max_trials=5)
    while (trial := budget.ask()) is not None:
        budget.tell(trial.number, accuracy[trial.index])
    assert budget.pop.n_trained == 5


def test_guided_selection_takes_the_largest_lower_bound_gain(small):
    _, _, candidates = small
    accuracy = accuracy_landscape(candidates.codes, seed=6)
    codes, latency = candidates.codes.astype(int), candidates.latency
    study = Study(candidates, seed=2, patience=10 ** 6, select="guided", explore=0.0)
    exploited = 0
    for _ in range(25):
        trial = study.ask()
        trained = np.asarray(study.pop.d_index, dtype=int)
        if trained.size:
            # From scratch: lower(m) = best trained precedent, front(m) = best trained model no slower.
            lower = np.array([max((accuracy[p] for p in trained if np.all(codes[p] <= codes[m])), default=-np.inf)
                              for m in range(len(candidates))])
            front = np.array([max((accuracy[p] for p in trained if latency[p] <= latency[m]), default=-np.inf)
                              for m in range(len(candidates))])
            with np.errstate(invalid="ignore"):
                gain = np.where(np.isfinite(lower), lower - front, -np.inf)
            available = study.available.copy()
            available[trial.index] = True  # it was available when asked
            best = gain[available].max()
            if best > -np.inf:
                assert gain[trial.index] == best
                exploited += 1
        study.tell(trial.number, accuracy[trial.index])
    assert exploited >= 20
    with pytest.raises(SettingError, match="select 'greedy': choose one of"):
        Study(candidates, select="greedy")
    with pytest.raises(SettingError, match="explore 1.5: must be between 0 and 1"):
        Study(candidates, select="guided", explore=1.5)


def test_decoder_search_space_and_pop():
    space = DecoderSpace(PRESETS["df1"], input_size=Size(320, 180))
    table = synthetic_table(space.all_parts())
    candidates = enumerate_decoders(space, table)
    assert len(candidates) == 216
    arch = candidates.arch(100)
    assert candidates.latency[100] == pytest.approx(table.estimate(arch, space.input_size))
    windowed = enumerate_decoders(DecoderSpace(PRESETS["df1"], input_size=Size(320, 180),
                                               t_max=float(np.median(candidates.latency))), table)
    assert 0 < len(windowed) < 216
    accuracy = accuracy_landscape(candidates.codes, seed=0)
    study = Study(candidates, seed=0, patience=10 ** 6)
    while (trial := study.ask()) is not None:
        assert trial.arch.decoder is not None
        study.tell(trial.number, accuracy[trial.index])
    assert study.pop.n_trained < 216
    front = study.front()
    assert front and all(row["arch"].backbone() == PRESETS["df1"] for row in front)
