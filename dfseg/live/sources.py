"""Frame sources chosen by URI, jetson-inference style.

=====================================  ==============================================
``csi://0``                            MIPI CSI camera through GStreamer (nvarguscamerasrc)
``/dev/video0``, ``v4l2://0``, ``0``   V4L2 / USB camera (``--camera 0`` is the same)
``rtsp://host:554/stream``             network stream (FFmpeg or GStreamer backend of OpenCV)
``clip.mp4``, ``file://clip.mp4``      video file: every frame, in order
``frames/``, ``photo.png``             image folder (sorted by name) or a single image
=====================================  ==============================================

Live sources (cameras, streams) are retried when they stop delivering frames and marked ``live``
so the pipeline drops stale frames instead of queueing them; files never lose a frame.  A network
stream that stalls (still connected, no frame for ``STREAM_TIMEOUT_S``) counts as stopped too; an
OpenCV without open/read timeout parameters (before 4.5.4) keeps its FFmpeg backend's fixed 30 s.
An ``rtsp://`` stream that does not open is one question to its server (``rtsp_auth``), so that
refused credentials say so instead of "cannot open it".

Device side: Python 3.6, no torch; OpenCV is imported when a source opens.
"""

import glob
import os
import re
import sys
import time
from typing import Any, Callable, List, NamedTuple, Optional, Tuple

import numpy as np

from ..errors import UserError
from ..opencv_log import native_stderr_silenced
from ..uri import file_path, redact
from .rtsp_auth import credentials_problem

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")
STREAM_TIMEOUT_S = 10.0  # rtsp:// and other network streams: longest wait to open, or for a frame
LOOP_FOREVER = -1  # loops (--input-loop): replay a file or folder forever; the least value allowed
PROBE_TIMEOUT_S = 5.0  # asking an RTSP server why a stream did not open (rtsp_auth), after the open failed


class Frame(NamedTuple):
    index: int  # position in the source (files: exact; live: counts delivered frames)
    image: np.ndarray  # BGR uint8, H x W x 3
    name: str  # a stem for per-frame outputs (image folders keep the input's name)
    captured: float  # time.monotonic() at capture, for latency


