"""Outputs chosen by URI, jetson-inference style.

=========================  =========================================================
``display://0``            a window (needs a display and an OpenCV with a GUI)
``out.mp4``, ``out.avi``   a video file, written under a temporary name and renamed
                           into place when the run ends (also after Ctrl-C)
``frames/``                an image folder: one PNG per frame, written atomically
``http://0.0.0.0:8080``    MJPEG stream plus a status page (``dfseg.live.http``)
``none``                   nothing (headless benchmarking)
=========================  =========================================================

Device side: Python 3.6, no torch; OpenCV imported lazily.
"""

import os
import re
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..errors import UserError
from ..fileio import (
    DISK_RESERVE_BYTES,
    claim_output,
    disk_full,
    free_bytes,
    make_folders,
    remove_empty_folders,
    write_image_atomic,
)
from ..uri import file_path

VIDEO_CODECS = {".avi": "MJPG", ".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v"}
# OpenCV's writers refuse a rate below about 0.005 (0.001 fails at the first frame, after the banner)
MIN_OUTPUT_FPS = 0.01
MAX_OUTPUT_FPS = 1000.0  # output_fps (--output-fps): above any camera's; a container cannot store 1e308


class Sink:
    """Base class: ``write`` gets every rendered frame in order; ``close`` finalises."""

    description = "sink"

    def __init__(self) -> None:
        self.frames_written = 0
        self.quit_requested = False  # a window's close key

    def open(self) -> None:
        """Acquire what the sink needs before the first frame (a port, a window, a lock on the file):
        every refusal is a UserError before any work.  Opening an open sink does nothing, so that
        a command can open its sinks before it loads the model and the pipeline open them again."""

    def write(self, image: np.ndarray, name: str, classes: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finalise the output (closing twice does nothing)."""


class NullSink(Sink):
    description = "none"

    def write(self, image: np.ndarray, name: str, classes: np.ndarray) -> None:
        self.frames_written += 1


class VideoFileSink(Sink):
    """A video file.  Frames go to ``.NAME.partial.EXT`` beside the target; ``close`` renames it."""

    def __init__(self, path: str, fps: float = 30.0) -> None:
        super().__init__()
        extension = os.path.splitext(path)[1].lower()
        if extension not in VIDEO_CODECS:
            raise UserError("{}: unsupported video type; use one of {}".format(path, " ".join(sorted(VIDEO_CODECS))))
        self.path = path
        self.description = path
        self.fps = fps
        self.codec = VIDEO_CODECS[extension]
        directory, base = os.path.split(os.path.abspath(path))
        self.temp_path = os.path.join(directory, ".{}.partial{}".format(os.path.splitext(base)[0], extension))
        self.writer = None  # type: Any
        self.size: Optional[tuple] = None
        self._size_seen = 0
        self._claim = None  # type: Optional[int]
        self._largest_frame = 0  # bytes the file grew by in one frame, at most
        self._created = []  # type: List[str]  # folders open() made, removed again if no frame came

    def open(self) -> None:
        if self._claim is not None:
            return
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            self._created = make_folders(directory)
        except OSError as exc:
            raise UserError("{}: cannot create its folder ({})".format(self.path, exc.strerror)) from None
        try:
            self._claim = claim_output(self.temp_path)  # the writer fills this very file
        except UserError:
            remove_empty_folders(self._created)
            raise UserError("{}: another dfseg process is writing this video; wait for it to finish or choose "
                            "another output".format(self.path)) from None

    def write(self, image: np.ndarray, name: str, classes: np.ndarray) -> None:
        import cv2

        size = (image.shape[1], image.shape[0])
        if self.writer is None:
            fourcc = cv2.VideoWriter_fourcc(*self.codec)
            self.writer = cv2.VideoWriter(self.temp_path, fourcc, float(self.fps), size)
            if not self.writer.isOpened():
                raise UserError("{}: OpenCV cannot write {} video here; try an .avi output".format(self.path, self.codec))
            self.size = size
        if size != self.size:
            # A video has one frame size (an image folder may not): later frames are fitted to the first.
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(image)
        self.frames_written += 1
        self._check_space()

    def _check_space(self) -> None:
        """OpenCV's writer reports no failed write: a full disk would end the run with a broken file and
        exit 0.  So the free space is watched, and the video is finished while its writer can still
        write the index and trailer, with a reserve of several frames' worth."""
        try:
            size = os.path.getsize(self.temp_path)
        except OSError:
            return
        self._largest_frame = max(self._largest_frame, size - self._size_seen)
        self._size_seen = size
        free = free_bytes(os.path.dirname(self.temp_path))
        if free is not None and free < max(DISK_RESERVE_BYTES, 8 * self._largest_frame):
            self._finish_incomplete()

    def _finish_incomplete(self) -> None:
        self.writer.release()
        self.writer = None
        base, extension = os.path.splitext(self.path)
        kept = base + ".incomplete" + extension
        os.replace(self.temp_path, kept)
        raise disk_full(self.path, "stopped after {} frames, which are in {}".format(self.frames_written, kept))

    def close(self) -> None:
        try:
            if self.writer is None:
                if self._claim is not None and os.path.exists(self.temp_path) and not self.frames_written:
                    os.unlink(self.temp_path)  # opened, but no frame came
                    remove_empty_folders(self._created)
                return
            self.writer.release()
            self.writer = None
            free = free_bytes(os.path.dirname(self.temp_path))
            if free is not None and free < DISK_RESERVE_BYTES // 16:
                os.unlink(self.temp_path)  # the trailer may be cut: a broken file never takes the final name
                raise disk_full(self.path, "the video could not be finished")
            os.replace(self.temp_path, self.path)
        finally:
            if self._claim is not None:
                os.close(self._claim)
                self._claim = None


class ImageFolderSink(Sink):
    """One image per frame, named after the input frame (``NAME.png``), each written atomically."""

    def __init__(self, directory: str, extension: str = ".png", labels: bool = False) -> None:
        super().__init__()
        self.directory = directory
        self.description = directory
        self.extension = extension
        self.labels = labels  # write the class map (trainIds) instead of the rendered frame
        self._claim = None  # type: Optional[int]
        self._created = []  # type: List[str]  # folders open() made, removed again if no frame came

    def open(self) -> None:
        if self._claim is not None:
            return
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise UserError("{}: exists and is not a folder; name a folder for image output".format(self.directory))
        self._created = make_folders(self.directory)
        try:
            self._claim = claim_output(self.directory)
        except UserError:
            remove_empty_folders(self._created)
            raise

    def write(self, image: np.ndarray, name: str, classes: np.ndarray) -> None:
        write_image_atomic(os.path.join(self.directory, name + self.extension), classes if self.labels else image)
        self.frames_written += 1

    def close(self) -> None:
        if self._claim is not None:
            os.close(self._claim)
            self._claim = None
            if not self.frames_written:  # a run that failed before its first frame leaves no empty folder
                remove_empty_folders(self._created)


class DisplaySink(Sink):
    """An OpenCV window the size of the frame; q, Esc or closing the window ends the run."""

    def __init__(self, title: str = "dfseg", uri: str = "display://0") -> None:
        super().__init__()
        self.title = title
        self.uri = uri  # as the user gave it, for messages
        self.description = "display"
        self.window_open = False

    def open(self) -> None:
        if not opencv_has_gui():
            raise UserError(
                "{}: this OpenCV has no GUI (opencv-python-headless); install opencv-python instead (not "
                "both: they share the cv2 module), or write to http://0.0.0.0:8080, a video file or a folder".format(
                    self.uri)
            )
        problem = display_problem()
        if problem:
            raise UserError("{}: {}; use http://0.0.0.0:8080 on a headless device".format(self.uri, problem))

    def write(self, image: np.ndarray, name: str, classes: np.ndarray) -> None:
        if self.quit_requested:
            return  # the frames still in flight when the user ended the run (a closed window stays closed)
        import cv2

        if not self.window_open:  # opened with the first frame, so it never shows empty
            # GUI_NORMAL: the frame alone, without the toolbar and status bar of Qt builds.
            cv2.namedWindow(self.title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
            self.window_open = True
        # The GUI runs its events (drawing, keys, the close button) inside OpenCV's GUI calls, and
        # imshow would open a window closed meanwhile again: so the check before it as well.
        if self._closed_by_user(cv2):
            self.quit_requested = True
            return
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27) or self._closed_by_user(cv2):
            self.quit_requested = True
        self.frames_written += 1

    def _closed_by_user(self, cv2: Any) -> bool:
        # A closed window reads as not visible (Win32, GTK in newer OpenCV; -1 where the GUI
        # cannot tell), and with Qt closing the last window takes the GUI down, so asking raises.
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) == 0
        except cv2.error:
            return True

    def close(self) -> None:
        if not self.window_open:
            return
        import cv2

        self.window_open = False
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)  # lets the GUI take the window down now
        except cv2.error:
            pass  # already closed by the user


