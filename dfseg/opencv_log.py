"""OpenCV's and FFmpeg's own log lines kept off stderr: the one place the commands (``cli.common.run_command``)
and the Python API (``Model.stream``) quiet them.  Their lines would surround our one-line errors with
theirs, can show a stream's URL, and a library that prints uninvited breaks its caller's output; dfseg
says what went wrong itself (UserError, ``end_reason``).

A user's own ``OPENCV_LOG_LEVEL`` or ``OPENCV_FFMPEG_LOGLEVEL`` wins.  When each takes effect:

- ``OPENCV_LOG_LEVEL`` is read when cv2 is imported (4.x) or at its first log line (4.1); a cv2 imported
  before this call is quieted through ``cv2.utils.logging.setLogLevel`` where the binding has it.
- ``OPENCV_FFMPEG_LOGLEVEL`` (OpenCV >= 4.5) is read when the process opens its first FFmpeg capture,
  and never again: a capture opened before this call leaves FFmpeg at its own level (``AV_LOG_ERROR``,
  OpenCV 4.1's fixed level too).

What no log level reaches (OpenCV's own AVI parser writes to file descriptor 2 directly) is dropped by
``native_stderr_silenced`` around opening a file: live sources and the int8 calibration video use it.

Device side: Python 3.6, no torch; cv2 is never imported here.
"""

import contextlib
import os
import sys
import threading
from typing import Iterator, Optional

SILENT = "OFF"
FFMPEG_QUIET = "-8"  # AV_LOG_QUIET


def quiet_opencv() -> None:
    """Silence OpenCV's logging and FFmpeg's (through OpenCV), unless the user set their levels."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", FFMPEG_QUIET)
    if os.environ.setdefault("OPENCV_LOG_LEVEL", SILENT) != SILENT:
        return  # the user's level
    cv2 = sys.modules.get("cv2")
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is not None and hasattr(logging, "setLogLevel"):  # imported already: it has read the variable
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)


# Who is inside native_stderr_silenced, process-wide: descriptor 2 is the process's, and the captures of two
# streams (API threads) may reopen their files at once and leave in any order.  The first one in saves the
# descriptor and the last one out restores it; each restoring its own saved copy would leave the process's
# stderr on /dev/null whenever they overlap without nesting.
class _Silenced:
    lock = threading.Lock()
    depth = 0  # callers inside
    saved: Optional[int] = None  # the process's descriptor 2 meanwhile


@contextlib.contextmanager
def native_stderr_silenced(silence: bool = True) -> Iterator[None]:
    """With ``silence``, what C code writes to the process's stderr (file descriptor 2) meanwhile is
    dropped.  OpenCV's own AVI parser, the backend a damaged file falls through to when FFmpeg
    refuses it, prints its complaint ("Unexpected element...") there directly, past every log level
    (OPENCV_LOG_LEVEL): the caller says what went wrong instead, in its one line.  Used only around
    opening a file (before the run, or to replay it): Python's sys.stderr writes to the same
    descriptor, so a line printed in those milliseconds (by any thread) would be dropped too.
    Thread-safe: overlapping uses keep descriptor 2 silenced until the last one ends."""
    entered = silence and _silence_enter()
    try:
        yield
    finally:
        if entered:
            _silence_leave()


def _silence_enter() -> bool:
    """Descriptor 2 onto /dev/null (or already there for another caller); False where there is none to
    silence (closed).  A sys.stderr of None still has C code writing to descriptor 2, so it is silenced."""
    with _Silenced.lock:
        if _Silenced.depth == 0:
            try:
                sys.stderr.flush()
            except (AttributeError, OSError, ValueError):
                pass
            try:
                saved = os.dup(2)
            except OSError:
                return False
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                try:
                    os.dup2(devnull, 2)
                finally:
                    os.close(devnull)
            except OSError:
                os.close(saved)
                return False
            _Silenced.saved = saved
        _Silenced.depth += 1
        return True


def _silence_leave() -> None:
    with _Silenced.lock:
        _Silenced.depth -= 1
        if _Silenced.depth == 0 and _Silenced.saved is not None:
            saved, _Silenced.saved = _Silenced.saved, None
            try:
                os.dup2(saved, 2)
            finally:
                os.close(saved)
