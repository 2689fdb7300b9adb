"""The measurement protocol with a fake clock: deterministic callables advance simulated time."""

import numpy as np
import pytest

from dfseg.bench.protocol import (
    COMPUTE,
    E2E,
    Protocol,
    Subject,
    measure,
    noise_warnings,
    percentile,
    robust_spread,
    summarize,
)
from dfseg.errors import UserError


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_subject(clock, name, durations_ms, log=None):
    """A subject whose n-th run takes durations_ms(n) simulated milliseconds."""
    calls = {"n": 0}

    def run():
        clock.now += durations_ms(calls["n"]) / 1000.0
        calls["n"] += 1
        if log is not None:
            log.append(name)

    return Subject(name, {E2E: run}), calls


FAST = Protocol(warmup_s=0.0, round_warmup_s=0.0, rounds=5, runs_per_round=4, max_round_spread=0.05,
                remeasure_rounds=2, max_remeasures=2)


def test_percentile_matches_numpy():
    values = sorted([3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.0])
    for q in (0, 10, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_summarize_uses_median_of_round_medians_and_pooled_spread():
    stats = summarize([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [4.0, 4.0, 4.0]])
    assert stats.median_ms == 1.0  # the disturbed round does not move the median
    assert stats.count == 9 and stats.rounds == 3
    assert stats.p90_ms == pytest.approx(np.percentile([1.0] * 6 + [4.0] * 3, 90))
    assert stats.mean_ms == pytest.approx(2.0)
    assert stats.cv > 0.5
    assert stats.round_medians_ms == [1.0, 1.0, 4.0]


def test_robust_spread_ignores_a_single_outlier_round():
    assert robust_spread([1.0, 1.0, 1.0, 1.0, 4.0]) == 0.0
    assert robust_spread([1.0, 2.0]) > 0.3
    assert robust_spread([2.0]) == 0.0


def test_rounds_rotate_subjects_in_blocks_of_runs():
    clock = FakeClock()
    log = []
    subjects = [make_subject(clock, name, lambda n: 1.0, log)[0] for name in ("a", "b", "c")]
    protocol = FAST._replace(rounds=3, runs_per_round=2)
    results = measure(subjects, protocol, clock=clock)
    # warm-up: at least two runs each; then each round: 1 re-warm run + 2 timed runs per subject
    timed = log[6:]
    blocks = [timed[i:i + 3] for i in range(0, len(timed), 3)]
    starts = [block[0] for block in blocks[::3]]
    assert starts == ["a", "b", "c"]  # each round starts with a different subject
    assert all(len(set(block)) == 1 for block in blocks)  # never alternates single runs
    assert {name: m.modes[E2E].count for name, m in results.items()} == {"a": 6, "b": 6, "c": 6}


def test_time_based_warmup():
    clock = FakeClock()
    subject, calls = make_subject(clock, "a", lambda n: 10.0)
    results = measure([subject], FAST._replace(warmup_s=0.5, rounds=1, runs_per_round=1), clock=clock)
    assert results["a"].warmup_runs >= 50  # 0.5 s of 10 ms runs, plus the round's re-warm run
    assert calls["n"] == results["a"].warmup_runs + 1


def test_disturbed_round_does_not_move_the_median():
    clock = FakeClock()
    # runs 0-1 warm-up; the first round (runs 2-6) is 4x slower, as when another process holds the core
    subject, _ = make_subject(clock, "a", lambda n: 8.0 if 2 <= n < 7 else 2.0)
    result = measure([subject], FAST, clock=clock)["a"]
    assert result.modes[E2E].median_ms == pytest.approx(2.0)
    assert result.modes[E2E].round_medians_ms[0] == pytest.approx(8.0)


def test_wide_spread_is_remeasured_then_flagged():
    clock = FakeClock()
    steady, steady_calls = make_subject(clock, "steady", lambda n: 2.0)
    # a steady drift (each round of 5 calls 10% slower than the one before): the spread never settles
    noisy, noisy_calls = make_subject(clock, "noisy", lambda n: 2.0 * (1 + 0.1 * (max(n - 2, 0) // 5)))
    results = measure([steady, noisy], FAST, clock=clock)
    assert results["steady"].remeasured == 0 and not results["steady"].noisy
    assert results["noisy"].remeasured == FAST.max_remeasures
    assert results["noisy"].modes[E2E].rounds == FAST.rounds + FAST.max_remeasures * FAST.remeasure_rounds
    assert results["noisy"].noisy
    assert any("noisy" in w and "spread" in w for w in noise_warnings(results, FAST))


def test_backend_reported_compute_time_is_used():
    clock = FakeClock()

    def e2e():
        clock.now += 0.005

    def compute():
        clock.now += 0.005
        return 3.0  # e.g. CUDA events: copies excluded

    results = measure([Subject("m", {E2E: e2e, COMPUTE: compute})], FAST, clock=clock)
    assert results["m"].modes[E2E].median_ms == pytest.approx(5.0)
    assert results["m"].modes[COMPUTE].median_ms == pytest.approx(3.0)


def test_bad_protocol_is_a_user_error():
    with pytest.raises(UserError, match="rounds"):
        Protocol(rounds=0).validate()
    with pytest.raises(ValueError, match="unique"):
        clock = FakeClock()
        a = make_subject(clock, "a", lambda n: 1.0)[0]
        measure([a, a], FAST, clock=clock)


class DriftingMachine:
    """A fake clock whose machine slows down steadily: every run costs its work times a speed factor that
    grows with simulated time (as a shared VM's core drifts over minutes)."""

    def __init__(self, slowdown_per_s: float) -> None:
        self.now = 0.0
        self.slowdown_per_s = slowdown_per_s

    def __call__(self) -> float:
        return self.now

    def subject(self, name: str, work_ms: float) -> Subject:
        def run():
            self.now += work_ms * (1.0 + self.slowdown_per_s * self.now) / 1000.0
        return Subject(name, {E2E: run})


def test_a_reference_cancels_drift_that_the_raw_times_show():
    machine = DriftingMachine(slowdown_per_s=4.0)  # 4x slower per simulated second added
    subjects = [machine.subject("a", 2.0), machine.subject("b", 6.0)]
    results = measure(subjects, FAST._replace(max_remeasures=0), clock=machine,
                      reference=machine.subject("ref", 1.0))
    a, b = results["a"], results["b"]
    # the raw round medians grow with the drift ...
    assert a.modes[E2E].round_medians_ms[-1] > 1.5 * a.modes[E2E].round_medians_ms[0]
    assert a.modes[E2E].round_spread > 0.1
    # ... the times relative to the reference stay the work ratio (to within the drift inside one block)
    assert a.preferred_relative(E2E).median_ms == pytest.approx(2.0, rel=0.03)
    assert b.preferred_relative(E2E).median_ms == pytest.approx(6.0, rel=0.03)
    assert a.preferred_relative(E2E).round_spread < 0.02
    assert len(a.reference_ms) == FAST.rounds
    assert a.reference_ms[-1] > a.reference_ms[0]


def test_reference_blocks_flank_every_subject():
    clock = FakeClock()
    log = []
    subjects = [make_subject(clock, name, lambda n: 1.0, log)[0] for name in ("a", "b")]
    reference = make_subject(clock, "ref", lambda n: 1.0, log)[0]
    measure(subjects, FAST._replace(rounds=1, runs_per_round=1, max_remeasures=0), clock=clock, reference=reference)
    # after the warm-ups: ref block (1 untimed + 1 timed), then each subject followed by a ref block
    assert log[-9:] == ["ref", "ref", "a", "a", "ref", "ref", "b", "b", "ref", "ref"][-9:]


def test_without_a_reference_there_are_no_relative_times():
    clock = FakeClock()
    result = measure([make_subject(clock, "a", lambda n: 1.0)[0]], FAST, clock=clock)["a"]
    assert result.relative is None and result.reference_ms is None
    with pytest.raises(ValueError, match="without a reference"):
        result.preferred_relative()
