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

Device side: Python 3.6, no torch; cv2 is never imported here.
"""

import os
import sys

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
