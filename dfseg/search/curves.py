"""Curve early stopping: an optimistic bound on a running trial's final accuracy from its own learning
curve, calibrated on the curves of reference trials, and the rule that stops a trial that cannot
reach the front.

The bound.  After epoch k of E, fit the trial's accuracies a(1..k) with a saturating curve
a(t) = A - B exp(-t / tau) (B >= 0; tau from a fixed grid, A and B by least squares; the family of
Domhan et al.'s learning-curve extrapolation, one member) and read off

    p(k)     = the fit at epoch E                         (where the trial is heading)
    s(k)     = p(k) - fit at k + 1                        (the gain it still expects, plus one point)
               (inf, no bound, while the fitted tau > k / 2: a curve that has not visibly bent does
               not identify its asymptote; on the benchmark every true-front member that stops lost
               before this guard was such a slow, noisy learner stopped at the first allowed epoch)
    UB(x, k) = p_x(k) + s_x(k) * M + margin,   M = max over reference trials f of S_f,
    S_f      = max over min_epochs <= j < E with a finite s_f(j) of (Acc(f) - p_f(j)) / s_f(j).

M is a split-conformal calibration: how far, in units of the expected remaining gain, the
extrapolation ever fell short of a finished curve's final accuracy.  Using the largest score over
all epochs j makes it simultaneous: a new trial exchangeable with the n reference trials has its
whole bound path valid (UB(x, k) >= Acc(x) for every k) unless its own S beats all n, probability
<= 1 / (n + 1).  Scaling by s makes the score comparable between fast learners (nearly flat, a
tight bound) and slow ones (still climbing, a wide one): the maximum gain of the old rule
(a_x(k) + the largest gain any finished trial made after k) gave every trial the slowest learner's
gain.  Reference trials (every ``reference_every``-th, 4: trials 0, 4, 8...) always train to the end
and are the only calibration curves: the other finished trials are the ones the rule let finish,
selected for looking good early, so their residuals would make M too small.  No bound (never
stopped) while fewer than ``min_curves`` (``--min-curves``, 10) reference trials of E epochs have
finished, nor before ``min_epochs`` (``--min-epochs``, 5: with fewer points the three-parameter fit
follows the noise, measured on the benchmark).

The stop.  After epoch k < E, k > min_epochs, x stops when some finished y with Lat(y) <= Lat(x) has
Acc(y) >= UB(x, k) *and* Acc(y) >= UB(x, k - 1): even the bound cannot put x on the front B(D), at
two epochs in a row (one noisy epoch can bend a short fit down; the second look costs one epoch).  The search journals ``{"type": "stop", "trial",
"epoch", "bound", "prunes"}`` and ends the trial.

Pruning with the bound.  A trial stopped at k >= E / 2 prunes with UB where a finished trial prunes
with Acc (pop.py, ``add_bound``); one stopped earlier only leaves the search ("prunes": false).
The risks are not alike: a wrong stop loses one candidate, a wrong bound that prunes loses every
precedent between it and the front, and early bounds are extrapolations over most of the curve.
On the benchmark, pruning with every bound lost dozens of true-front members per ten searches
(one wrong bound of a large model prunes many), pruning with late bounds only lost none; stopped
trials save their epochs either way.

When it is safe, and when not.  1 / (n + 1) is per trial and on average, not per search: a search
that stops a hundred trials makes some wrong stops, and a wrong bound also prunes the stopped
trial's precedents.  benchmarks/bench_search_efficiency.py --curves counts the true-front members
lost both ways (README).  It is less safe (raise ``--stop-margin`` or ``--min-epochs``, or use
``--early-stop off``) when:
- reference trials are few (``min_curves`` is a floor, not a guarantee);
- the curves are not exchangeable: the running candidate learns unlike every reference trial, or
  trials differ in their schedule (other E, a restarted learning rate; the rule keys by E but cannot
  see inside a training command);
- a(k) is noisy (a small validation set): noise inflates M, which makes the bound wider, not wrong,
  but a short fit through a noisy dip still predicts too low;
- curves are not saturating (a late learning-rate drop that jumps): the calibration widens M for
  all, which is safe but saves little.  The benchmark's curves are of the fitted family (plus
  noise), which flatters the fit; its figures are the best case for this rule's tightness.
A wrong stop never changes a finished trial's result.
"""

