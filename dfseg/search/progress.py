"""A trial's learning curve on disk, and the search's way of asking a running trial to stop.

Every evaluator that trains in epochs appends one JSON line per epoch to ``progress.jsonl`` in the
trial's directory (``{"epoch": k, "epochs": E, "accuracy": a}``, plus whatever else it likes: the
built-in trainer adds ``loss``, ``images``, ``seconds``).  The search process reads that file while
the trial runs (``ProgressTail``, polled by ``runner.run_search``), so each epoch reaches the journal
when it ends, not when the trial does; that needs the trial directory on a filesystem the search
process sees (always so for local trials; for Ray, a shared filesystem).

Rules for a line, applied the same way live and at the end of a trial:

- not JSON, not an object, or without an integer ``epoch``: skipped;
- an ``epoch`` not above the previous line's (going backwards or repeated): skipped;
- an ``accuracy`` that is present but not a finite number (NaN, inf, a string): skipped;
- a last line without its newline yet is not read until it has one (a writer mid-line).

Each skipped line gets one line in the trial's ``search.log`` and is never journalled; the trial's
result still comes from its result (a command that writes progress but no result fails), and
nothing already journalled changes.  A file replaced or rewritten from its start (the built-in
trainer rewrites it atomically each epoch; a retried command starts it again) is read again from
its start, and epochs already read are passed over without a message.

``STOP_NAME``: the search writes this file in a trial's directory to end the trial early (curve
early stopping, ``curves.py``); the built-in trainer checks it at every step and epoch end, and a
training command's process group is ended within a fraction of a second (``evaluators``).
"""

import math
import os
import time
from typing import Any, Dict, List, Optional, Tuple

from ..errors import UserError
from ..fileio import no_space_as_error, parse_json

PROGRESS_NAME = "progress.jsonl"
STOP_NAME = "stop"
LOG_NAME = "search.log"  # the search's own notes on a trial (bad progress lines, a stop)


class _BadLine(UserError):
    """A progress line that is not JSON: logged and skipped, never raised out of the search."""


def check_line(line: str, previous_epoch: int) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """(record, None) for a good progress line, (None, why) for one that breaks the rules above."""
    try:
        record = parse_json(line, "not JSON", error=_BadLine)
    except _BadLine as exc:
        return None, str(exc)
    epoch = record.get("epoch") if isinstance(record, dict) else None
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        return None, 'expected {"epoch": <int>, "epochs": <int>, "accuracy": <number>}'
    if epoch <= previous_epoch:
        return None, "epoch {} does not follow epoch {}".format(epoch, previous_epoch)
    accuracy = record.get("accuracy")
    if accuracy is not None and (isinstance(accuracy, bool) or not isinstance(accuracy, (int, float))
                                 or not math.isfinite(accuracy)):
        return None, "accuracy {!r} is not a finite number".format(accuracy)
    return record, None


def log_line(trial_dir: str, line: str) -> None:
    """One line in the trial's ``LOG_NAME`` (best effort: a full disk must not end the search here)."""
    try:
        os.makedirs(trial_dir, exist_ok=True)
        with open(os.path.join(trial_dir, LOG_NAME), "a") as log:
            log.write("{} {}\n".format(time.strftime("%Y-%m-%dT%H:%M:%S"), line))
    except OSError:
        pass


class ProgressTail:
    """Reads the new complete lines of one trial's progress file on each ``poll()``.

    ``known`` is the last epoch already journalled for the trial (a resumed trial); records up to it
    are passed over."""

    def __init__(self, trial_dir: str, known: int = 0) -> None:
        self.trial_dir = trial_dir
        self.path = os.path.join(trial_dir, PROGRESS_NAME)
        self.last_epoch = known
        self._identity = None  # type: Optional[Tuple[int, int]]
        self._offset = 0
        self._line = 0
        self._rewound = False

    def poll(self) -> List[Dict[str, Any]]:
        """The good records written since the last poll, in order (bad lines go to the trial's log)."""
        try:
            with open(self.path, "rb") as handle:
                status = os.fstat(handle.fileno())
                identity = (status.st_dev, status.st_ino)
                if identity != self._identity or status.st_size < self._offset:
                    self._identity, self._offset, self._line, self._rewound = identity, 0, 0, True
                handle.seek(self._offset)
                data = handle.read()
        except OSError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self._offset += end + 1
        fresh = []
        for raw in data[:end].split(b"\n"):
            self._line += 1
            text = raw.decode("utf-8", "replace")
            if not text.strip():
                continue
            record, problem = check_line(text, self.last_epoch)
            if record is None:
                # Lines of a rewritten file that were read before are not news.
                if self._rewound and problem and problem.startswith("epoch "):
                    continue
                log_line(self.trial_dir, "{} line {}: {}; line skipped, not journalled".format(
                    PROGRESS_NAME, self._line, problem))
                continue
            self._rewound = False
            self.last_epoch = record["epoch"]
            fresh.append(record)
        return fresh


def read_progress(trial_dir: str) -> List[Dict[str, Any]]:
    """Every good record of a trial's progress file, by the rules above (at a trial's end, where no
    live reader ran: a Ray node without a shared filesystem)."""
    records, previous = [], 0
    try:
        with open(os.path.join(trial_dir, PROGRESS_NAME), "rb") as handle:
            lines = handle.read().decode("utf-8", "replace").split("\n")[:-1]
    except OSError:
        return []
    for line in lines:
        record, _ = check_line(line, previous) if line.strip() else (None, None)
        if record is not None:
            records.append(record)
            previous = record["epoch"]
    return records


def request_stop(trial_dir: str) -> None:
    """Ask the trial running in ``trial_dir`` to end (see ``STOP_NAME``)."""
    path = os.path.join(trial_dir, STOP_NAME)
    # Its presence is the request: empty, it still reaches the trial on a disk too full for a line of text.
    with no_space_as_error(path):
        os.makedirs(trial_dir, exist_ok=True)
        open(path, "w").close()


def clear_stop(trial_dir: str) -> None:
    """A trial starting (or starting again after --resume) must not see an old request."""
    try:
        os.unlink(os.path.join(trial_dir, STOP_NAME))
    except FileNotFoundError:
        pass


def stop_requested(trial_dir: Optional[str]) -> bool:
    return trial_dir is not None and os.path.exists(os.path.join(trial_dir, STOP_NAME))