class HttpSink(Sink):
    """MJPEG stream and status page; ``status`` supplies the numbers the page shows."""

    def __init__(self, host: str, port: int, status: Callable[[], Dict[str, Any]], quality: int = 80,
                 token: Optional[str] = None) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.status = status
        self.quality = quality
        self.token = token
        self.server = None  # type: Any
        self.description = "http://{}:{}".format(host, port)
        # Where the address line and the open-server warning go (the API: nowhere, and a Python warning).
        self.log = _stderr  # type: Callable[[str], None]
        self.warn = _stderr  # type: Callable[[str], None]

    def open(self) -> None:
        if self.server is not None:
            return
        from .http import TOKEN_ENV, MjpegServer, is_loopback

        self.server = MjpegServer(self.host, self.port, self.status, self.token)
        self.port = self.server.port
        self.description = "http://{}:{}".format(self.host, self.port)
        if self.token is None and not is_loopback(self.host):
            self.warn("dfseg-run: warning: {} serves the camera view and status page to every host that can reach "
                      "port {}; require a token with --http-token-file FILE or {}".format(
                          self.description, self.port, TOKEN_ENV))
        self.server.start()
        access = " (token required: add ?token=TOKEN)" if self.token is not None else ""
        self.log("dfseg-run: streaming on {} (page) and {}/stream.mjpg{}".format(
            self.description, self.description, access))

    def write(self, image: np.ndarray, name: str, classes: np.ndarray) -> None:
        import cv2

        ok, encoded = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), self.quality])
        if ok:
            self.server.broadcaster.publish(encoded.tobytes())
        self.frames_written += 1

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def opencv_has_gui() -> bool:
    import cv2

    info = cv2.getBuildInformation()
    match = re.search(r"^\s*GUI:\s*(\S+)", info, re.MULTILINE)
    return bool(match) and match.group(1).upper() != "NONE"


