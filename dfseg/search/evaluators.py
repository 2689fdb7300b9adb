"""How Acc(x) is obtained for a trial.

An evaluator is a picklable callable ``evaluator(trial, trial_dir) -> accuracy`` (so it can run in
a process pool or a Ray task); it raises ``EvaluationError`` when the trial cannot be scored.

- ``CommandEvaluator``: the real-world path.  Runs the user's training command as an argv list
  (``shlex.split``, never a shell) with ``{arch}`` = a file holding the candidate's canonical JSON
  and ``{result}`` = where the command writes ``{"accuracy": <float>}``; optionally ``{progress}`` = a
  file where it appends one JSON line per epoch, ``{"epoch": k, "epochs": E, "accuracy": a}``; timeout
  and a log per attempt in the trial's directory.
- ``ReplayEvaluator``: known accuracies from a CSV (columns ``arch,accuracy``) or JSON file
  (re-running a search, benchmarks).
- ``ArrayEvaluator``: accuracy by candidate row (synthetic landscapes).
- ``dfseg.search.trainer.TrainerEvaluator``: the built-in torch trainer.
"""

import collections
import csv
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Sequence

from ..arch import Arch, ArchError
from ..errors import UserError
from ..fileio import disk_full, disk_nearly_full, no_space_as_error, parse_json, read_json, write_atomic
from .progress import PROGRESS_NAME, stop_requested

ARCH_FIELD = "{arch}"
RESULT_FIELD = "{result}"
PROGRESS_FIELD = "{progress}"
FIELDS = (ARCH_FIELD, RESULT_FIELD, PROGRESS_FIELD)
# A word in braces looks like a placeholder: one not in FIELDS (a misspelling such as {progres}) would
# reach the training program as it stands, with no error anywhere.
_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


class EvaluationError(Exception):
    """A trial could not be scored (command failed, timed out, wrote no result...)."""


class TrialStopped(EvaluationError):
    """The search asked the trial to stop (``progress.STOP_NAME``) and it ended."""


class _ResultError(UserError):
    """A result file that cannot be read: becomes an EvaluationError of its trial."""


def read_accuracy(path: str) -> float:
    try:
        data = read_json(path, "result file", error=_ResultError)
    except _ResultError as exc:
        if not os.path.exists(path):
            raise EvaluationError("the training command wrote no result file {}".format(path)) from None
        raise EvaluationError(str(exc)) from None
    value = data.get("accuracy") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EvaluationError('{}: expected {{"accuracy": <number>}}, got {!r}'.format(path, data))
    return float(value)


class CommandEvaluator:
    """Train a candidate by running an external command (``--train-cmd``)."""

    def __init__(self, template: str, timeout_s: Optional[float] = None) -> None:
        try:
            argv = shlex.split(template)
        except ValueError as exc:
            raise UserError("--train-cmd: cannot split {!r} ({})".format(template, exc)) from None
        if not argv:
            raise UserError("--train-cmd: empty command")
        unknown = [m for token in argv for m in _PLACEHOLDER.findall(token) if m not in FIELDS]
        if unknown:
            raise UserError("--train-cmd: unknown placeholder {} in {!r}; the placeholders are {}".format(
                unknown[0], template, ", ".join(FIELDS)))
        for field in (ARCH_FIELD, RESULT_FIELD):
            if not any(field in token for token in argv):
                raise UserError("--train-cmd: {!r} must contain {} (see dfseg-search --help)".format(template, field))
        program = argv[0]
        if shutil.which(program) is None and not os.path.isfile(program):
            raise UserError("--train-cmd: program {!r} not found on PATH".format(program))
        if timeout_s is not None and not (math.isfinite(timeout_s) and timeout_s > 0):
            raise UserError("--timeout: must be a positive number of seconds, got {}".format(timeout_s))
        self.template = template
        self.argv = argv
        self.timeout_s = timeout_s

    def command(self, arch_path: str, result_path: str, progress_path: str = "") -> List[str]:
        return [token.replace(ARCH_FIELD, arch_path).replace(RESULT_FIELD, result_path)
                .replace(PROGRESS_FIELD, progress_path) for token in self.argv]

    def __call__(self, trial: Any, trial_dir: str) -> float:
        trial_dir = os.path.abspath(trial_dir)
        os.makedirs(trial_dir, exist_ok=True)
        arch_path = os.path.join(trial_dir, "arch.json")
        result_path = os.path.join(trial_dir, "result.json")
        progress_path = os.path.join(trial_dir, PROGRESS_NAME)
        write_atomic(arch_path, (trial.arch.dumps() + "\n").encode("utf-8"))
        for stale in (result_path, progress_path):
            if os.path.exists(stale):
                os.unlink(stale)  # an earlier attempt's result and curve must not count
        attempt = len([n for n in os.listdir(trial_dir) if n.startswith("attempt-")]) + 1
        log_path = os.path.join(trial_dir, "attempt-{}.log".format(attempt))
        argv = self.command(arch_path, result_path, progress_path)
        with no_space_as_error(log_path), open(log_path, "wb") as log:
            log.write(("$ " + " ".join(shlex.quote(a) for a in argv) + "\n").encode("utf-8"))
            log.flush()
            returncode = run_process_group(argv, log, self.timeout_s, log_path, stop_dir=trial_dir)
        try:
            if returncode != 0:
                raise EvaluationError("exit code {} (log {})".format(returncode, log_path))
            return read_accuracy(result_path)
        except EvaluationError as exc:
            if disk_nearly_full(trial_dir):
                # The likely cause, and no result of the trial: the search stops, the trial runs again on --resume.
                raise disk_full(trial_dir, "the training command failed: {}".format(exc)) from None
            raise


