"""Curve early stopping: an optimistic bound on a running trial's final accuracy from the learning
curves of finished trials, and the rule that stops a trial that cannot reach the front.

The bound.  For a running trial x with accuracy a_x(k) after epoch k of E,

    UB(x, k) = a_x(k) + G(k, E) + margin,
    G(k, E)  = max { Acc(f) - a_f(k) : f finished, trained for E epochs, with an accuracy at epoch k }

i.e. x's accuracy now plus the largest gain from epoch k to the end that any finished trial made,
plus ``margin`` (``--stop-margin``, accuracy units).  No bound (UB = inf, never stopped) until at
least ``min_curves`` (``--min-curves``, default 10) finished trials have an accuracy at epoch k, nor
before ``min_epochs`` (``--min-epochs``).  Every ``reference_every``-th trial (4: trials 0, 4, 8...)
is never stopped: the curves of the trials that were allowed to finish are otherwise biased
towards fast learners (slow ones look bad early and are stopped), and G would shrink with them.

The stop.  After epoch k < E (k >= ``min_epochs``), x stops when some finished y with
Lat(y) <= Lat(x) has Acc(y) >= UB(x, k): then even the bound cannot put x on the front B(D) (the
issue's "cannot beat the front at Lat(x)").  The search journals ``{"type": "stop", "trial",
"epoch", "bound"}``, ends the trial, and prunes with UB where a finished trial prunes with Acc
(pop.py, ``add_bound``).

When it is safe, and when not.  A wrong stop needs x to gain more after epoch k than every
finished trial did, by more than ``margin``.  It is safe when the finished curves cover the ways
the space learns: the same schedule (the built-in trainer's poly decay makes late gains that
every curve shares), and no systematically slower learners than those already finished.  It is
not safe (raise the margin or ``--min-epochs``, or use ``--early-stop off``) when:
- few trials have finished (``min_curves`` is a floor, not a guarantee);
- the running candidate learns more slowly than all finished ones (often the largest models:
  a slow learner that would overtake a fast one is stopped while it is still behind);
- a_x(k) is noisy (a small validation set): a dip at epoch k lowers UB by the dip;
- trials differ in their schedule (other E, a restarted learning rate), which this rule keys
  by (k, E) but cannot see inside a training command.
A wrong stop costs at most that candidate (and the precedents its bound prunes), never a
finished trial's result.  benchmarks/bench_search_efficiency.py counts them ("true-front members
lost to wrong stops").
"""

import math
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

MODES = ("off", "curve")


class EarlyStopping(NamedTuple):
    mode: str = "off"
    min_epochs: int = 1
    margin: float = 0.0
    min_curves: int = 10
    reference_every: int = 4  # every this-many-th trial (by number) is never stopped: 0 = none

    def describe(self) -> str:
        if self.mode == "off":
            return "early stopping off: every trial trains to its last epoch"
        return ("curve early stopping: after epoch k >= {} a trial stops when a faster finished model is at least "
                "as accurate as its bound (accuracy at k + the largest gain after k among >= {} finished curves "
                "+ margin {:g}); every {}th trial trains to the end".format(
                    self.min_epochs, self.min_curves, self.margin, self.reference_every))


def check_early_stopping(settings: EarlyStopping) -> Optional[Tuple[str, Any, str]]:
    """(setting, value, problem) for a setting out of range, else None."""
    if settings.mode not in MODES:
        return "early_stop", settings.mode, "choose one of {}".format(", ".join(MODES))
    if settings.min_epochs < 1:
        return "min_epochs", settings.min_epochs, "must be at least 1"
    if not math.isfinite(settings.margin) or settings.margin < 0:
        return "stop_margin", settings.margin, "must be a finite number >= 0"
    if settings.min_curves < 1:
        return "min_curves", settings.min_curves, "must be at least 1"
    if settings.reference_every < 0:
        return "reference_every", settings.reference_every, "must be >= 0"
    return None


def is_reference(settings: EarlyStopping, number: int) -> bool:
    """Reference trials train to the end whatever their curve, so that G(k, E) keeps seeing slow
    learners: the curves of trials that were allowed to finish are otherwise biased towards fast ones."""
    return bool(settings.reference_every) and number % settings.reference_every == 0


def accuracy_by_epoch(records: List[Dict[str, Any]]) -> Dict[Tuple[int, int], float]:
    """(epoch, epochs) -> accuracy of a trial's progress records that have one."""
    out = {}
    for record in records:
        accuracy, epochs = record.get("accuracy"), record.get("epochs")
        if accuracy is not None and isinstance(epochs, int) and not isinstance(epochs, bool):
            out[(int(record["epoch"]), epochs)] = float(accuracy)
    return out


class CurveGains:
    """G(k, E) and how many finished curves it rests on, updated as trials finish."""

    def __init__(self) -> None:
        self.gain = {}  # type: Dict[Tuple[int, int], float]
        self.count = {}  # type: Dict[Tuple[int, int], int]

    def add(self, records: List[Dict[str, Any]], final_accuracy: float) -> None:
        for key, accuracy in accuracy_by_epoch(records).items():
            if key[0] >= key[1]:
                continue
            gain = final_accuracy - accuracy
            self.gain[key] = max(self.gain.get(key, -np.inf), gain)
            self.count[key] = self.count.get(key, 0) + 1

    def bound(self, accuracy: float, epoch: int, epochs: int, settings: EarlyStopping) -> float:
        """UB(x, k) (inf while fewer than ``min_curves`` finished curves have epoch k of E)."""
        key = (epoch, epochs)
        if self.count.get(key, 0) < settings.min_curves:
            return math.inf
        return accuracy + self.gain[key] + settings.margin


def stop_decision(settings: EarlyStopping, gains: CurveGains, record: Dict[str, Any],
                  front_at_latency: float, number: int = 1) -> Optional[Dict[str, Any]]:
    """``{"epoch", "bound", "front"}`` when trial ``number``, whose latest progress record is ``record``,
    should stop (``front_at_latency``: the best finished accuracy at most as slow as it), else None."""
    if settings.mode != "curve" or is_reference(settings, number):
        return None
    accuracy, epoch, epochs = record.get("accuracy"), record.get("epoch"), record.get("epochs")
    if accuracy is None or not isinstance(epochs, int) or isinstance(epochs, bool):
        return None
    if epoch < settings.min_epochs or epoch >= epochs:
        return None
    bound = gains.bound(float(accuracy), int(epoch), epochs, settings)
    if not front_at_latency >= bound:
        return None
    return {"epoch": int(epoch), "bound": round(float(bound), 6), "front": float(front_at_latency)}