def has_display() -> bool:
    return display_problem() is None


def display_problem() -> Optional[str]:
    """Why no window can open here, or None.  An X display named by $DISPLAY must also open: a
    stale $DISPLAY (an ssh login without X forwarding, a stopped X server) would otherwise abort
    the process inside OpenCV's GUI (Qt) at the first window."""
    name = os.environ.get("DISPLAY")
    if not name:
        return None if os.environ.get("WAYLAND_DISPLAY") else "no display ($DISPLAY is not set)"
    if x11_display_opens(name) is False:
        return "cannot open the X display {!r} ($DISPLAY): no X server there, or not allowed".format(name)
    return None


def x11_display_opens(name: str) -> Optional[bool]:
    """Whether Xlib can open display ``name``; None where there is no libX11 to ask."""
    import ctypes
    import ctypes.util

    try:
        xlib = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    except OSError:
        return None
    xlib.XOpenDisplay.restype = ctypes.c_void_p
    xlib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    xlib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    display = xlib.XOpenDisplay(name.encode())
    if not display:
        return False
    xlib.XCloseDisplay(display)
    return True


def open_sink(uri: str, fps: float, status: Callable[[], Dict[str, Any]], http_token: Optional[str] = None) -> Sink:
    """The sink for ``uri`` (see the module table); not yet opened.  ``http_token`` protects an HTTP output."""
    text = str(uri).strip()
    if text in ("none", "null", "null://"):
        return NullSink()
    if text.startswith("display://"):
        return DisplaySink(uri=text)
    if text.startswith("http://"):
        match = re.match(r"^http://([^:/]+|\[[^\]]+\]):(\d+)/?$", text)
        if not match or not 0 <= int(match.group(2)) <= 65535:
            raise UserError("{}: expected http://HOST:PORT, e.g. http://0.0.0.0:8080".format(text))
        return HttpSink(match.group(1).strip("[]"), int(match.group(2)), status, token=http_token)
    if "://" in text and not text.startswith("file://"):
        raise UserError(
            "{}: unknown output; use display://0, http://HOST:PORT, a video file (.mp4/.avi), "
            "a folder (frames/) or none".format(text)
        )
    path = file_path(text)
    extension = os.path.splitext(path.rstrip("/"))[1].lower()
    if extension in VIDEO_CODECS:
        return VideoFileSink(path, fps)
    if path.endswith("/") or os.path.isdir(path) or not extension:
        return ImageFolderSink(path.rstrip("/") or ".")
    raise UserError(
        "{}: unknown output type {!r}; use a video file ({}) or a folder ending in /".format(
            text, extension, " ".join(sorted(VIDEO_CODECS))
        )
    )


def default_output() -> str:
    """A window where one can open (a display that opens, an OpenCV with a GUI), else nothing."""
    return "display://0" if opencv_has_gui() and has_display() else "none"


OUTPUT_FOLDERS = ("output folder", "--save-labels")  # the names output_paths gives folders


def check_frame_names(source: Any, sinks: List[Sink]) -> None:
    """A folder output names each frame after its input file (``NAME.png``): two input images of one name
    (a.png and a.jpg) would be written to one file, the second over the first.  A UserError naming both,
    before any work, where an image folder feeds a folder output."""
    paths = getattr(source, "paths", None) or []
    if not any(isinstance(sink, ImageFolderSink) for sink in sinks):
        return
    seen = {}  # type: Dict[str, str]
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        if name in seen:
            raise UserError("{} and {}: a folder output names each frame after its input file, so both would be "
                            "written to {}.png; rename one".format(seen[name], path, name))
        seen[name] = path


def output_paths(sinks: List[Sink]) -> List[Tuple[str, Optional[str]]]:
    """(name, path) of every sink that writes files, for ``fileio.check_outputs`` before a run."""
    paths = []  # type: List[Tuple[str, Optional[str]]]
    for sink in sinks:
        if isinstance(sink, VideoFileSink):
            paths.append(("output", sink.path))
        elif isinstance(sink, ImageFolderSink):
            paths.append(("--save-labels" if sink.labels else "output folder", sink.directory))
    return paths
