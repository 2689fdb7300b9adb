"""Durable file writes.  Every file dfseg produces goes through here so that an interrupted run
never leaves a half-written result behind.  Device side: Python 3.6."""

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Type, Union

from .errors import UserError


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it is fsync'd and renamed onto ``path``,
    so readers see the old file or the new one, never a mix.  On error it is removed."""
    directory = os.path.dirname(os.path.abspath(path))
    suffix = "-" + os.path.basename(path)
    with no_space_as_error(path):  # a disk without room for one more name (inodes, directory blocks)
        os.makedirs(directory, exist_ok=True)
        _remove_orphans(directory, suffix)
        # The pid in the name tells a later write whose temporary file a killed process left behind.
        handle, temp = tempfile.mkstemp(prefix="{}{}-".format(TEMP_PREFIX, os.getpid()), suffix=suffix, dir=directory)
    os.close(handle)
    try:
        with no_space_as_error(path):
            try:
                yield temp
            except DiskFullError as exc:
                # A writer that is itself atomic (one atomic_output inside another) names our temporary
                # file; the user knows only the final name.
                if exc.path != temp:
                    raise
                raise disk_full(path, exc.detail) from None
            with open(temp, "rb") as stream:
                os.fsync(stream.fileno())
        # mkstemp creates 0600 (and a writer may have replaced the file): results are meant to be
        # shared like any file the user writes.
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    _fsync_directory(directory)


TEMP_PREFIX = ".tmp-"
# Left free on a disk that a stream of unknown length (a video) is written to: enough for the writer
# to finish the file it has started (an index, a trailer) once dfseg stops feeding it.
DISK_RESERVE_BYTES = 1 << 20


class DiskFullError(UserError):
    """A write ran out of space (ENOSPC, EDQUOT, or below the reserve a stream needs to finish)."""

    def __init__(self, message: str, path: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.detail = detail


NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def no_space_as_error(path: str, detail: str = "") -> Iterator[None]:
    """Turn ENOSPC and EDQUOT raised while writing ``path`` into the one-line ``DiskFullError``."""
    try:
        yield
    except OSError as exc:
        if exc.errno in NO_SPACE_ERRNOS:
            raise disk_full(path, detail) from None
        raise


def claim_output(path: str) -> int:
    """An exclusive lock on the file (created empty if missing) or folder at ``path``, held until the
    returned descriptor is closed (or the process dies), so that two runs never write one output and
    no run writes what another reads (``share_input``)."""
    return _lock(path, exclusive=True, refusal="another dfseg process is writing this output (or reading it); "
                                               "wait for it to finish or choose another output")


def share_input(path: str, what: str) -> int:
    """A shared lock on the existing file or folder at ``path`` that a run reads, held until the returned
    descriptor is closed: readers share it, and a writer's ``claim_output`` is refused meanwhile, as this
    is while a writer holds its claim."""
    return _lock(path, exclusive=False, refusal="another dfseg process is writing this {}; wait for it to "
                                                "finish".format(what))


def _lock(path: str, exclusive: bool, refusal: str) -> int:
    import fcntl  # POSIX only, as the rest of dfseg's locking

    if os.path.isdir(path) or not exclusive:
        flags = os.O_RDONLY
    else:
        flags = os.O_WRONLY | os.O_CREAT
    try:
        handle = os.open(path, flags, 0o666)
    except OSError as exc:
        raise UserError("{}: cannot {} there ({})".format(path, "write" if exclusive else "read",
                                                          exc.strerror)) from None
    try:
        fcntl.flock(handle, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError:
        os.close(handle)
        raise UserError("{}: {}".format(path, refusal)) from None
    return handle


def free_bytes(directory: str) -> Optional[int]:
    """Bytes an unprivileged writer may still use in ``directory``'s filesystem (None: unknown)."""
    try:
        stats = os.statvfs(directory)
    except (OSError, AttributeError):
        return None
    return stats.f_bavail * stats.f_frsize


def disk_nearly_full(directory: str) -> bool:
    """Whether less than ``DISK_RESERVE_BYTES`` is left where ``directory`` lies: after another program
    failed writing there without saying why (a training command), the likely reason."""
    free = free_bytes(directory)
    return free is not None and free < DISK_RESERVE_BYTES


def disk_full(path: str, detail: str = "") -> DiskFullError:
    """The one message for a full disk: the path, what is left, and the way out."""
    free = free_bytes(os.path.dirname(os.path.abspath(path)))
    left = "" if free is None else ", {:.1f} MB left".format(free / 1e6)
    return DiskFullError("{}: the disk is full{}{}; free space (or write elsewhere) and run again".format(
        path, left, "; " + detail if detail else ""), path, detail)


def _remove_orphans(directory: str, suffix: str) -> None:
    """Delete temporary files for the same target left by processes that no longer run (kill -9)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(TEMP_PREFIX) and name.endswith(suffix)):
            continue
        try:
            pid = int(name[len(TEMP_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue  # not one of ours
        if pid == os.getpid() or _process_exists(pid):
            continue
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process: alive
    return True


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_output``)."""
    with atomic_output(path) as temp, open(temp, "wb") as stream:
        stream.write(data)


def write_image_atomic(path: str, image: Any) -> None:
    """Encode ``image`` (a NumPy array) in the format ``path``'s extension names and write it atomically:
    ``cv2.imwrite`` would leave a truncated image under the final name when the disk fills."""
    import cv2

    ok, encoded = cv2.imencode(os.path.splitext(path)[1], image)
    if not ok:
        raise UserError("{}: OpenCV cannot encode this image format; name a .png or .jpg file".format(path))
    write_atomic(path, encoded.tobytes())


