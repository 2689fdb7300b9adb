"""One frame in, one class map out: preprocessing, inference on any runner, postprocessing.

``dfseg-run`` calls the three steps from separate pipeline stages; ``dfseg-eval`` calls
``segment``.  Models exported with ``output="classmap"`` carry the argmax in the graph; for
``logits`` models the argmax runs here.  A class map smaller than the frame (the d8 variant, or a
network input smaller than the frame) is enlarged with nearest-neighbour sampling.

Device side: Python 3.6, no torch.
"""

from typing import Collection, Dict, Optional, Sequence

import numpy as np

from ..backends.base import BaseRunner
from ..errors import UserError
from ..preprocess import CITYSCAPES_MEAN_BGR, preprocess, upsample_nearest
from ..sizes import Size

CLASSMAP_OUTPUT = "classmap"
LOGITS_OUTPUT = "logits"
D8_FACTOR = 8


class Segmenter:
    """Wraps an active runner whose single input is NCHW (``input``), preprocessed as in the release."""

    def __init__(self, runner: BaseRunner, size: Optional[Size] = None, mean: Sequence[float] = CITYSCAPES_MEAN_BGR) -> None:
        inputs = runner.input_metadata()
        if len(inputs) != 1:
            raise UserError("{}: a segmentation model has one input, this one has {}".format(runner.name, sorted(inputs)))
        (self.input_name, meta), = inputs.items()
        shape = tuple(meta.shape)
        if len(shape) != 4 or shape[1] not in (3, -1, None):
            raise UserError("{}: input {!r} has shape {}; expected NCHW with 3 channels".format(runner.name, self.input_name, shape))
        if shape[0] not in (1, -1, None):
            raise UserError("{}: input {!r} has shape {}; dfseg feeds one frame at a time: export the model with "
                            "batch size 1".format(runner.name, self.input_name, shape))
        model_height, model_width = shape[2], shape[3]
        dynamic = any(d is None or d < 0 for d in (model_height, model_width))
        if not dynamic and (model_height == 0 or model_width == 0):
            raise UserError("{}: input {!r} has shape {}, no pixels; export the model at a frame size such as "
                            "640x360".format(runner.name, self.input_name, shape))
        self._check_outputs(runner)
        if not dynamic:
            model_size = Size(int(model_width), int(model_height))
            if size is not None and tuple(size) != tuple(model_size):
                raise UserError(
                    "--size {}: the model {} was built for {}; export it again at {} or drop --size".format(
                        size, runner.name, model_size, size
                    )
                )
            size = model_size
        self.runner = runner
        self.size = size  # None: a dynamic model runs at each frame's own size
        self.dtype = np.dtype(meta.dtype)
        self.mean = mean

    @staticmethod
    def _check_outputs(runner: BaseRunner) -> None:
        """The outputs that ``classmap`` would pick from, checked when the model is loaded (before any frame)
        where the runner declares them (``output_shapes``): none, no telling which, or one of the wrong rank."""
        declared = getattr(runner, "output_shapes", None)
        if declared is None:
            return
        shapes = declared()
        if not shapes:
            raise UserError("{}: the model has no outputs; export a segmentation model (dfseg-export MODEL --size "
                            "...)".format(runner.name))
        name = _prediction_output(runner.name, shapes)
        if name != CLASSMAP_OUTPUT and shapes[name]:  # () is a shape the graph does not declare: the first frame tells
            _check_logits_rank(runner.name, shapes[name])

    def prepare(self, bgr: np.ndarray) -> np.ndarray:
        """BGR uint8 frame -> the network's input tensor (resized, mean subtracted, scaled)."""
        size = self.size if self.size is not None else Size(bgr.shape[1], bgr.shape[0])
        return preprocess(bgr, size, mean_bgr=self.mean).astype(self.dtype, copy=False)

    def infer(self, tensor: np.ndarray) -> Dict[str, np.ndarray]:
        return self.runner.infer({self.input_name: tensor}, check_inputs=False)

    def classmap(self, outputs: Dict[str, np.ndarray]) -> np.ndarray:
        """The network's prediction as an (h, w) uint8 map of trainIds, at the network's output size."""
        if CLASSMAP_OUTPUT in outputs:
            classes = np.asarray(outputs[CLASSMAP_OUTPUT])
            classes = classes.reshape(classes.shape[-2:])
            return classes.astype(np.uint8)
        logits = np.asarray(outputs[_prediction_output(self.runner.name, outputs)])
        _check_logits_rank(self.runner.name, logits.shape)
        return np.argmax(logits[0], axis=0).astype(np.uint8)

    @staticmethod
    def to_frame_size(classes: np.ndarray, height: int, width: int) -> np.ndarray:
        """Nearest-neighbour resize of a class map to ``height`` x ``width`` (no new labels invented).

        A 1/8 map of the frame (the d8 variant at the frame's size) is enlarged exactly as the
        release does (each cell x8, cropped); any other ratio is resampled.
        """
        if classes.shape == (height, width):
            return classes
        h, w = classes.shape
        if h == -(-height // D8_FACTOR) and w == -(-width // D8_FACTOR):
            return np.ascontiguousarray(upsample_nearest(classes, D8_FACTOR, Size(width, height)))
        import cv2

        return cv2.resize(classes, (width, height), interpolation=cv2.INTER_NEAREST)

    def segment(self, bgr: np.ndarray) -> np.ndarray:
        """Class map (trainIds, uint8) for ``bgr`` at the frame's own size."""
        classes = self.classmap(self.infer(self.prepare(bgr)))
        return self.to_frame_size(classes, bgr.shape[0], bgr.shape[1])


def _prediction_output(model: str, names: Collection[str]) -> str:
    """Which of the outputs ``names`` holds the prediction: ``classmap``, else ``logits``, else the only one."""
    for name in (CLASSMAP_OUTPUT, LOGITS_OUTPUT):
        if name in names:
            return name
    if len(names) == 1:
        return next(iter(names))
    raise UserError("{}: cannot tell the prediction among outputs {}; export with output 'classmap' or 'logits'".format(
        model, sorted(names)))


def _check_logits_rank(model: str, shape: Sequence[int]) -> None:
    if len(shape) != 4:
        raise UserError("{}: output has shape {}, not N x classes x H x W: is this a segmentation model "
                        "(df1-seg, df2-seg1, ...)?".format(model, tuple(shape)))