import math
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

MODES = ("off", "curve")
# Time constants the fit may choose, in epochs: from almost a step to almost a straight line.
TAUS = np.geomspace(0.3, 100.0, 48)
SCALE_FLOOR = 1.0  # accuracy units added to the expected remaining gain in s(k)


class EarlyStopping(NamedTuple):
    mode: str = "off"
    min_epochs: int = 5
    margin: float = 0.0
    min_curves: int = 10
    reference_every: int = 4  # every this-many-th trial (by number) is never stopped: 0 = none

    def describe(self) -> str:
        if self.mode == "off":
            return "early stopping off: every trial trains to its last epoch"
        return ("curve early stopping: after epoch k > {} a trial stops when a faster finished model is at least "
                "as accurate as its bound at k and k - 1 (its fitted saturating curve at the last epoch, widened by "
                "the largest shortfall of >= {} reference curves, + margin {:g}); every {}th trial trains to the "
                "end as a reference".format(self.min_epochs, self.min_curves, self.margin, self.reference_every))


def check_early_stopping(settings: EarlyStopping) -> Optional[Tuple[str, Any, str]]:
    """(setting, value, problem) for a setting out of range, else None."""
    if settings.mode not in MODES:
        return "early_stop", settings.mode, "choose one of {}".format(", ".join(MODES))
    if settings.min_epochs < 3:
        return "min_epochs", settings.min_epochs, "must be at least 3 (the curve has three parameters)"
    if not math.isfinite(settings.margin) or settings.margin < 0:
        return "stop_margin", settings.margin, "must be a finite number >= 0"
    if settings.min_curves < 1:
        return "min_curves", settings.min_curves, "must be at least 1"
    if settings.reference_every < 1:
        return "reference_every", settings.reference_every, "must be >= 1 (reference trials calibrate the bound)"
    return None


def is_reference(settings: EarlyStopping, number: int) -> bool:
    """Reference trials train to the end whatever their curve and are the bound's only calibration:
    the curves of trials that were allowed to finish are biased towards those that looked good early."""
    return number % settings.reference_every == 0


def accuracy_by_epoch(records: List[Dict[str, Any]]) -> Dict[Tuple[int, int], float]:
    """(epoch, epochs) -> accuracy of a trial's progress records that have one."""
    out = {}
    for record in records:
        accuracy, epochs = record.get("accuracy"), record.get("epochs")
        if accuracy is not None and isinstance(epochs, int) and not isinstance(epochs, bool):
            out[(int(record["epoch"]), epochs)] = float(accuracy)
    return out


def extrapolate(curve: Dict[Tuple[int, int], float], epoch: int, epochs: int) -> Tuple[float, float]:
    """(p, s): the saturating fit through the curve's epochs <= ``epoch`` (of ``epochs``), read at the
    last epoch, and the gain it still expects after ``epoch`` plus SCALE_FLOOR; s is inf (no bound)
    with fewer than three points or a fitted time constant above half the epochs seen."""
    points = sorted((k, a) for (k, e), a in curve.items() if e == epochs and k <= epoch)
    t = np.array([k for k, _ in points], dtype=np.float64)
    a = np.array([v for _, v in points], dtype=np.float64)
    if t.size < 3:
        return float(a[-1]) if a.size else -math.inf, math.inf
    # a = c + slope * exp(-t / tau) for each tau: closed-form least squares; slope <= 0 (rising curves).
    basis = np.exp(-t[None, :] / TAUS[:, None])
    centred = basis - basis.mean(axis=1, keepdims=True)
    deviation = a - a.mean()
    spread = (centred * centred).sum(axis=1)
    slope = np.minimum(np.where(spread > 0, (centred * deviation).sum(axis=1) / np.where(spread > 0, spread, 1.0),
                                0.0), 0.0)
    intercept = a.mean() - slope * basis.mean(axis=1)
    best = int(np.argmin(((deviation[None, :] - slope[:, None] * centred) ** 2).sum(axis=1)))
    final = intercept[best] + slope[best] * math.exp(-epochs / TAUS[best])
    if TAUS[best] > t[-1] / 2:
        # The curve has not bent yet: its asymptote is not identified, whatever the least squares say.
        return float(final), math.inf
    now = intercept[best] + slope[best] * math.exp(-t[-1] / TAUS[best])
    return float(final), float(max(final - now, 0.0) + SCALE_FLOOR)


