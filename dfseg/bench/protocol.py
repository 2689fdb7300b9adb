"""The measurement protocol: how dfseg-bench turns noisy wall-clock runs into numbers worth comparing.

Our machines are shared: another process holding a core can move one model's median several-fold
between two consecutive rounds.  So things that are compared are measured in the same run, rotated in
*rounds* of several runs each (never alternating single runs: an idle ONNX Runtime session's cold
caches then dominate), the reported median is the median of the per-round medians (robust to a few
disturbed rounds), the noise seen is reported (spread of the round medians), and subjects whose rounds
disagree too much are re-measured with extra rounds.

Slow drift (a shared VM's core speeding up and slowing down over minutes, a Jetson warming up) moves
every workload together, so it is cancelled by a *reference*: a fixed network (``dfseg.bench.drift``)
timed before the first subject of a round and after every subject.  Each subject's round median is
divided by the mean of the two reference blocks around it, and the median of those ratios is the
subject's latency *relative to the reference* (``Measurement.relative``).  Two runs minutes or hours
apart then compare by their ratios, whatever the machine's speed was in each.

Everything here is pure Python with an injectable clock, so the protocol is tested with a fake clock.
Device side: Python 3.6, no torch.
"""

import math
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..clocks import thread_cpu_s
from ..errors import UserError

# A mode callable runs the subject once.  It may return a duration in ms measured by the backend
# itself (e.g. CUDA events for compute only); when it returns None the protocol's clock is used.
ModeFn = Callable[[], Optional[float]]
# A block callable times the subject itself, for backends whose timing loop runs in another process
# (trtexec): ``block(runs, warmup_s)`` warms up for ``warmup_s`` (each call starts cold), times about
# ``runs`` queries and returns each mode's per-query times in ms and how many warm-up queries it ran.
# The protocol calls it once per round instead of calling the mode callables once per run.
BlockFn = Callable[[int, float], Tuple[Dict[str, List[float]], int]]
E2E = "e2e"
COMPUTE = "compute"


CLOCKS: Dict[str, Callable[[], float]] = {"wall": time.perf_counter, "thread": thread_cpu_s}


class Protocol(NamedTuple):
    """Warm-up, rounds and re-measurement settings (recorded in every result's metadata)."""

    warmup_s: float = 1.0  # time-based warm-up of each subject before the first round
    round_warmup_s: float = 0.05  # re-warms caches when a round switches to this subject
    rounds: int = 5
    runs_per_round: int = 8
    max_round_spread: float = 0.05  # robust relative spread of round medians above which we re-measure
    remeasure_rounds: int = 3
    max_remeasures: int = 2
    high_cv: float = 0.10  # warn when the pooled coefficient of variation exceeds this

    @property
    def runs(self) -> int:
        return self.rounds * self.runs_per_round

    def validate(self) -> "Protocol":
        if self.rounds < 1 or self.runs_per_round < 1:
            raise UserError("protocol: rounds and runs per round must be at least 1 (got {} and {})".format(
                self.rounds, self.runs_per_round))
        if self.warmup_s < 0 or self.round_warmup_s < 0:
            raise UserError("protocol: warm-up times must not be negative")
        return self

    def to_json(self) -> Dict[str, Any]:
        out = dict(self._asdict())
        out["statistic"] = "median of per-round medians; p90/p99/mean/std/cv over all timed runs"
        return out


DEFAULT_PROTOCOL = Protocol()


class TimingStats(NamedTuple):
    """Summary of one subject in one mode, in milliseconds."""

    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    cv: float
    min_ms: float
    count: int
    rounds: int
    round_spread: float  # robust relative spread of the per-round medians (the noise we saw)
    round_medians_ms: List[float]

    def to_json(self) -> Dict[str, Any]:
        out = dict(self._asdict())
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round(value, 5)
        out["round_medians_ms"] = [round(v, 5) for v in self.round_medians_ms]
        return out


class Measurement(NamedTuple):
    name: str
    modes: Dict[str, TimingStats]
    remeasured: int  # how many times extra rounds were added
    noisy: bool  # still above the spread limit after re-measuring
    warmup_runs: int
    # With a reference: the same stats in units of the reference's time in the same rounds (2.0 = twice
    # as long as the reference), and the reference's own time around this subject, one value per round.
    relative: Optional[Dict[str, TimingStats]] = None
    reference_ms: Optional[List[float]] = None

    def preferred(self, mode: str = COMPUTE) -> "TimingStats":
        """The stats of ``mode`` where it was measured, else of ``e2e`` (which every subject has)."""
        return self.modes.get(mode) or self.modes[E2E]

    def preferred_relative(self, mode: str = COMPUTE) -> "TimingStats":
        """Like ``preferred``, in units of the reference (only for a measurement taken with one)."""
        if self.relative is None:
            raise ValueError("{} was measured without a reference".format(self.name))
        return self.relative.get(mode) or self.relative[E2E]