STOP_POLL_S = 0.2


def run_process_group(argv: List[str], log: Any, timeout_s: Optional[float], log_path: str,
                      stop_dir: Optional[str] = None) -> int:
    """Run ``argv`` in a process group of its own and return its exit code.  On a timeout, an
    error, a signal to this process (SIGTERM, Ctrl-C) or a stop request in ``stop_dir``
    (``TrialStopped``) the whole group ends with it, so no grandchild (a shell's child, a data
    loader) is left training beside a resumed search."""
    try:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    except OSError as exc:
        raise EvaluationError("cannot run {}: {}".format(argv[0], exc)) from None
    failed = []  # type: List[OSError]
    copier = threading.Thread(target=copy_capped, args=(process.stdout, log, LOG_HEAD_BYTES, LOG_TAIL_BYTES, failed),
                              daemon=True)
    copier.start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while True:
            wait_s = STOP_POLL_S if deadline is None else min(STOP_POLL_S, max(0.0, deadline - time.monotonic()))
            try:
                returncode = process.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                pass
            if stop_requested(stop_dir):
                log.write(b"\n[dfseg: stopped early by the search; process group ended]\n")
                raise TrialStopped("stopped by the search") from None
            if deadline is not None and time.monotonic() >= deadline:
                raise EvaluationError("timed out after {} s (log {})".format(timeout_s, log_path)) from None
    finally:
        # One place ends the group, whatever ended the wait (a finish, a timeout, a signal to us): also
        # what a finished command left running in the background.
        end_process_group(process)
        copier.join(timeout=10.0)
        process.stdout.close()
    if failed:
        with no_space_as_error(log_path):
            raise failed[0]
    return returncode


LOG_HEAD_BYTES = 8 << 20  # of a trial's output, the first 8 MiB and the last 1 MiB are kept
LOG_TAIL_BYTES = 1 << 20


def copy_capped(stream: Any, log: Any, head: int = LOG_HEAD_BYTES, tail: int = LOG_TAIL_BYTES,
                failed: Optional[List[OSError]] = None) -> None:
    """Copy ``stream`` into ``log`` keeping its first ``head`` and last ``tail`` bytes, so a chatty or
    runaway training command cannot fill the disk; what was left out is counted in the log.  A write
    that fails (a full disk) goes into ``failed`` (raised without it) and ends the copying, but the
    stream is still read to its end so that the command never blocks on a full pipe."""
    try:
        _copy_capped(stream, log, head, tail)
    except OSError as exc:
        if failed is None:
            raise
        failed.append(exc)
        for _ in iter(lambda: stream.read(65536), b""):
            pass


def _copy_capped(stream: Any, log: Any, head: int, tail: int) -> None:
    written, dropped = 0, 0
    kept: Deque[bytes] = collections.deque()
    kept_bytes = 0
    for chunk in iter(lambda: stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536), b""):
        if written < head:
            part = chunk[:head - written]
            log.write(part)
            written += len(part)
            chunk = chunk[len(part):]
        if chunk:
            kept.append(chunk)
            kept_bytes += len(chunk)
            while kept_bytes - len(kept[0]) >= tail:
                dropped += len(kept[0])
                kept_bytes -= len(kept.popleft())
    if kept:
        data = b"".join(kept)
        dropped += max(0, len(data) - tail)
        if dropped:
            log.write("\n[dfseg: {} bytes of output left out; the last {} follow]\n".format(dropped, tail).encode())
        log.write(data[-tail:])
    log.flush()


