"""The search loop: keep the executor full with ``study.ask()``, journal running trials' epochs as
they end (``progress.ProgressTail``), stop the trials whose curves cannot reach the front
(``study.check_stop``), and ``tell`` results as they arrive."""

from typing import Any, Callable, Dict, Optional

from ..fileio import DiskFullError
from .executors import trial_dir
from .progress import ProgressTail, log_line
from .study import Study

POLL_S = 0.5  # how often running trials' progress files are read


def run_search(study: Study, executor: Any, progress: bool = True,
               on_result: Optional[Callable[[Study], None]] = None, poll_s: float = POLL_S) -> Study:
    """Run until the study stops (front stable, space exhausted or budget) and nothing is in flight; a
    trial that ran out of disk space raises its ``DiskFullError`` (the journal keeps the others)."""
    from tqdm import tqdm

    root = getattr(executor, "root", None)
    tails: Dict[int, ProgressTail] = {}
    bar = tqdm(total=study.max_trials, initial=len(study.trials), desc="POP search", unit="trial",
               disable=not progress)

    def tail(number: int, running: bool = True) -> None:
        """Journal the trial's new epochs; stop it, while it runs, when its curve says so."""
        if root is None or number not in study.in_flight:
            return
        reader = tails.get(number)
        if reader is None:
            known = study.progress.get(number)
            reader = tails[number] = ProgressTail(trial_dir(root, number), known[-1]["epoch"] if known else 0)
        for record in reader.poll():
            # One epoch at a time, so that where a trial stops does not depend on how often it is read.
            study.record_progress(number, [record])
            decision = study.check_stop(number) if running else None
            if decision is not None:
                # Journalled before the trial is ended: a search killed in between never restarts it.
                study.stop(number, decision["epoch"], decision["bound"], decision["front"], decision["prunes"])
                log_line(reader.trial_dir, "stopped after epoch {}: bound {:.4g} <= front {:.4g} at its "
                         "latency".format(decision["epoch"], decision["bound"], decision["front"]))
                executor.stop(number)
                result(number)
                return

    def result(number: int) -> None:
        tails.pop(number, None)
        summary = study.history[-1]  # the counts this result left
        bar.update(1)
        bar.set_postfix(trained=summary["trained"], stopped=summary["stopped"], pruned=summary["pruned"],
                        front=summary["front"], failed=summary["failed"])
        if on_result is not None:
            on_result(study)

    try:
        while True:
            while executor.pending < executor.capacity:
                trial = study.ask()
                if trial is None:
                    break
                executor.submit(trial)
            if executor.pending == 0:
                break
            full = None
            outcomes = executor.wait(poll_s)
            for number in executor.running():
                tail(number)
            for outcome in outcomes:
                if outcome.disk_full:
                    full = full or outcome
                    continue
                if outcome.number not in study.in_flight:
                    continue  # stopped by the search while its evaluator was ending
                tail(outcome.number, running=False)  # the epochs written since the last poll
                if outcome.progress:  # where the search could not read the file live (no shared filesystem)
                    study.record_progress(outcome.number, list(outcome.progress))
                if outcome.accuracy is None:
                    study.tell_failed(outcome.number, outcome.error or "failed")
                else:
                    study.tell(outcome.number, outcome.accuracy, seconds=round(outcome.seconds, 3))
                result(outcome.number)
            if full is not None:  # after the others' results are journalled; this trial stays in flight
                raise DiskFullError(full.error)
    finally:
        bar.close()
    return study

