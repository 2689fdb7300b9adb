"""Numbered test frames: four vertical blocks, three palette colours (the base-8 digits of the frame
number, most significant first) and a mid-grey reference, so a frame number 0..511 survives JPEG,
H.264 and chroma subsampling.  Standard library only: the GStreamer test server
(tests/gst_rtsp_server.py) runs under the system Python, which has neither numpy nor OpenCV;
tests/rtsp_server.py wraps these bytes as an image and reads the number back."""

from typing import List, Tuple

# Eight colours far apart (the corners of the RGB cube), BGR.
PALETTE = [(b, g, r) for b in (0, 255) for g in (0, 255) for r in (0, 255)]
PATTERN_BLOCKS = 3
PATTERN_PERIOD = len(PALETTE) ** PATTERN_BLOCKS
REFERENCE_GREY = (128, 128, 128)


def pattern_colours(index: int) -> List[Tuple[int, int, int]]:
    """The BGR colours of frame ``index`` (mod 512), left to right: the three digits, then grey."""
    number = index % PATTERN_PERIOD
    digits = [(number // len(PALETTE) ** (PATTERN_BLOCKS - 1 - i)) % len(PALETTE) for i in range(PATTERN_BLOCKS)]
    return [PALETTE[d] for d in digits] + [REFERENCE_GREY]


def pattern_bgr(index: int, width: int, height: int) -> bytes:
    """Frame ``index`` as packed BGR rows (height x width x 3 bytes); the last block takes the rest."""
    colours = pattern_colours(index)
    step = width // len(colours)
    widths = [step] * (len(colours) - 1) + [width - step * (len(colours) - 1)]
    return b"".join(bytes(colour) * w for colour, w in zip(colours, widths)) * height
