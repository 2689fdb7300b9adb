"""Ask/tell driver of Algorithm 1, Optuna style, so that any training loop can run the search::

    study = Study(candidates, seed=0, patience=30)
    while (trial := study.ask()) is not None:
        study.tell(trial.number, train(trial.arch))

Several trials may be in flight at once (ask several times, tell in any order); pruning is applied
as each result arrives.  Selection draws from S^ minus (P, D, failed and in-flight trials): uniformly
(``select="random"``, the paper's Algorithm 1) or partly by the lower bounds the trained models give
(``select="guided"``, see selection.py).  Its generator is seeded by (seed, ask number), so a search
is a pure function of its seed and the order of its results: replaying a journal rebuilds the exact state, and a resumed sequential
search ends where an uninterrupted one would.

Learning curves: ``record_progress`` journals a running trial's per-epoch records as they arrive;
with ``early_stop=EarlyStopping("curve")`` ``check_stop`` then says whether the trial should end
(curves.py), and ``stop`` journals and applies that: the trial leaves the search as "stopped" with
its epoch and bound, prunes with its bound if it stopped late enough to (curves.py), never joins B(D) and is never asked again (not even by
``--resume``).  Replay applies the journalled stop as recorded, so it is exact whatever the settings.
"""

import hashlib
import math
import time
from typing import Any, Dict, List, NamedTuple, Optional

import numpy as np

from ..arch import Arch
from ..journal import Journal, JournalError
from .candidates import CandidateSet
from .curves import CurveGains, EarlyStopping, check_early_stopping, stop_decision
from .pop import PartialOrderPruning
from .selection import SELECTIONS, GuidedSelection

FRONT_STABLE = "front unchanged"
EXHAUSTED = "search space exhausted"
BUDGET = "trial budget reached"
FAILURES = "too many failures in a row"
_DEFAULTS = {"select": "random", "explore": None}


class SettingError(ValueError):
    """A study setting out of its range; ``setting`` is the keyword of ``Study`` (a command maps it to its
    option)."""

    def __init__(self, setting: str, value: Any, problem: str) -> None:
        super().__init__("{} {}: {}".format(setting, value, problem))
        self.setting = setting
        self.value = value
        self.problem = problem


class EmptySpaceError(ValueError):
    """No candidate lies in the latency window."""


def check_settings(patience: int = 30, max_trials: Optional[int] = None, select: str = "random",
                   explore: float = 0.5, early_stop: Optional[EarlyStopping] = None) -> None:
    """The one check of the study's settings (``Study`` runs it; a command may run it before anything else)."""
    if patience < 1:
        raise SettingError("patience", patience, "must be at least 1")
    if max_trials is not None and max_trials < 1:
        raise SettingError("max_trials", max_trials, "must be at least 1")
    if select not in SELECTIONS:
        raise SettingError("select", repr(select), "choose one of {}".format(", ".join(SELECTIONS)))
    if not 0.0 <= explore <= 1.0:
        raise SettingError("explore", explore, "must be between 0 and 1")
    problem = check_early_stopping(early_stop) if early_stop is not None else None
    if problem is not None:
        raise SettingError(*problem)


class Trial(NamedTuple):
    number: int
    index: int
    arch: Arch
    latency_ms: float


