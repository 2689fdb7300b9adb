"""The one calibration reader: real images in, preprocessed batches out, for every INT8 path (ONNX
Runtime's static Q/DQ quantizer in ``dfseg.precision``, TensorRT 8.x's entropy calibrator in
``dfseg.backends.tensorrt.calibrator``).

Sources: a folder of images (searched recursively), a video file (frames sampled evenly), or a
Cityscapes-format root (``leftImg8bit/train/*/*_leftImg8bit.png``, else ``val``).  Every frame goes
through ``dfseg.preprocess.preprocess`` at the network's input size, exactly as at inference.

Device side: Python 3.6, no torch; cv2 is imported lazily.
"""

import os
from typing import Any, Iterator, List, Optional, Tuple

import numpy as np

from .errors import UserError
from .preprocess import preprocess
from .sizes import Size

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")


def _cv2() -> Any:
    try:
        import cv2  # type: ignore
    except ImportError:
        raise UserError("reading calibration images needs OpenCV: pip install 'opencv-python-headless<5' "
                        "(JetPack: sudo apt install python3-opencv)") from None
    return cv2


def image_files(source: str) -> List[str]:
    """Image paths of a folder or Cityscapes root, sorted (so calibration is reproducible)."""
    for split in ("train", "val"):
        city = os.path.join(source, "leftImg8bit", split)
        if os.path.isdir(city):
            found = _walk_images(city, suffix="_leftImg8bit.png")
            if found:
                return found
    return _walk_images(source)


def require_images(source: str, name: str = "calibration source") -> List[str]:
    """``image_files(source)``, or a UserError naming ``name`` and ``source`` when there are none."""
    files = image_files(source)
    if not files:
        raise UserError("{} {}: no images ({}) found; pass a folder of images, a video or a Cityscapes root".format(
            name, source, ", ".join(IMAGE_EXTENSIONS)))
    return files


def _open_video(cv2: Any, source: str) -> Any:
    from .opencv_log import native_stderr_silenced

    with native_stderr_silenced():  # OpenCV's AVI parser prints its complaint about a damaged file itself
        return cv2.VideoCapture(source)


def _frame_count(cv2: Any, capture: Any, source: str) -> int:
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    if total <= 0:
        raise UserError("calibration source {}: OpenCV cannot read frames from this video".format(source))
    return total


def check_video(source: str) -> None:
    """A UserError when OpenCV reads no frames from the calibration video ``source`` (damaged, empty): said
    before a graph or an engine is built, as ``calibration_frames`` would say it while calibrating."""
    cv2 = _cv2()
    capture = _open_video(cv2, source)
    try:
        _frame_count(cv2, capture, source)
    finally:
        capture.release()


def check_readable(files: List[str], limit: int) -> None:
    """A UserError naming the first of the ``limit`` files calibration would read (``evenly_spaced``) whose
    header OpenCV does not recognise (an empty file, text named .png): said before a graph or an engine is
    built.  OpenCV without ``haveImageReader`` (older than 3.4.?) skips the check."""
    known = getattr(_cv2(), "haveImageReader", None)
    for index in evenly_spaced(len(files), limit) if known else ():
        if not known(files[index]):
            raise UserError("calibration image {}: OpenCV cannot decode it; remove it from the folder or convert "
                            "it".format(files[index]))


def _walk_images(root: str, suffix: str = "") -> List[str]:
    found = []
    for directory, _, names in os.walk(root):
        for name in names:
            if name.lower().endswith(IMAGE_EXTENSIONS) and name.endswith(suffix):
                found.append(os.path.join(directory, name))
    return sorted(found)


def evenly_spaced(count: int, limit: int) -> List[int]:
    """``limit`` indices spread over ``range(count)`` (all of them when count <= limit)."""
    if count <= limit:
        return list(range(count))
    step = count / float(limit)
    return [int(i * step) for i in range(limit)]


def calibration_frames(source: str, limit: int) -> Iterator[np.ndarray]:
    """BGR uint8 frames from ``source`` (folder, Cityscapes root or video), at most ``limit``."""
    if not source or not os.path.exists(source):
        raise UserError("calibration source {!r}: not found; pass a folder of images, a video or a Cityscapes "
                        "root".format(source))
    cv2 = _cv2()
    if os.path.isfile(source):
        if not source.lower().endswith(VIDEO_EXTENSIONS):
            raise UserError("calibration source {}: not a video ({}); pass a folder of images or a video".format(
                source, ", ".join(VIDEO_EXTENSIONS)))
        capture = _open_video(cv2, source)
        try:
            total = _frame_count(cv2, capture, source)
            for index in evenly_spaced(total, limit):
                capture.set(cv2.CAP_PROP_POS_FRAMES, index)
                ok, frame = capture.read()
                if ok:
                    yield frame
        finally:
            capture.release()
        return
    files = require_images(source)
    for index in evenly_spaced(len(files), limit):
        frame = cv2.imread(files[index], cv2.IMREAD_COLOR)
        if frame is None:
            raise UserError("calibration image {}: OpenCV cannot decode it".format(files[index]))
        yield frame


class CalibrationFeeder:
    """Preprocessed NCHW float32 batches for the calibrator, one ``next_batch()`` at a time."""

    def __init__(self, source: str, shape: Tuple[int, ...], limit: int = 500) -> None:
        if len(shape) != 4 or shape[1] != 3:
            raise UserError("calibration needs a 1x3xHxW (or Nx3xHxW) input, the model's is {}".format(shape))
        self.shape = tuple(int(d) for d in shape)
        self.size = Size(self.shape[3], self.shape[2])
        self._frames = calibration_frames(source, limit)
        self.batches_served = 0

    def next_batch(self) -> Optional[np.ndarray]:
        """The next batch (``shape``), or None when the source is exhausted (a partial last batch is dropped)."""
        frames = []
        for frame in self._frames:
            frames.append(preprocess(frame, self.size)[0])
            if len(frames) == self.shape[0]:
                self.batches_served += 1
                return np.ascontiguousarray(np.stack(frames), dtype=np.float32)
        return None
