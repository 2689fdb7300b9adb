"""One search run's resources, set up and torn down in one place: the journal in the output folder,
the check that a resumed search keeps its table's machine identity, the study replayed from the
journal, and the executor that trains its trials.  A command parses its options into these
arguments and reports what the session did; the search itself is ``Study`` and ``run_search``.
"""

import os
from typing import Any, Callable, Dict, Optional

from ..journal import Journal
from ..latency.table import LatencyTable
from .candidates import CandidateSet
from .study import Study

JOURNAL_NAME = "journal.jsonl"


def journal_path(out: str) -> str:
    """Where the search journalled in ``out`` keeps its trials."""
    return os.path.join(out, JOURNAL_NAME)


class SearchSession:
    """Opens the journal of ``out`` and replays it into a ``Study`` over ``candidates`` (``study`` holds the
    keywords of ``Study``); ``warn`` is told, before the study replays the journal, when a resumed search was
    begun with a table of another machine identity (with ``strict``, a UserError instead).  Use as a context manager: the executor and the journal
    are closed on the way out, whatever happens."""

    def __init__(self, candidates: CandidateSet, table: LatencyTable, table_path: str, out: str,
                 study: Dict[str, Any], warn: Callable[[str], None], strict: bool = False) -> None:
        self.out = out
        self.executor: Any = None
        self.journal = Journal(journal_path(out))
        try:
            records = self.journal.open()
            self.resumed = bool(records)
            identity = table.meta.get("identity")
            warning = _identity_warning(records, identity, table_path, out, strict)
            if warning:
                warn(warning)
            self.study = Study(candidates, journal=self.journal, **study)
            self.study.start_journal(records, {"table_identity": identity})
        except BaseException:
            self.journal.close()
            raise

    def start(self, evaluator: Any, **execution: Any) -> None:
        """Start the executor (``search.executors.make_executor``'s keywords in ``execution``)."""
        from .executors import make_executor

        self.executor = make_executor(evaluator, self.out, **execution)

    def run(self, progress: bool, on_result: Optional[Callable[[Study], None]] = None) -> Study:
        from .runner import run_search

        return run_search(self.study, self.executor, progress=progress, on_result=on_result)

    def close(self) -> None:
        try:
            if self.executor is not None:
                self.executor.close()
        finally:
            self.journal.close()

    def __enter__(self) -> "SearchSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _identity_warning(records: Any, identity: Optional[Dict[str, Any]], table_path: str, out: str,
                      strict: bool) -> Optional[str]:
    if not records or "table_identity" not in records[0] or records[0]["table_identity"] == identity:
        return None
    from ..bench.machine import identity_warning

    return identity_warning("{} (resuming the search in {}, begun with another table)".format(table_path, out),
                            records[0]["table_identity"], identity or {}, strict=strict)