class CurveGains:
    """M (the calibration) per schedule E and how many reference curves it rests on, updated as
    reference trials finish."""

    def __init__(self, settings: Optional[EarlyStopping] = None) -> None:
        self.settings = settings or EarlyStopping()
        self.worst = {}  # type: Dict[int, float]  # E -> M
        self.count = {}  # type: Dict[int, int]

    def add(self, records: List[Dict[str, Any]], final_accuracy: float, number: int) -> None:
        """A finished trial's curve; only reference trials calibrate."""
        if not is_reference(self.settings, number):
            return
        curve = accuracy_by_epoch(records)
        scores = {}  # type: Dict[int, float]
        for epoch, epochs in curve:
            if self.settings.min_epochs <= epoch < epochs:
                final, scale = extrapolate(curve, epoch, epochs)
                if math.isfinite(scale):  # epochs with no bound stop nothing and calibrate nothing
                    scores[epochs] = max(scores.get(epochs, -math.inf), (final_accuracy - final) / scale)
        for epochs, score in scores.items():
            self.worst[epochs] = max(self.worst.get(epochs, -math.inf), score)
            self.count[epochs] = self.count.get(epochs, 0) + 1

    def bound(self, curve: Dict[Tuple[int, int], float], epoch: int, epochs: int) -> float:
        """UB(x, k) for the trial whose accuracies are ``curve`` (inf while fewer than ``min_curves``
        reference curves of ``epochs`` epochs are known)."""
        if self.count.get(epochs, 0) < self.settings.min_curves:
            return math.inf
        final, scale = extrapolate(curve, epoch, epochs)
        return final + scale * self.worst[epochs] + self.settings.margin


def stop_decision(settings: EarlyStopping, gains: CurveGains, records: List[Dict[str, Any]],
                  front_at_latency: float, number: int = 1) -> Optional[Dict[str, Any]]:
    """``{"epoch", "bound", "front", "prunes"}`` when trial ``number``, whose progress records so far are
    ``records``, should stop (``front_at_latency``: the best finished accuracy at most as slow as it),
    else None."""
    if settings.mode != "curve" or not records or is_reference(settings, number):
        return None
    record = records[-1]
    accuracy, epoch, epochs = record.get("accuracy"), record.get("epoch"), record.get("epochs")
    if accuracy is None or not isinstance(epochs, int) or isinstance(epochs, bool):
        return None
    if epoch <= settings.min_epochs or epoch >= epochs:
        return None
    curve = accuracy_by_epoch(records)
    bound = gains.bound(curve, int(epoch), epochs)
    if not front_at_latency >= bound or (epoch - 1, epochs) not in curve:
        return None
    if not front_at_latency >= gains.bound(curve, int(epoch) - 1, epochs):
        return None
    return {"epoch": int(epoch), "bound": round(float(bound), 6), "front": float(front_at_latency),
            "prunes": prunes_with_bound(int(epoch), epochs)}


def prunes_with_bound(epoch: int, epochs: int) -> bool:
    """Whether a trial stopped after ``epoch`` of ``epochs`` prunes its precedents with its bound: only
    in the second half of its training, where the bound is a short extrapolation."""
    return 2 * epoch >= epochs