class Study:
    def __init__(self, candidates: CandidateSet, seed: int = 0, patience: int = 30, eps: float = 0.0,
                 max_trials: Optional[int] = None, journal: Optional[Journal] = None, select: str = "random",
                 explore: float = 0.5, max_failures: Optional[int] = None,
                 early_stop: Optional[EarlyStopping] = None) -> None:
        early_stop = early_stop or EarlyStopping()
        check_settings(patience=patience, max_trials=max_trials, select=select, explore=explore,
                       early_stop=early_stop)
        if not len(candidates):
            raise EmptySpaceError("the search space is empty: widen the latency window or the space")
        self.candidates = candidates
        self.seed = int(seed)
        self.patience = int(patience)
        self.eps = float(eps)
        self.max_trials = max_trials
        self.max_failures = max_failures
        self.failures_in_a_row = 0  # of this session: a resumed search starts counting again
        self.pop = PartialOrderPruning(candidates.codes, candidates.latency, eps, candidates.top_code)
        self.select = select
        self.explore = float(explore)
        self.guide = GuidedSelection(self.pop, explore) if select == "guided" else None
        self.failed = np.zeros(len(candidates), dtype=bool)
        self.in_flight = {}  # type: Dict[int, Trial]
        self._in_flight_mask = np.zeros(len(candidates), dtype=bool)
        self.asked = 0
        self.stable_for = 0
        self.trials = []  # type: List[Dict[str, Any]]  # one record per finished or failed trial
        self.history = []  # type: List[Dict[str, Any]]  # counts after each result (Fig. 8a)
        self._front = frozenset()  # type: frozenset
        self._requeue = []  # type: List[Trial]
        self.progress = {}  # type: Dict[int, List[Dict[str, Any]]]  # trial -> its per-epoch records
        self.early_stop = early_stop
        self.gains = CurveGains(early_stop)  # the bound's calibration, from reference trials' curves
        self.journal = journal

    # ------------------------------------------------------------------ configuration record
    def config(self) -> Dict[str, Any]:
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.candidates.codes).tobytes())
        digest.update(self.candidates.latency.tobytes())
        return {"type": "start", "space": self.candidates.space.to_json(), "seed": self.seed, "eps": self.eps,
                "select": self.select, "explore": self.explore if self.guide else None,
                "size": len(self.candidates), "candidates_sha256": digest.hexdigest()[:16]}

    def start_journal(self, records: List[Dict[str, Any]], note: Optional[Dict[str, Any]] = None) -> None:
        """Write the start record to a new journal, or replay an existing one (``--resume``).  ``note`` is
        kept in a new start record for the record's readers (the table's identity) and not compared."""
        config = self.config()
        if not records:
            self._write(dict(config, time=time.time(), **(note or {})))
            return
        head = records[0]
        if head.get("type") != "start":
            raise JournalError("{}: first record is not a search start; not a dfseg-search journal".format(
                self.journal.path if self.journal else "journal"))
        for field in ("space", "seed", "eps", "select", "explore", "size", "candidates_sha256"):
            # Journals from before guided selection have neither field: they were random draws.
            recorded = head.get(field, _DEFAULTS.get(field))
            if recorded != config[field]:
                raise JournalError(
                    "{}: cannot resume: {} differs (journal {!r}, now {!r}); rerun with the journal's settings "
                    "and latency table, or start a new search with another --out".format(
                        self.journal.path if self.journal else "journal", field, recorded, config[field]))
        self.replay(records[1:])

    def replay(self, records: List[Dict[str, Any]]) -> None:
        """Rebuild the state from the journal's records after the start record; a record that does
        not fit (edited, duplicated, of the wrong shape) is a JournalError naming it."""
        where = self.journal.path if self.journal else "journal"
        for position, record in enumerate(records, start=2):
            if not isinstance(record, dict):
                raise JournalError("{}: record {} is not a JSON object; restore the journal or start a new "
                                   "search with another --out".format(where, position))
            kind = record.get("type")
            if kind == "ask":
                trial = self._draw()
                if trial is None or trial.index != record.get("index") or trial.number != record.get("trial"):
                    raise JournalError("journal replay diverged at trial {}: the space, table or seed changed".format(
                        record.get("trial")))
            elif kind in ("tell", "fail"):
                number = record.get("trial")
                if isinstance(number, bool) or not isinstance(number, int) or number not in self.in_flight:
                    raise JournalError("{}: record {}: a {} for trial {!r}, which was not asked or already has its "
                                       "result (a duplicated or edited line); remove that line".format(
                                           where, position, kind, number))
                if kind == "tell":
                    accuracy = record.get("accuracy")
                    if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or \
                            not math.isfinite(accuracy):
                        raise JournalError("{}: record {}: accuracy {!r} of trial {} is not a finite number; fix or "
                                           "remove that line".format(where, position, accuracy, number))
                    self._apply_tell(number, float(accuracy), record.get("seconds"))
                else:
                    self._apply_fail(number, str(record.get("error", "")))
            elif kind == "retry":
                self._apply_retry()
            elif kind == "stop":
                number, epoch, bound = record.get("trial"), record.get("epoch"), record.get("bound")
                if isinstance(number, bool) or not isinstance(number, int) or number not in self.in_flight or \
                        not isinstance(epoch, int) or isinstance(bound, bool) or \
                        not isinstance(bound, (int, float)) or not math.isfinite(bound):
                    raise JournalError("{}: record {}: a stop of trial {!r} that was not running, or without its "
                                       "epoch and finite bound (a duplicated or edited line); remove that "
                                       "line".format(where, position, number))
                prunes = record.get("prunes", True)  # journals from before this field: every stop pruned
                if not isinstance(prunes, bool):
                    raise JournalError("{}: record {}: prunes {!r} of trial {} is not true or false; fix or remove "
                                       "that line".format(where, position, prunes, number))
                self._apply_stop(number, epoch, float(bound), record.get("front"), prunes)
            elif kind == "progress":
                number = record.get("trial")
                if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < self.asked:
                    raise JournalError("{}: record {}: progress of trial {!r}, which was never asked; remove that "
                                       "line".format(where, position, number))
                self.progress.setdefault(number, []).append(record)
            else:
                raise JournalError("{}: record {}: unknown type {!r}; this journal is not dfseg-search's, or is "
                                   "from a newer version".format(where, position, kind))
        self.failures_in_a_row = 0
        # Trials asked before the interruption but never finished run again first, as they were.
        self._requeue = sorted(self.in_flight.values())

    def _write(self, record: Dict[str, Any]) -> None:
        if self.journal is not None:
            self.journal.append(record)

    # ------------------------------------------------------------------ ask
    @property
    def available(self) -> np.ndarray:
        return ~(self.pop.pruned | self.pop.trained | self.failed | self._in_flight_mask)

    def stop_reason(self) -> Optional[str]:
        if self.max_failures is not None and self.failures_in_a_row >= self.max_failures:
            return FAILURES
        if self.max_trials is not None and self.asked >= self.max_trials:
            return BUDGET
        if self.pop.n_trained and self.stable_for >= self.patience:
            return FRONT_STABLE
        if not self.available.any():
            return EXHAUSTED
        return None

    @property
    def finished(self) -> bool:
        return self.stop_reason() is not None and not self.in_flight and not self._requeue

    def ask(self) -> Optional[Trial]:
        """The next candidate to train, or None when the search should stop or nothing is left now."""
        if self._requeue:
            return self._requeue.pop(0)
        if self.stop_reason() is not None:
            return None
        trial = self._draw()
        if trial is not None:
            self._write({"type": "ask", "trial": trial.number, "index": trial.index, "arch": trial.arch.short(),
                         "latency_ms": trial.latency_ms})
        return trial

    def _draw(self) -> Optional[Trial]:
        choices = np.flatnonzero(self.available)
        if not choices.size:
            return None
        rng = np.random.default_rng([self.seed, self.asked])
        if self.guide is not None:
            index = self.guide.choose(choices, rng)
        else:
            index = int(choices[rng.integers(choices.size)])
        trial = Trial(self.asked, index, self.candidates.arch(index), float(self.candidates.latency[index]))
        self.asked += 1
        self.in_flight[trial.number] = trial
        self._in_flight_mask[index] = True
        return trial

    # ------------------------------------------------------------------ tell
    def tell(self, number: int, accuracy: float, seconds: Optional[float] = None) -> int:
        """Record a trained result; returns how many candidates it pruned."""
        if number not in self.in_flight:
            raise ValueError("trial {} is not in flight".format(number))
        accuracy = float(accuracy)
        if not math.isfinite(accuracy):
            raise ValueError("trial {}: accuracy must be a finite number, got {!r}".format(number, accuracy))
        self._write({"type": "tell", "trial": number, "accuracy": accuracy, "seconds": seconds})
        return self._apply_tell(number, accuracy, seconds)

    def record_progress(self, number: int, records: List[Dict[str, Any]]) -> None:
        """Journal a trial's per-epoch records (``{"epoch", "epochs", "loss", "accuracy"}``) as progress
        records, so a later decision can read its learning curve; they change nothing in the search."""
        if number not in self.in_flight:
            raise ValueError("trial {} is not in flight".format(number))
        known = len(self.progress.get(number, []))
        last = self.progress[number][-1]["epoch"] if known else 0
        fresh = [dict(record, type="progress", trial=number) for record in records if record["epoch"] > last]
        if fresh and self.journal is not None:
            self.journal.append_many(fresh)
        self.progress.setdefault(number, []).extend(fresh)

    def check_stop(self, number: int) -> Optional[Dict[str, Any]]:
        """``{"epoch", "bound", "front", "prunes"}`` when the running trial's latest record says it cannot reach
        the front (curves.py), else None."""
        records = self.progress.get(number)
        if number not in self.in_flight or not records or self.early_stop.mode == "off":
            return None
        latency = self.in_flight[number].latency_ms
        return stop_decision(self.early_stop, self.gains, records, self.pop.best_at(latency), number)

    def stop(self, number: int, epoch: int, bound: float, front: Optional[float] = None, prunes: bool = True) -> int:
        """Record that a running trial was stopped after ``epoch`` with upper bound ``bound`` (pruning its
        precedents with it when ``prunes``, curves.py says when); returns how many candidates it pruned."""
        if number not in self.in_flight:
            raise ValueError("trial {} is not in flight".format(number))
        self._write({"type": "stop", "trial": number, "epoch": int(epoch), "bound": float(bound), "front": front,
                     "prunes": bool(prunes)})
        return self._apply_stop(number, int(epoch), float(bound), front, bool(prunes))

    def tell_failed(self, number: int, error: str) -> None:
        """Record a trial that could not be trained; its candidate is not asked again."""
        if number not in self.in_flight:
            raise ValueError("trial {} is not in flight".format(number))
        self._write({"type": "fail", "trial": number, "error": error})
        self._apply_fail(number, error)

    def retry_failed(self) -> int:
        """Ask every failed candidate again, before any new draw (``--resume --retry-failed``), as new
        trials in the order they failed.  Journalled, so a replay rebuilds the same trials.  Returns
        how many there were."""
        count = int(np.count_nonzero(self.failed))
        if count:
            self._write({"type": "retry", "candidates": count})
            self._apply_retry()
        return count

    def _apply_retry(self) -> None:
        failed_order = [record["index"] for record in self.trials
                        if record["status"] == "failed" and self.failed[record["index"]]]
        for index in dict.fromkeys(failed_order):  # each candidate once, in the order it failed
            self.failed[index] = False
            trial = Trial(self.asked, index, self.candidates.arch(index), float(self.candidates.latency[index]))
            self.asked += 1
            self.in_flight[trial.number] = trial
            self._in_flight_mask[index] = True
            self._requeue.append(trial)
        self.failures_in_a_row = 0

    def _finish(self, number: int) -> Trial:
        trial = self.in_flight.pop(number)
        self._in_flight_mask[trial.index] = False
        if trial in self._requeue:
            self._requeue.remove(trial)
        return trial

    def _apply_tell(self, number: int, accuracy: float, seconds: Optional[float]) -> int:
        trial = self._finish(number)
        self.failures_in_a_row = 0
        newly = self.pop.add(trial.index, accuracy)
        if self.guide is not None:
            self.guide.observe(trial.index, accuracy)
        self.gains.add(self.progress.get(number, []), accuracy, number)
        front = frozenset(self.pop.front())
        self.stable_for = self.stable_for + 1 if front == self._front else 0
        self._front = front
        self.trials.append({"trial": number, "index": trial.index, "arch": trial.arch, "latency_ms": trial.latency_ms,
                            "accuracy": accuracy, "seconds": seconds, "status": "ok", "error": None,
                            "epochs": self._epochs(number), "stop_reason": ""})
        self._record_history(number)
        return newly

    def _apply_stop(self, number: int, epoch: int, bound: float, front: Optional[float], prunes: bool) -> int:
        trial = self._finish(number)
        self.failures_in_a_row = 0
        newly = self.pop.add_bound(trial.index, bound, prune=prunes)
        self.stable_for += 1  # B(D) holds finished trials only: a stop leaves it as it was
        reason = "curve: bound {:.4g} after epoch {}".format(bound, epoch)
        if front is not None:
            reason += " <= front {:.4g}".format(front)
        if not prunes:
            reason += ", too early to prune"
        self.trials.append({"trial": number, "index": trial.index, "arch": trial.arch, "latency_ms": trial.latency_ms,
                            "accuracy": None, "seconds": None, "status": "stopped", "error": None, "epochs": epoch,
                            "bound": bound, "stop_reason": reason})
        self._record_history(number)
        return newly

    def _epochs(self, number: int) -> Optional[int]:
        records = self.progress.get(number)
        return records[-1]["epoch"] if records else None

    def _apply_fail(self, number: int, error: str) -> None:
        trial = self._finish(number)
        self.failed[trial.index] = True
        self.failures_in_a_row += 1
        self.trials.append({"trial": number, "index": trial.index, "arch": trial.arch, "latency_ms": trial.latency_ms,
                            "accuracy": None, "seconds": None, "status": "failed", "error": error,
                            "epochs": self._epochs(number), "stop_reason": ""})
        self._record_history(number)

    def _record_history(self, number: int) -> None:
        self.history.append({"trial": number, "trained": self.pop.n_trained, "stopped": self.pop.n_stopped,
                             "pruned": self.pop.n_pruned,
                             "covered": self.pop.n_covered, "failed": int(np.count_nonzero(self.failed)),
                             "front": len(self._front)})

    # ------------------------------------------------------------------ results
    def front(self) -> List[Dict[str, Any]]:
        """B(D) as {"arch", "latency_ms", "accuracy"}, fastest first."""
        out = []
        for index in self.pop.front():
            out.append({"arch": self.candidates.arch(index), "latency_ms": float(self.candidates.latency[index]),
                        "accuracy": self.pop.accuracy_of(index)})
        return out

    def summary(self) -> Dict[str, Any]:
        return {"size": len(self.candidates), "trained": self.pop.n_trained, "stopped": self.pop.n_stopped,
                "pruned": self.pop.n_pruned,
                "covered": self.pop.n_covered, "failed": int(np.count_nonzero(self.failed)), "front": len(self._front),
                "stop_reason": self.stop_reason(), "stable_for": self.stable_for}

    def state(self) -> Dict[str, Any]:
        """Everything that defines where the search stands (compared by the resume tests)."""
        return {"trained": list(self.pop.d_index), "accuracy": list(self.pop.d_accuracy),
                "stopped": list(self.pop.s_index), "bounds": list(self.pop.s_bound),
                "pruned": np.flatnonzero(self.pop.pruned).tolist(), "failed": np.flatnonzero(self.failed).tolist(),
                "front": self.pop.front(), "asked": self.asked}
