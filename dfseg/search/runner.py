"""The search loop: keep the executor full with ``study.ask()``, ``tell`` results as they arrive."""

from typing import Any, Callable, Optional

from ..fileio import DiskFullError
from .study import Study


def run_search(study: Study, executor: Any, progress: bool = True,
               on_result: Optional[Callable[[Study], None]] = None) -> Study:
    """Run until the study stops (front stable, space exhausted or budget) and nothing is in flight; a
    trial that ran out of disk space raises its ``DiskFullError`` (the journal keeps the others)."""
    from tqdm import tqdm

    bar = tqdm(total=study.max_trials, initial=len(study.trials), desc="POP search", unit="trial",
               disable=not progress)
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
            for outcome in executor.wait():
                if outcome.disk_full:
                    full = full or outcome
                    continue
                if outcome.progress:
                    study.record_progress(outcome.number, list(outcome.progress))
                if outcome.accuracy is None:
                    study.tell_failed(outcome.number, outcome.error or "failed")
                else:
                    study.tell(outcome.number, outcome.accuracy, seconds=round(outcome.seconds, 3))
                summary = study.history[-1]  # the counts this result left
                bar.update(1)
                bar.set_postfix(trained=summary["trained"], pruned=summary["pruned"], front=summary["front"],
                                failed=summary["failed"])
                if on_result is not None:
                    on_result(study)
            if full is not None:  # after the others' results are journalled; this trial stays in flight
                raise DiskFullError(full.error)
    finally:
        bar.close()
    return study
