"""Drawing the prediction: overlay modes, the class legend and the status line.

Modes: ``blend`` (colours over the frame with ``alpha``), ``mask`` (colours only) and ``side``
(frame and colours side by side, twice as wide).  The legend lists the classes present in the
current frame, in Cityscapes colours, as many as fit the frame's height.

Device side: Python 3.6, numpy; OpenCV imported lazily.
"""

from typing import List, Optional, Sequence

import numpy as np

from ..cityscapes import class_names, palette_bgr
from ..errors import UserError

OVERLAY_MODES = ("blend", "mask", "side")


class Renderer:
    def __init__(
        self,
        mode: str = "blend",
        alpha: float = 0.5,
        legend: bool = True,
        num_classes: int = 19,
        names: Optional[Sequence[str]] = None,
    ) -> None:
        if mode not in OVERLAY_MODES:
            raise UserError("--overlay {!r}: choose one of {}".format(mode, ", ".join(OVERLAY_MODES)))
        if not 0.0 <= alpha <= 1.0:
            raise UserError("--alpha {}: must be between 0 and 1".format(alpha))
        self.mode = mode
        self.alpha = alpha
        self.legend = legend
        self.num_classes = num_classes
        self.names = list(names) if names is not None else class_names(num_classes)
        self.palette = palette_bgr(num_classes)
        # A 256-entry colour table for cv2.LUT (ids without a colour are black).
        self.lut = np.zeros((1, 256, 3), np.uint8)
        self.lut[0, :len(self.palette)] = self.palette[:256]
        self._colours = None  # type: Optional[np.ndarray]  reused frame to frame

    def colorize(self, classes: np.ndarray) -> np.ndarray:
        """An (h, w) class map -> (h, w, 3) BGR colours; ids without a colour are black."""
        return self.lut[0][classes]

    def _colour_buffer(self, classes: np.ndarray) -> np.ndarray:
        """The colours of ``classes`` in a buffer reused from frame to frame (one table lookup)."""
        import cv2

        shape = classes.shape + (3,)
        if self._colours is None or self._colours.shape != shape:
            self._colours = np.empty(shape, np.uint8)
        classes = np.ascontiguousarray(classes, dtype=np.uint8)
        try:  # OpenCV's user colour map: the lookup in one SIMD pass
            cv2.applyColorMap(classes, self.lut.reshape(256, 1, 3), self._colours)
        except (cv2.error, TypeError):  # an OpenCV without user colour maps
            cv2.LUT(cv2.cvtColor(classes, cv2.COLOR_GRAY2BGR), self.lut, self._colours)
        return self._colours

    def render(self, image: np.ndarray, classes: np.ndarray, status: Optional[str] = None) -> np.ndarray:
        """The annotated frame: overlay, legend (classes present), status line.  ``blend`` draws into
        ``image`` itself (no copy per frame); the other modes return a new image."""
        import cv2

        colours = self._colour_buffer(classes)
        if self.mode == "blend":
            out = cv2.addWeighted(image, 1.0 - self.alpha, colours, self.alpha, 0.0, dst=image)
        elif self.mode == "mask":
            out = colours.copy()
        else:
            out = np.concatenate([image, colours], axis=1)
        if self.legend:
            # Classes present on a 2x2 grid (a quarter of the pixels: the legend need not count 1-pixel specks).
            grid = np.ascontiguousarray(classes[::2, ::2], dtype=np.uint8)
            counts = cv2.calcHist([grid], [0], None, [256], [0, 256]).ravel()
            present = np.flatnonzero(counts[: self.num_classes])
            draw_legend(out, [int(c) for c in present], self.names, self.palette)
        if status:
            draw_status(out, status)
        return out


def _text_scale(height: int) -> float:
    return max(0.3, min(0.6, height / 900.0))


def draw_legend(out: np.ndarray, class_ids: List[int], names: Sequence[str], palette: np.ndarray) -> None:
    """Colour swatches and names in the top-left corner, on a dark translucent panel (in place)."""
    import cv2

    height = out.shape[0]
    scale = _text_scale(height)
    row = max(8, int(round(26 * scale)))
    fits = max(0, (height - 2 * row) // row)  # leave room for the status line
    shown = class_ids[:fits]
    if not shown:
        return
    (text_width, _), _ = cv2.getTextSize(max((names[c] for c in shown), key=len), cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    panel_w = min(out.shape[1], row + 6 + text_width + 6)
    panel_h = min(height, row * len(shown) + 4)
    region = out[:panel_h, :panel_w]
    region[:] = (region.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darken for contrast
    for i, class_id in enumerate(shown):
        top = 2 + i * row
        colour = tuple(int(v) for v in palette[class_id])
        cv2.rectangle(out, (3, top + 1), (row - 1, top + row - 2), colour, -1)
        cv2.putText(
            out, names[class_id], (row + 4, top + row - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
            cv2.LINE_AA,
        )


def draw_status(out: np.ndarray, text: str) -> None:
    """One line of text on a black bar along the bottom edge (in place)."""
    import cv2

    height = out.shape[0]
    scale = _text_scale(height)
    bar = max(10, int(round(28 * scale)))
    out[height - bar:, :] = 0
    cv2.putText(out, text, (4, height - bar // 4 - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