def end_process_group(process: "subprocess.Popen[bytes]", grace_s: float = 5.0) -> None:
    """SIGTERM to ``process``'s group, SIGKILL to what is left after ``grace_s``; reaps the leader."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, signum)
        except (ProcessLookupError, PermissionError):
            break
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _group_alive(process):
            time.sleep(0.05)
        if not _group_alive(process):
            break
    if process.returncode is None:
        process.wait()


def _group_alive(process: "subprocess.Popen[bytes]") -> bool:
    process.poll()  # reap the leader, or the group would look alive through its zombie
    try:
        os.killpg(process.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class ReplayEvaluator:
    """Accuracies known in advance, keyed by canonical architecture."""

    def __init__(self, path: str, accuracy: Optional[Dict[str, float]] = None) -> None:
        self.path = path
        self.accuracy = load_accuracies(path) if accuracy is None else accuracy  # read once, when checked

    def __call__(self, trial: Any, trial_dir: str) -> float:
        try:
            return self.accuracy[trial.arch.dumps()]
        except KeyError:
            raise EvaluationError("{} has no accuracy for {}".format(self.path, trial.arch.short())) from None


class ArrayEvaluator:
    """Accuracy by candidate row: for synthetic landscapes where every candidate's accuracy is known."""

    def __init__(self, accuracy: Sequence[float]) -> None:
        self.accuracy = accuracy

    def __call__(self, trial: Any, trial_dir: str) -> float:
        return float(self.accuracy[trial.index])


def load_accuracies(path: str) -> Dict[str, float]:
    """Read ``arch -> accuracy`` from CSV (header with ``arch`` and ``accuracy``) or JSON.

    JSON may be a list of {"arch": ..., "accuracy": ...} (front.json's format), an object with a
    "trials" list of those, or an object mapping arch strings to accuracies.  An arch is a preset
    name, a short form or canonical JSON (string or object).
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise UserError("{}: cannot read accuracies ({})".format(path, exc.strerror)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError("{}: not a UTF-8 text file; accuracies are CSV (arch,accuracy) or JSON".format(path)) from None
    rows = []  # type: List[Any]
    if path.endswith(".json") or text.lstrip().startswith(("[", "{")):
        data = parse_json(text, path)
        if isinstance(data, dict) and isinstance(data.get("trials"), list):
            data = data["trials"]
        if isinstance(data, dict):
            rows = [(str(i + 1), arch, acc) for i, (arch, acc) in enumerate(data.items())]
        elif isinstance(data, list):
            for i, item in enumerate(data):
                if not isinstance(item, dict) or "arch" not in item:
                    raise UserError('{}: item {} must be an object with "arch" and "accuracy"'.format(path, i))
                rows.append(("item {}".format(i), item["arch"], item.get("accuracy")))
        else:
            raise UserError("{}: expected a list or an object of accuracies".format(path))
    else:
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "arch" not in reader.fieldnames or "accuracy" not in reader.fieldnames:
            raise UserError("{}: CSV needs a header with columns arch and accuracy, got {!r}".format(
                path, reader.fieldnames))
        for line, row in enumerate(reader, start=2):
            if row.get("accuracy") in (None, ""):
                continue  # failed trials in a trials.csv have no accuracy
            rows.append(("line {}".format(line), row["arch"], row["accuracy"]))
    out = {}  # type: Dict[str, float]
    for where, arch_value, acc_value in rows:
        try:
            arch = Arch.from_json(arch_value) if isinstance(arch_value, dict) else Arch.parse(str(arch_value))
        except ArchError as exc:
            raise UserError("{} {}: bad arch: {}".format(path, where, exc)) from None
        try:
            accuracy = float(acc_value)
        except (TypeError, ValueError):
            raise UserError("{} {}: accuracy {!r} is not a number".format(path, where, acc_value)) from None
        if not math.isfinite(accuracy):
            raise UserError("{} {}: accuracy {!r} is not finite".format(path, where, acc_value))
        out[arch.dumps()] = accuracy
    if not out:
        raise UserError("{}: no accuracies found".format(path))
    return out