class Subject:
    """Something to time: a name and one callable per mode (``e2e`` always, ``compute`` where split), or
    the mode names (callables None) and a ``block`` that times whole rounds (``BlockFn``)."""

    def __init__(self, name: str, modes: Dict[str, Optional[ModeFn]], close: Optional[Callable[[], None]] = None,
                 block: Optional[BlockFn] = None) -> None:
        if E2E not in modes:
            raise ValueError("a subject needs an 'e2e' mode")
        if block is None and not all(callable(fn) for fn in modes.values()):
            raise ValueError("a subject without a block needs a callable per mode")
        self.name = name
        self.modes = modes
        self.block = block
        self._close = close
        self.artefact = None  # type: Optional[str]  the built file being timed, where there is one

    def wrapped(self, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> "Subject":
        """The same subject with ``wrap`` around every callable that runs it (modes and block)."""
        modes = {mode: (wrap(fn) if fn is not None else None) for mode, fn in self.modes.items()}
        subject = Subject(self.name, modes, close=self._close, block=wrap(self.block) if self.block else None)
        subject.artefact = self.artefact
        return subject

    def close(self) -> None:
        if self._close is not None:
            self._close()


# ---------------------------------------------------------------------- statistics
def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of already sorted values."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    position = (len(sorted_values) - 1) * q / 100.0
    low = int(math.floor(position))
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return percentile(sorted(values), 50.0)


def robust_spread(values: Sequence[float]) -> float:
    """Relative spread: 1.4826 * MAD / median (a std estimate that ignores a minority of outliers).

    With two values it is half their relative difference; with one it is 0.
    """
    if len(values) < 2:
        return 0.0
    center = median(values)
    if center <= 0:
        return 0.0
    mad = median([abs(v - center) for v in values])
    return 1.4826 * mad / center


def summarize(round_samples: Sequence[Sequence[float]]) -> TimingStats:
    """TimingStats from per-round samples (ms).  Empty rounds are ignored."""
    rounds = [list(r) for r in round_samples if len(r)]
    pooled = sorted(v for r in rounds for v in r)
    if not pooled:
        raise ValueError("no samples to summarize")
    round_medians = [median(r) for r in rounds]
    mean = sum(pooled) / len(pooled)
    variance = sum((v - mean) ** 2 for v in pooled) / (len(pooled) - 1) if len(pooled) > 1 else 0.0
    std = math.sqrt(variance)
    return TimingStats(
        median_ms=median(round_medians),
        p90_ms=percentile(pooled, 90.0),
        p99_ms=percentile(pooled, 99.0),
        mean_ms=mean,
        std_ms=std,
        cv=std / mean if mean > 0 else 0.0,
        min_ms=pooled[0],
        count=len(pooled),
        rounds=len(rounds),
        round_spread=robust_spread(round_medians),
        round_medians_ms=round_medians,
    )


# ---------------------------------------------------------------------- measuring
class _Recorder:
    def __init__(self, subject: Subject) -> None:
        self.subject = subject
        self.rounds: Dict[str, List[List[float]]] = {mode: [] for mode in subject.modes}
        self.reference_ms: List[float] = []  # per round: mean of the reference blocks before and after
        self.warmup_runs = 0
        self.remeasured = 0

    def relative_rounds(self, mode: str) -> List[List[float]]:
        return [[v / ref for v in values] for values, ref in zip(self.rounds[mode], self.reference_ms)]


def _timed(fn: ModeFn, clock: Callable[[], float]) -> float:
    start = clock()
    reported = fn()
    elapsed_ms = (clock() - start) * 1000.0
    return float(reported) if reported is not None else elapsed_ms


def _warm(fn: ModeFn, seconds: float, min_runs: int, clock: Callable[[], float]) -> int:
    runs = 0
    start = clock()
    while runs < min_runs or clock() - start < seconds:
        fn()
        runs += 1
    return runs


def _reference_block(reference: Subject, protocol: Protocol, clock: Callable[[], float]) -> float:
    """The reference's median time over one block of runs (one untimed run first re-warms its caches)."""
    if reference.block is not None:
        times, _ = reference.block(protocol.runs_per_round, protocol.warmup_s)
        return median(times.get(COMPUTE) or times[E2E])
    fn = reference.modes.get(COMPUTE) or reference.modes[E2E]
    fn()
    return median([_timed(fn, clock) for _ in range(protocol.runs_per_round)])


def _time_round(recorder: "_Recorder", protocol: Protocol, clock: Callable[[], float]) -> None:
    """One round of one subject: a short re-warm, then ``runs_per_round`` timed runs of every mode; a
    subject with a block times the round itself (cold each time, so with the full warm-up)."""
    subject = recorder.subject
    if subject.block is not None:
        times, warmups = subject.block(protocol.runs_per_round, protocol.warmup_s)
        recorder.warmup_runs += warmups
        for mode in subject.modes:
            recorder.rounds[mode].append(list(times[mode]))
        return
    recorder.warmup_runs += _warm(subject.modes[E2E], protocol.round_warmup_s, 1, clock)
    for mode, fn in subject.modes.items():
        recorder.rounds[mode].append([_timed(fn, clock) for _ in range(protocol.runs_per_round)])


def _run_round(recorders: Sequence[_Recorder], protocol: Protocol, offset: int, clock: Callable[[], float],
               on_round: Optional[Callable[[], None]], reference: Optional[Subject] = None) -> None:
    """One pass over all subjects, starting at ``offset`` so no subject always goes first; with a
    reference, a reference block runs before the first subject and after each one."""
    count = len(recorders)
    before = _reference_block(reference, protocol, clock) if reference is not None else None
    for i in range(count):
        recorder = recorders[(i + offset) % count]
        _time_round(recorder, protocol, clock)
        if reference is not None:
            after = _reference_block(reference, protocol, clock)
            recorder.reference_ms.append((before + after) / 2.0)
            before = after
    if on_round is not None:
        on_round()


def measure(subjects: Sequence[Subject], protocol: Protocol = DEFAULT_PROTOCOL,
            clock: Callable[[], float] = time.perf_counter,
            on_round: Optional[Callable[[], None]] = None,
            reference: Optional[Subject] = None) -> Dict[str, Measurement]:
    """Measure ``subjects`` together in rotating rounds; re-measure the ones whose rounds disagree.

    With ``reference``, every result also holds its times relative to the reference (see the module's
    text), and whether rounds disagree is judged on those, so slow drift alone triggers no re-measure.
    """
    protocol.validate()
    names = [s.name for s in subjects]
    if len(set(names)) != len(names):
        raise ValueError("subject names must be unique: {}".format(names))
    recorders = [_Recorder(s) for s in subjects]
    # Subjects with a block warm up inside every block.
    if reference is not None and reference.block is None:
        _warm(reference.modes.get(COMPUTE) or reference.modes[E2E], protocol.warmup_s, 2, clock)
    for recorder in recorders:
        if recorder.subject.block is None:
            recorder.warmup_runs += _warm(recorder.subject.modes[E2E], protocol.warmup_s, 2, clock)
    for r in range(protocol.rounds):
        _run_round(recorders, protocol, r, clock, on_round, reference)
    for attempt in range(protocol.max_remeasures):
        noisy = [rec for rec in recorders if _spread(rec) > protocol.max_round_spread]
        if not noisy:
            break
        for rec in noisy:
            rec.remeasured += 1
        for r in range(protocol.remeasure_rounds):
            _run_round(noisy, protocol, r + attempt, clock, on_round, reference)
    result = {}
    for rec in recorders:
        modes = {mode: summarize(rounds) for mode, rounds in rec.rounds.items()}
        relative = None
        if reference is not None:
            relative = {mode: summarize(rec.relative_rounds(mode)) for mode in rec.rounds}
        result[rec.subject.name] = Measurement(
            rec.subject.name, modes, rec.remeasured, _spread(rec) > protocol.max_round_spread, rec.warmup_runs,
            relative, list(rec.reference_ms) if reference is not None else None)
    return result


def _spread(recorder: _Recorder) -> float:
    rounds = recorder.relative_rounds(E2E) if recorder.reference_ms else recorder.rounds[E2E]
    return robust_spread([median(r) for r in rounds if r])


def noise_warnings(results: Dict[str, Measurement], protocol: Protocol, mode: str = E2E) -> List[str]:
    """Human-readable warnings for high CV and for subjects whose rounds still disagree."""
    warnings = []
    for name, measurement in results.items():
        stats = measurement.modes.get(mode)
        if stats is None:
            continue
        if measurement.noisy:
            warnings.append("{}: round medians still spread {:.1%} after {} re-measurement(s); the machine is busy, "
                            "numbers are less trustworthy".format(name, stats.round_spread, measurement.remeasured))
        elif stats.cv > protocol.high_cv:
            warnings.append("{}: coefficient of variation {:.1%} is high (limit {:.0%})".format(
                name, stats.cv, protocol.high_cv))
    return warnings
