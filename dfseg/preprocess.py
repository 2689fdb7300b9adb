"""Input preprocessing and output upsampling around an exported DF network.

The networks take NCHW float32 input prepared as the authors' release does: BGR channel order,
mean subtracted, multiplied by 0.008.  The d8 variant predicts at 1/8 resolution and is enlarged
x8 with nearest neighbour outside the network (``upsample_nearest``).

Device side: Python 3.6, numpy only.  OpenCV is used for resizing when it is installed (imported
lazily); otherwise a numpy bilinear resize with the same pixel-centre convention is used.
"""

from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from .errors import UserError
from .sizes import Size, SizeLike, as_size

# Per-channel means in B, G, R order.
IMAGENET_MEAN_BGR = (104.0, 117.0, 123.0)
CITYSCAPES_MEAN_BGR = (72.0, 83.0, 73.0)
INPUT_SCALE = 0.008

def resize_bilinear(image: np.ndarray, size: SizeLike) -> np.ndarray:
    """Resize an HxWxC (or HxW) image to ``size`` (width, height) with bilinear interpolation.

    Uses OpenCV (INTER_LINEAR) when installed, else ``resize_bilinear_numpy``; the result is float32.
    """
    target = as_size(size)
    height, width = image.shape[:2]
    if (width, height) == (target.width, target.height):
        return image.astype(np.float32)
    try:
        import cv2  # optional: much faster than the numpy path
    except ImportError:
        return resize_bilinear_numpy(image, target)
    return cv2.resize(image, (target.width, target.height), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def resize_bilinear_numpy(image: np.ndarray, size: SizeLike) -> np.ndarray:
    """Bilinear resize in numpy with OpenCV's INTER_LINEAR pixel-centre convention (no antialiasing)."""
    target = as_size(size)
    height, width = image.shape[:2]

    def coordinates(n_out: int, n_in: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(n_out, dtype=np.float64) + 0.5) * (float(n_in) / n_out) - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        low = np.floor(pos).astype(np.int64)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, (pos - low).astype(np.float32)

    y0, y1, fy = coordinates(target.height, height)
    x0, x1, fx = coordinates(target.width, width)
    src = image.astype(np.float32)
    # Broadcast the weights over the channel axis when there is one.
    extra = (None,) * (src.ndim - 2)
    fy = fy[(slice(None), None) + extra]
    fx = fx[(None, slice(None)) + extra]
    top = src[y0][:, x0] * (1 - fx) + src[y0][:, x1] * fx
    bottom = src[y1][:, x0] * (1 - fx) + src[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def _blob_from_image() -> Optional[Callable[..., np.ndarray]]:
    """OpenCV's ``dnn.blobFromImage`` where this OpenCV has it (4.x and 5.x do), else None."""
    try:
        import cv2  # type: ignore
    except ImportError:
        return None
    return getattr(getattr(cv2, "dnn", None), "blobFromImage", None)


def preprocess(
    bgr_uint8: np.ndarray,
    size: Optional[SizeLike] = None,
    mean_bgr: Sequence[float] = CITYSCAPES_MEAN_BGR,
    scale: float = INPUT_SCALE,
) -> np.ndarray:
    """An HxWx3 BGR image (uint8, as OpenCV reads it) -> a 1x3xHxW float32 network input.

    ``size`` (width, height; ``"720p"`` or ``"1280x720"`` too) resizes first; None keeps the image size.
    Use ``IMAGENET_MEAN_BGR`` for the ImageNet backbones.
    """
    image = np.asarray(bgr_uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise UserError(
            "preprocess: expected an HxWx3 BGR image, got an array of shape {}".format(tuple(image.shape))
        )
    blob = _blob_from_image()
    if blob is not None and image.dtype == np.uint8:
        # One SIMD pass for resize, mean, scale and HWC -> NCHW; equal to the numpy path below.
        target = as_size(size) if size is not None else Size(image.shape[1], image.shape[0])
        return blob(image, float(scale), (target.width, target.height), tuple(float(m) for m in mean_bgr), False,
                    False)
    pixels = image.astype(np.float32) if size is None else resize_bilinear(image, size)
    pixels -= np.asarray(mean_bgr, dtype=np.float32)  # in place: pixels is a fresh float32 array
    pixels *= np.float32(scale)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32)


def upsample_nearest(array: np.ndarray, factor: int = 8, size: Optional[SizeLike] = None) -> np.ndarray:
    """Enlarge the last two axes (height, width) ``factor`` times with nearest neighbour.

    For the d8 variant's 1/8 prediction (logits NxCxhxw or a class map Nxhxw / hxw).  ``size``
    (width, height) crops the result to the input size, undoing the ceil rounding of odd sizes.
    """
    out = np.repeat(np.repeat(np.asarray(array), factor, axis=-2), factor, axis=-1)
    if size is not None:
        target = as_size(size)
        if out.shape[-2] < target.height or out.shape[-1] < target.width:
            raise UserError(
                "upsample_nearest: {}x{} enlarged x{} is {}x{}, smaller than the requested {}".format(
                    array.shape[-1], array.shape[-2], factor, out.shape[-1], out.shape[-2], target
                )
            )
        out = out[..., : target.height, : target.width]
    return out