def write_json_atomic(path: str, value: Any, indent: int = 2) -> None:
    write_atomic(path, (json.dumps(value, indent=indent, sort_keys=False) + "\n").encode("utf-8"))


def parse_json(data: Union[str, bytes], where: str, error: Type[UserError] = UserError) -> Any:
    """JSON from a file's bytes or text, or ``error`` naming ``where``: binary content, malformed
    JSON (with line and column) and nesting too deep for Python's parser are all one-line errors."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error("{}: not a UTF-8 text file (byte {} is 0x{:02x}); expected JSON text".format(
                where, exc.start, data[exc.start])) from None
    try:
        return json.loads(data)
    except RecursionError:
        raise error("{}: JSON nested too deeply to read; expected a flat JSON document".format(where)) from None
    except ValueError as exc:
        raise error("{}: malformed JSON at line {} column {}: {}".format(
            where, getattr(exc, "lineno", "?"), getattr(exc, "colno", "?"), getattr(exc, "msg", exc))) from None


def read_json(path: str, what: str, hint: str = "", error: Type[UserError] = UserError) -> Any:
    """``path``'s JSON (see ``parse_json``); an unreadable file names ``what`` it should be, then ``hint``."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise error("{}: cannot read {} ({}){}".format(path, what, exc.strerror, hint)) from None
    return parse_json(data, path, error)


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


def check_outputs(outputs: Iterable[Tuple[str, Optional[str]]], inputs: Sequence[Optional[str]] = (),
                  folders: Sequence[str] = (), outside_inputs: bool = False) -> None:
    """Refuse, before any work starts, an output that is an input, is named twice, or cannot be
    written (a missing or read-only place, a file where a folder must be); with ``outside_inputs``
    also one inside an input folder (where a command that reads the folder would meet its output).

    ``outputs`` are (option, path) pairs; empty paths are skipped.  ``folders`` names the options
    whose path is a folder to write into rather than a file.
    """
    existing_inputs = [path for path in inputs if path and os.path.exists(path)]
    seen = {}  # type: Dict[str, str]
    for option, where, path, real in _named_paths(outputs):
        _claim(seen, where, real)
        for source in existing_inputs:
            source_real = os.path.realpath(source)
            if real == source_real or (os.path.exists(path) and os.path.samefile(path, source)):
                raise UserError("{}: is the input {}; writing it would destroy the input, so name another "
                                "output".format(where, source))
            if outside_inputs and os.path.isdir(source_real) and real.startswith(source_real.rstrip(os.sep) + os.sep):
                raise UserError("{}: lies inside the input folder {}; name an output outside it".format(where, source))
        check_writable(where, path, folder=option in folders)


def check_distinct(outputs: Iterable[Tuple[str, Optional[str]]]) -> None:
    """Refuse two of ``outputs`` ((option, path) pairs; empty paths skipped) that name one file."""
    seen = {}  # type: Dict[str, str]
    for _, where, _, real in _named_paths(outputs):
        _claim(seen, where, real)


def _claim(seen: Dict[str, str], where: str, real: str) -> None:
    """Record output ``where`` at ``real`` in ``seen`` (real path -> output), refusing a path named before."""
    if real in seen:
        raise UserError("{}: named twice (also {}); give each output its own path".format(where, seen[real]))
    seen[real] = where


def _named_paths(outputs: Iterable[Tuple[str, Optional[str]]]) -> Iterator[Tuple[str, str, str, str]]:
    """(option, ``option path`` as messages name it, path, real path) of each output that has a path."""
    for option, path in outputs:
        if path:
            yield option, "{} {}".format(option, path).strip(), path, os.path.realpath(path)


def check_writable(where: str, path: str, folder: bool = False) -> None:
    """Raise UserError unless ``path`` (a file, or with ``folder`` a folder) can be created or
    replaced: tried by creating and removing a scratch file in the nearest existing folder."""
    target = os.path.abspath(path)
    if os.path.isdir(target) and not folder:
        raise UserError("{}: is a folder; name a file to write".format(where))
    if not folder and path.endswith(("/", os.sep)):
        # abspath drops the slash, so the checks below would pass a path no file can be written to
        raise UserError("{}: ends in {!r}, which names a folder; name a file to write".format(where, path[-1]))
    if os.path.exists(target) and not os.path.isdir(target) and folder:
        raise UserError("{}: is a file; name a folder to write into".format(where))
    probe = target if folder else os.path.dirname(target)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise UserError("{}: {} is a file, not a folder; choose another output path".format(where, probe))
    try:
        handle, scratch = tempfile.mkstemp(prefix=".tmp-write-check-", dir=probe)
    except OSError as exc:
        raise UserError("{}: cannot write in {} ({}); choose a writable place".format(
            where, probe, exc.strerror or exc)) from None
    os.close(handle)
    os.unlink(scratch)


def make_folders(path: str) -> List[str]:
    """``os.makedirs(path, exist_ok=True)``, returning the folders it created, deepest first, for
    ``remove_empty_folders`` when the run that wanted them fails before writing anything there."""
    created = []  # type: List[str]
    folder = os.path.abspath(path)
    while not os.path.exists(folder):
        created.append(folder)
        folder = os.path.dirname(folder)
    os.makedirs(path, exist_ok=True)
    return created


def remove_empty_folders(created: Sequence[str]) -> None:
    """Remove the folders ``make_folders`` created that are still empty (deepest first); a folder
    that holds anything, this run's or someone else's, stays."""
    for folder in created:
        try:
            os.rmdir(folder)
        except OSError:
            return


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
