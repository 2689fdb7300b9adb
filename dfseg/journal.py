"""The one append-only JSONL journal of everything resumable (a search's trials, a latency table's
measured parts): one JSON object per line, fsync'd before the call returns, state rebuilt by replay.

A crash can at worst tear the last line; reading drops such a line and truncates it away before
appending again, so the next record starts on a line of its own and no finished record is ever
lost; an append that fails (a full disk) is cut back off at once.  Any other unreadable content (a line that is not a JSON object, binary bytes) is refused with
the file's name, never discarded.  A lock stops two processes from writing the same journal.  What a record must hold is its
user's to check (``dfseg.search.study``, ``dfseg.bench.table_run``).  Device side: Python 3.6.
"""

import fcntl
import json
import os
from typing import Any, Dict, List, Sequence, Tuple

from .errors import UserError
from .fileio import DiskFullError, no_space_as_error


class JournalError(UserError):
    """The journal is unreadable, locked, or belongs to a different run."""


def _torn_record(line: bytes) -> bool:
    """A prefix of a record as ``append_many`` writes it: ``json.dumps`` of an object, ASCII only."""
    return line.startswith(b"{") and all(32 <= byte < 127 for byte in bytearray(line))


def read_records(path: str) -> Tuple[List[Dict[str, Any]], int]:
    """Every complete record of the journal at ``path`` (none when it does not exist) and the length
    of the bytes that hold them; what follows is a torn record.  Takes no lock and writes nothing, so
    a run can check its journal before any work starts."""
    if not os.path.exists(path):
        return [], 0
    with open(path, "rb") as handle:
        data = handle.read()
    records = []
    offset = 0
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if number == len(lines):
            # What follows the last newline was never completed (each record is written with its
            # newline in one write).  It is a crash's torn record only if it starts as ours do;
            # anything else is a foreign file that must not be cut away unseen.
            if line.strip() and not _torn_record(line):
                raise _unreadable(path, number, "no record of dfseg's")
            return records, offset
        if line.strip():
            try:
                record = json.loads(line.decode("utf-8"))
                if not isinstance(record, dict):
                    raise ValueError("a JSON {}, not an object".format(type(record).__name__))
            except (ValueError, RecursionError) as exc:
                raise _unreadable(path, number, str(exc)) from None
            records.append(record)
        offset += len(line) + 1
    return records, offset


def _unreadable(path: str, number: int, reason: str) -> JournalError:
    return JournalError("{} line {}: unreadable journal record ({}); the file was edited, corrupted or is not "
                        "dfseg's: restore it, or delete it to start over".format(path, number, reason))


class Journal:
    def __init__(self, path: str) -> None:
        self.path = path
        self.lock_path = path + ".lock"
        self._lock = None  # type: Any
        self._handle = None  # type: Any

    def exists(self) -> bool:
        return os.path.exists(self.path) and os.path.getsize(self.path) > 0

    def open(self) -> List[Dict[str, Any]]:
        """Lock the journal, read every complete record, and get ready to append."""
        with no_space_as_error(self.path):  # a disk without room for the journal's or its lock's name
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            lock = open(self.lock_path, "a")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise JournalError("{} is in use by another dfseg process (lock {}); wait for it to finish or "
                               "write to another output".format(self.path, self.lock_path)) from None
        self._lock = lock
        records, good_bytes = read_records(self.path)
        # Unbuffered: a failed append leaves nothing queued that closing the file would write later.
        try:
            with no_space_as_error(self.path):
                self._handle = open(self.path, "ab", buffering=0)
        except DiskFullError:
            self.close()
            raise
        if self._handle.tell() != good_bytes:
            # Drop a torn last line so the next record starts on a line of its own.
            self._handle.truncate(good_bytes)
            self._handle.seek(good_bytes)
            os.fsync(self._handle.fileno())
        return records

    def append(self, record: Dict[str, Any]) -> None:
        self.append_many([record])

    def append_many(self, records: Sequence[Dict[str, Any]]) -> None:
        """Append ``records`` with one fsync: after a crash each is there whole or is a torn last line."""
        if self._handle is None:
            raise RuntimeError("journal is not open")
        data = memoryview("".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode("utf-8"))
        fd = self._handle.fileno()
        end = os.fstat(fd).st_size  # the lock makes this process the only writer
        try:
            with no_space_as_error(self.path, "what was journalled before is kept; the run resumes from it"):
                while data:
                    data = data[os.write(fd, data):]
                os.fsync(fd)
        except BaseException:
            # A full disk (or a signal) between two writes: cut the records back off, so the journal
            # ends on a whole record (shrinking a file needs no space).
            try:
                os.ftruncate(fd, end)
            except OSError:
                pass
            raise

    def remove(self) -> None:
        """Delete the journal (its run is complete) and release the lock."""
        if os.path.exists(self.path):
            os.unlink(self.path)
        lock_path = self.lock_path if self._lock is not None else None
        self.close()
        if lock_path is not None and os.path.exists(lock_path):
            os.unlink(lock_path)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._lock is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
