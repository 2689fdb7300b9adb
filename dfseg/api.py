"""The Python API: ``model = dfseg.load(path)``, then ``classmap = model(bgr_frame)``.

One frame in, one uint8 class map (Cityscapes trainIds) out, at the frame's own size, through the
same runner and ``Segmenter`` as ``dfseg-run`` and ``dfseg-eval``.  Bad input raises the CLI's
one-line ``dfseg.errors.UserError``; nothing here prints.

Device side: Python 3.6, no torch.
"""

import os
from typing import Optional, Sequence

import numpy as np

from .backends import get_runner, resolve_backend
from .backends.base import BaseRunner
from .build_config import BuildConfig
from .cityscapes import NUM_CLASSES, class_names, palette_bgr
from .errors import UserError
from .live.render import Renderer
from .live.segmenter import Segmenter
from .sizes import Size, parse_size

__all__ = ["Model", "load", "class_names", "palette_bgr", "colorize", "overlay"]


class Model:
    """An active segmentation model; a context manager whose ``close()`` releases the runtime."""

    def __init__(self, runner: BaseRunner, size: Optional[Size] = None, note: Optional[str] = None) -> None:
        self.runner = runner
        self.note = note  # why ``auto`` chose this backend, for a caller that wants to say so
        runner.activate()
        try:
            self.segmenter = Segmenter(runner, size)
        except BaseException:
            runner.deactivate()
            raise

    @property
    def backend(self) -> str:
        return self.runner.name

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        """Class map (uint8 trainIds, frame's height x width) of a BGR uint8 frame."""
        if not isinstance(bgr, np.ndarray) or bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
            raise UserError("frame: expected a BGR uint8 array of shape (height, width, 3), got {}".format(
                _describe(bgr)))
        if not self.runner.is_active:
            raise UserError("model: already closed; load it again")
        return self.segmenter.segment(bgr)

    def close(self) -> None:
        if self.runner.is_active:
            self.runner.deactivate()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


def load(model: str, backend: str = "auto", precision: Optional[str] = None, size: Optional[str] = None,
         threads: Optional[int] = None, providers: Optional[Sequence[str]] = None) -> Model:
    """Load an ONNX file or TensorRT engine on ``backend`` (``auto`` chooses as ``dfseg-run`` does).

    ``size`` is ``WIDTHxHEIGHT`` as on the command line; ``precision`` as ``--precision``.
    """
    if not os.path.isfile(model):
        raise UserError("{}: no such model file; give an .onnx file or a TensorRT engine".format(model))
    config = BuildConfig(precision=precision).checked() if precision is not None else None
    choice = resolve_backend(backend, model)
    runner = get_runner(choice.backend, model, providers=list(providers) if providers else None, threads=threads,
                        config=config)
    return Model(runner, parse_size(size) if size else None, choice.note)


def colorize(classmap: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """BGR colour mask of a class map in the Cityscapes palette."""
    return Renderer(mode="mask", legend=False, num_classes=num_classes).colorize(classmap)


def overlay(bgr: np.ndarray, classmap: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """The frame blended with its colour mask, as ``dfseg-run --overlay blend`` draws it."""
    return Renderer(mode="blend", legend=False, num_classes=num_classes).render(bgr, classmap)


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return "{} array of shape {}".format(value.dtype, value.shape)
    return type(value).__name__