class Source:
    """Base class: ``read()`` returns the next ``Frame`` or None at the end; ``close()`` releases."""

    live = False
    description = "source"

    def __init__(self) -> None:
        self.frames_read = 0
        self.fps = None  # type: Optional[float]
        self.loops = 0  # files and folders: play again this many times; -1 forever

    def open(self) -> None:
        """Acquire the device or file; raises UserError with the fix when that is impossible."""

    def read(self) -> Optional[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file."""

    def _replay(self) -> bool:
        """Whether to play the file or folder once more (``loops``, -1 forever); counts one replay off."""
        if self.loops == 0:
            return False
        if self.loops > 0:
            self.loops -= 1
        return True

    def _frame(self, image: np.ndarray, name: Optional[str] = None) -> Frame:
        frame = Frame(self.frames_read, _as_bgr(image), name or "{:06d}".format(self.frames_read), time.monotonic())
        self.frames_read += 1
        return frame

    def __enter__(self) -> "Source":
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class CaptureSource(Source):
    """A ``cv2.VideoCapture``: files (not live) and cameras or streams (live, reconnected).

    A live capture that stops delivering frames is reopened up to ``reconnect_attempts`` times,
    ``reconnect_delay`` seconds apart; then the source ends and ``end_reason`` says why.
    ``timeout_s`` bounds opening and each read where OpenCV supports it (network streams).
    """

    def __init__(
        self,
        target: Any,
        description: str,
        live: bool,
        api: Optional[int] = None,
        reconnect_attempts: int = 5,
        reconnect_delay: float = 1.0,
        log: Optional[Callable[[str], None]] = None,
        settings: Optional[List[Tuple[str, float]]] = None,
        timeout_s: Optional[float] = None,
    ) -> None:
        super().__init__()
        self.target = target
        self.description = description
        self.live = live
        self.api = api
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_delay = reconnect_delay
        self.log = log or _log
        self.capture = None  # type: Any
        self.end_reason = None  # type: Optional[str]
        self.reconnects = 0
        self.settings = settings or []  # (cv2 property name, value) applied after each open
        self.timeout_s = timeout_s

    def _open_capture(self) -> Any:
        import cv2

        capture = self._open_with_timeouts(cv2) if self.timeout_s else None
        if capture is None:
            with native_stderr_silenced(not self.live):
                capture = cv2.VideoCapture(self.target) if self.api is None else cv2.VideoCapture(self.target, self.api)
        if not capture.isOpened():
            capture.release()
            return None
        for name, value in self.settings:
            capture.set(getattr(cv2, name), value)
        return capture

    def _open_with_timeouts(self, cv2: Any) -> Any:
        """A capture opened with open/read timeouts, or None where this OpenCV cannot take them."""
        names = ("CAP_PROP_OPEN_TIMEOUT_MSEC", "CAP_PROP_READ_TIMEOUT_MSEC")
        if not all(hasattr(cv2, name) for name in names):
            return None
        api = self.api
        if api is None:
            # A backend refuses to open with parameters it does not know (GStreamer's before OpenCV 4.7),
            # so they go to FFmpeg only; an OpenCV without FFmpeg opens the stream as it always did.
            registry = getattr(cv2, "videoio_registry", None)
            if registry is None or not registry.hasBackend(cv2.CAP_FFMPEG):
                return None
            api = cv2.CAP_FFMPEG
        milliseconds = int(round(float(self.timeout_s or 0) * 1000))
        params = [getattr(cv2, names[0]), milliseconds, getattr(cv2, names[1]), milliseconds]
        try:  # VideoCapture(target, api, params): OpenCV >= 4.5.2; the timeouts: >= 4.5.4
            return cv2.VideoCapture(self.target, api, params)
        except (TypeError, cv2.error):
            return None

    def open(self) -> None:
        if self.capture is not None:
            return  # already open (opening twice would restart a file)
        self.capture = self._open_capture()
        if self.capture is None:
            raise UserError("{}: {}".format(self.description, self._open_failure()))
        import cv2

        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else None

    def _open_failure(self) -> str:
        """Why the capture did not open: refused credentials where an RTSP server says so (OpenCV
        cannot tell), else what to check."""
        if isinstance(self.target, str) and self.target.lower().startswith("rtsp://"):
            problem = credentials_problem(self.target, min(PROBE_TIMEOUT_S, self.timeout_s or PROBE_TIMEOUT_S))
            if problem:
                return problem
        return "cannot open it" + _open_hint(self.description, self.live)

    def read(self) -> Optional[Frame]:
        while True:
            if self.capture is not None:
                ok, image = self.capture.read()
                if ok and image is not None:
                    return self._frame(image)
            if not self.live:
                if self.frames_read > 0 and self._replay():
                    self.close()
                    self.capture = self._open_capture()
                    if self.capture is not None:
                        continue
                self.end_reason = "end of file"
                return None
            if not self._reconnect():
                return None

    def _reconnect(self) -> bool:
        if self.capture is not None:
            self.capture.release()
            self.capture = None
        for attempt in range(1, self.reconnect_attempts + 1):
            self.log("{}: no frame; reconnecting ({}/{})".format(self.description, attempt, self.reconnect_attempts))
            time.sleep(self.reconnect_delay)
            self.capture = self._open_capture()
            if self.capture is not None:
                self.reconnects += 1
                return True
        self.end_reason = "{} disconnected; gave up after {} reconnection attempts".format(
            self.description, self.reconnect_attempts
        )
        self.log(self.end_reason)
        return False

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


class ImageFolderSource(Source):
    """Every image in a folder (sorted by name), or one image file; each keeps its file name."""

    def __init__(self, paths: List[str], description: str) -> None:
        super().__init__()
        self.paths = paths
        self.description = description
        self.end_reason = None  # type: Optional[str]
        self.position = 0
        self._first = None  # type: Optional[np.ndarray]  # decoded by open(), served by the first read()

    def open(self) -> None:
        """Every file must be an image OpenCV reads (its header is checked, the first image decoded),
        so that a damaged one is an error before the outputs are made and the model is loaded; an
        image damaged after its header still ends the run when its turn comes."""
        import cv2

        if self._first is not None or self.frames_read:
            return
        first = _read_image(cv2, self.paths[0])
        known = getattr(cv2, "haveImageReader", None)  # reads the signature only; older OpenCV: skipped
        for path in self.paths[1:] if known else ():
            if not known(path):
                raise _unreadable(path)
        self._first = first

    def read(self) -> Optional[Frame]:
        import cv2

        if self.position >= len(self.paths) and self._replay():
            self.position = 0
        if self.position >= len(self.paths):
            self.end_reason = "end of folder"
            return None
        path = self.paths[self.position]
        self.position += 1
        image = self._first if self._first is not None else _read_image(cv2, path)
        self._first = None
        return self._frame(image, os.path.splitext(os.path.basename(path))[0])


def _read_image(cv2: Any, path: str) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise _unreadable(path)
    return image


def _unreadable(path: str) -> UserError:
    return UserError("{}: cannot read this image; remove it from the folder or convert it".format(path))


def open_source(
    uri: str,
    width: Optional[int] = None,
    height: Optional[int] = None,
    framerate: int = 30,
    reconnect_attempts: int = 5,
    reconnect_delay: float = 1.0,
    loops: int = 0,
) -> Source:
    """The source for ``uri`` (see the module table); not yet opened.  Raises UserError with the fix.

    ``loops`` replays a file or folder that many more times (-1: forever), e.g. to demo a stream.
    """
    source = _make_source(uri, width, height, framerate, reconnect_attempts, reconnect_delay)
    if loops and source.live:
        raise UserError("--input-loop: {} is live; only files and folders can loop".format(source.description))
    source.loops = loops
    return source


def _make_source(
    uri: str,
    width: Optional[int],
    height: Optional[int],
    framerate: int,
    reconnect_attempts: int,
    reconnect_delay: float,
) -> Source:
    text = str(uri).strip()
    if text.startswith("csi://"):
        sensor = _device_number(text[len("csi://"):], text)
        require_gstreamer(text)
        pipeline = csi_pipeline(sensor, width or 1280, height or 720, framerate)
        return CaptureSource(pipeline, text, True, _cv2_const("CAP_GSTREAMER"), reconnect_attempts, reconnect_delay)
    if text.startswith("v4l2://") or text.startswith("/dev/video") or text.isdigit():
        number = text[len("v4l2://"):] if text.startswith("v4l2://") else text
        target = number if number.startswith("/dev/") else _device_number(number, text)
        if isinstance(target, str) and not os.path.exists(target):
            raise UserError("{}: no such camera device; list cameras with `ls /dev/video*` (v4l2-ctl --list-devices)".format(text))
        settings = [("CAP_PROP_FPS", float(framerate))]
        if width and height:
            settings += [("CAP_PROP_FRAME_WIDTH", float(width)), ("CAP_PROP_FRAME_HEIGHT", float(height))]
        return CaptureSource(
            target, text, True, _cv2_const("CAP_V4L2"), reconnect_attempts, reconnect_delay, settings=settings
        )
    if re.match(r"^(rtsp|rtmp|http|https)://", text):
        # The URL opens the stream as given; only its redacted form is ever shown (messages, status page).
        return CaptureSource(text, redact(text), True, None, reconnect_attempts, reconnect_delay,
                             timeout_s=STREAM_TIMEOUT_S)
    path = file_path(text)
    if os.path.isdir(path):
        images = sorted(p for p in glob.glob(os.path.join(path, "*")) if p.lower().endswith(IMAGE_EXTENSIONS))
        if not images:
            raise UserError("{}: folder holds no images ({})".format(path, " ".join(IMAGE_EXTENSIONS)))
        return ImageFolderSource(images, path)
    if not os.path.exists(path):
        raise UserError(
            "{}: no such file or folder; inputs are csi://N, /dev/videoN, rtsp://..., a video file, "
            "an image or an image folder".format(text)
        )
    if path.lower().endswith(IMAGE_EXTENSIONS):
        return ImageFolderSource([path], path)
    return CaptureSource(path, path, False, None, 0, 0.0)


def csi_pipeline(sensor: int, width: int, height: int, framerate: int) -> str:
    """The GStreamer pipeline for a Jetson CSI camera, ending in BGR frames for OpenCV."""
    return (
        "nvarguscamerasrc sensor-id={} ! video/x-raw(memory:NVMM), width={}, height={}, framerate={}/1 ! "
        "nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! "
        "appsink drop=true max-buffers=1 sync=false".format(sensor, width, height, framerate)
    )


def opencv_has_gstreamer() -> bool:
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


def require_gstreamer(uri: str) -> None:
    import cv2

    if not opencv_has_gstreamer():
        raise UserError(
            "{}: this OpenCV ({} from {}) was built without GStreamer, which CSI cameras need. On a Jetson use "
            "JetPack's OpenCV (sudo apt-get install python3-opencv nvidia-opencv; pip uninstall "
            "opencv-python-headless in this environment), or use a USB camera as /dev/video0".format(
                uri, cv2.__version__, os.path.dirname(cv2.__file__)
            )
        )


def _device_number(text: str, uri: str) -> int:
    if not text.isdigit():
        raise UserError("{}: expected a device number, e.g. csi://0 or v4l2://0".format(uri))
    return int(text)


def _cv2_const(name: str) -> Optional[int]:
    import cv2

    return getattr(cv2, name, None)


def _open_hint(description: str, live: bool) -> str:
    if description.startswith(("rtsp://", "rtmp://", "http")):
        return "; check the URL and that the stream is reachable from here"
    if live:
        return "; check that the camera is connected and not used by another program"
    return "; is it a video file OpenCV can decode (mp4, avi, mkv)?"


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    return image


def _log(message: str) -> None:
    print(redact(message), file=sys.stderr, flush=True)
