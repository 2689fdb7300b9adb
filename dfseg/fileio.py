"""Durable file writes.  Every file dfseg produces goes through here so that an interrupted run
never leaves a half-written result behind.  Device side: Python 3.6."""

import json
import os
import tempfile
from typing import Any


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a mix."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    _fsync_directory(directory)


def write_json_atomic(path: str, value: Any, indent: int = 2) -> None:
    write_atomic(path, (json.dumps(value, indent=indent, sort_keys=False) + "\n").encode("utf-8"))


def _fsync_directory(directory: str) -> None:
    # The rename itself is durable only once the directory entry is on disk (POSIX only).
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
