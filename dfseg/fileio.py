"""Durable file writes.  Every file dfseg produces goes through here so that an interrupted run
never leaves a half-written result behind.  Device side: Python 3.6."""

import contextlib
import json
import os
import tempfile
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it is fsync'd and renamed onto ``path``,
    so readers see the old file or the new one, never a mix.  On error it is removed."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=directory)
    os.close(handle)
    try:
        # mkstemp creates 0600; results are meant to be shared like any file the user writes.
        os.chmod(temp, 0o666 & ~_umask())
        yield temp
        with open(temp, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    _fsync_directory(directory)


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_output``)."""
    with atomic_output(path) as temp, open(temp, "wb") as stream:
        stream.write(data)


def write_json_atomic(path: str, value: Any, indent: int = 2) -> None:
    write_atomic(path, (json.dumps(value, indent=indent, sort_keys=False) + "\n").encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_directory(directory: str) -> None:
    # The rename itself is durable only once the directory entry is on disk (POSIX only).
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
