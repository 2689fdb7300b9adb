"""The Python API: ``model = dfseg.load(path)``, then ``classmap = model(bgr_frame)``, or
``for result in model.stream(source): ...``.

One frame in, one uint8 class map (Cityscapes trainIds) out, at the frame's own size, through the
same runner and ``Segmenter`` as ``dfseg-run`` and ``dfseg-eval``; ``stream`` runs any input of
``dfseg-run`` through its threaded ``live.pipeline.Pipeline`` (same frame policies, same outputs).
Bad input raises the CLI's one-line ``dfseg.errors.UserError``; nothing here prints, nor lets OpenCV
or FFmpeg print (``opencv_log``).

Device side: Python 3.6, no torch.
"""

import contextlib
import logging
import os
import warnings
import weakref
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Union

import numpy as np

from .backends import get_runner, resolve_backend
from .backends.base import BaseRunner
from .backends.onnxrt import MAX_THREADS, MIN_THREADS
from .build_config import BuildConfig
from .cityscapes import NUM_CLASSES, class_names, palette_bgr
from .errors import UserError, check_number, check_whole_number
from .fileio import check_outputs
from .live.http import check_token, run_status
from .live.pipeline import MAX_QUEUE_SIZE, MIN_QUEUE_SIZE, Pipeline, RunResult, check_latency, follow_source_fps
from .live.render import Renderer
from .live.segmenter import Segmenter
from .live.sinks import (
    MAX_OUTPUT_FPS,
    MIN_OUTPUT_FPS,
    OUTPUT_FOLDERS,
    HttpSink,
    NullSink,
    Sink,
    check_frame_names,
    open_sink,
    output_paths,
)
from .live.sources import LOOP_FOREVER, CaptureSource, Source, open_source
from .opencv_log import quiet_opencv
from .sizes import Size, parse_size
from .uri import local_inputs

__all__ = ["Model", "Result", "Stream", "load", "class_names", "palette_bgr", "colorize", "overlay"]


class Result(NamedTuple):
    """One frame of ``Model.stream``: times are ``time.monotonic()`` seconds."""

    index: int  # position in the source (files: exact; live sources count delivered frames)
    frame: np.ndarray  # BGR uint8, as captured
    classmap: np.ndarray  # uint8 trainIds, the frame's height x width
    captured: float
    classified: float  # the class map was ready
    latency_ms: float  # capture -> class map
    name: str  # the frame's stem (image folders keep the input's name)
    image: Optional[np.ndarray]  # the annotated frame the outputs got; None without outputs


class Stream:
    """An iterator of ``Result``s over a running pipeline; a context manager.  Leaving the loop early,
    an exception, ``close()`` (its own or the model's) or Ctrl-C stops the pipeline's threads, releases the source and finalises
    the outputs."""

    def __init__(self, pipeline: Pipeline, handle_signals: bool = False) -> None:
        self.pipeline = pipeline
        self._frames = pipeline.frames(handle_signals=handle_signals)
        self._started = False
        self._finished = False

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> Result:
        self._started = True
        try:
            output = next(self._frames)
        except BaseException:
            self._finished = True
            raise
        frame = output.frame
        return Result(frame.index, frame.image, output.classmap, frame.captured, output.classified,
                      (output.classified - frame.captured) * 1000.0, frame.name, output.image)

    def latency(self) -> Dict[str, Optional[Dict[str, float]]]:
        """So far, per span (``classmap``: capture -> class map, ``output``: capture -> written to the
        outputs): p50, p95, p99, mean in ms and the frame count, or None before the first frame."""
        return self.pipeline.stats.latency()

    @property
    def summary(self) -> Optional[RunResult]:
        """Frames, drops, FPS, latency and end reason once the stream has ended or was closed, else None."""
        return self.pipeline.result() if self._finished else None

    def close(self) -> None:
        if self._finished:  # ended or closed already (also by its model's close())
            return
        if not self._started:  # the generator never ran: the source opened by stream() is released here
            self.pipeline.source.close()
        self._frames.close()
        self._finished = True

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if not self._finished:
            self.close()


class Model:
    """An active segmentation model; a context manager whose ``close()`` releases the runtime."""

    def __init__(self, runner: BaseRunner, size: Optional[Size] = None, note: Optional[str] = None) -> None:
        self.runner = runner
        self.note = note  # why ``auto`` chose this backend, for a caller that wants to say so
        self._streams = weakref.WeakSet()  # type: weakref.WeakSet[Stream]  ended by close()
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
        _check_frame(bgr)
        self._check_open()
        return self.segmenter.segment(bgr)

    def stream(self, source: Union[str, int], outputs: Sequence[str] = (), overlay: str = "blend",
               alpha: float = 0.5, legend: bool = True, max_frames: Optional[int] = None, loops: int = 0,
               queue_size: int = 2, camera_size: str = "1280x720", camera_fps: int = 30,
               output_fps: Optional[float] = None, http_token: Optional[str] = None, latency: str = "default") -> Stream:
        """Segment every frame of ``source`` (what ``dfseg-run`` takes: a camera number, ``csi://0``,
        ``/dev/video0``, ``rtsp://...``, a video file, an image or a folder) through ``dfseg-run``'s
        threaded pipeline: live sources drop stale frames, files and folders keep every frame.

        ``outputs`` are ``dfseg-run``'s (a video file, ``folder/``, ``http://HOST:PORT``,
        ``display://0``), fed from the same loop and drawn as ``overlay``/``alpha``/``legend`` say.
        ``latency="low"`` (live sources): the network always takes the newest frame and nothing waits
        behind a backlog, so each class map is as fresh as the network allows (``dfseg-run --latency low``);
        files and folders keep every frame whatever the policy.
        The source and the outputs are checked now (UserError); the work starts with the iteration.
        OpenCV's and FFmpeg's own log lines are silenced (``opencv_log.quiet_opencv``: your own
        ``OPENCV_LOG_LEVEL``/``OPENCV_FFMPEG_LOGLEVEL`` win; FFmpeg's level is fixed by the process's first capture).
        """
        self._check_open()
        quiet_opencv()  # before the first capture opens: FFmpeg reads its level then
        check_latency(latency)
        if max_frames is not None:
            check_whole_number("max_frames", max_frames, 1)
        check_whole_number("loops", loops, LOOP_FOREVER)
        check_whole_number("queue_size", queue_size, MIN_QUEUE_SIZE, MAX_QUEUE_SIZE)
        if output_fps is not None:
            check_number("output_fps", output_fps, MIN_OUTPUT_FPS, MAX_OUTPUT_FPS)
        check_whole_number("camera_fps", camera_fps, 1)  # dfseg-run --camera-fps's bounds
        if outputs is None:
            outputs = ()
        if isinstance(outputs, (str, bytes, os.PathLike)):  # would be taken one letter per output
            raise UserError("outputs: expected a list of outputs, e.g. outputs=[{!r}], got {!r}".format(
                str(outputs), outputs))
        if http_token is not None:  # as strong as dfseg-run's token; "" would leave the view open to anyone
            if not isinstance(http_token, str):
                raise UserError("http_token: expected a str, got {}".format(_describe(http_token)))
            http_token = check_token(http_token, "http_token")
        # The drawing options are checked whether or not an output draws (a typo is an error either way).
        renderer = Renderer(overlay, check_number("alpha", alpha, 0.0, 1.0), legend=legend)
        size = parse_size(camera_size)
        live_source = open_source(str(source), size.width, size.height, camera_fps, loops=loops)
        if isinstance(live_source, CaptureSource):
            live_source.log = _quiet  # reconnection notes would print; a program reads end_reason instead
        running = {}  # type: Dict[str, Any]
        model_name = os.path.basename(getattr(self.runner, "model_path", "") or self.backend)

        def status() -> Dict[str, Any]:
            return run_status(running.get("pipeline"), self.runner, model_name, self.runner.config.precision,
                              live_source.description)

        sinks = [open_sink(uri, output_fps or 30.0, status, http_token=http_token) for uri in outputs]
        for sink in sinks:
            if isinstance(sink, HttpSink):
                sink.log, sink.warn = _quiet, _warn  # a view open to every host is a Python warning, not a print
        check_outputs(output_paths(sinks), inputs=local_inputs(str(source)),
                      folders=OUTPUT_FOLDERS, outside_inputs=True)
        check_frame_names(live_source, sinks)
        drawn = any(not isinstance(sink, NullSink) for sink in sinks)
        if not drawn:
            renderer = None
        live_source.open()  # an input that cannot be opened is an error now, not at the first frame
        try:
            if output_fps is None:
                follow_source_fps(live_source, sinks)
            stream = self.stream_to(live_source, sinks, renderer, queue_size=queue_size, max_frames=max_frames,
                                    status_line=drawn, log=_quiet, latency=latency)
        except BaseException:
            live_source.close()  # the camera or file is not held by a stream that never started
            raise
        running["pipeline"] = stream.pipeline
        return stream

    def stream_to(self, source: Source, sinks: List[Sink], renderer: Optional[Renderer], handle_signals: bool = False,
                  keep_frames: bool = True, **pipeline_options: Any) -> Stream:
        """The ``Stream`` of a ``live.sources.Source`` into ``live.sinks`` objects, built and checked by
        the caller (``stream`` builds them from URIs; ``dfseg-run`` from its options).  With
        ``handle_signals`` SIGINT and SIGTERM end the iteration as ``dfseg-run`` wants; ``keep_frames``
        draws the outputs on a copy so that each ``Result.frame`` is the frame as captured;
        ``pipeline_options`` go to ``live.pipeline.Pipeline``."""
        self._check_open()
        pipeline = Pipeline(source, self.segmenter, renderer, sinks, keep_frames=keep_frames, **pipeline_options)
        stream = Stream(pipeline, handle_signals)
        self._streams.add(stream)
        return stream

    def _check_open(self) -> None:
        if not self.runner.is_active:
            raise UserError("model: already closed; load it again")

    def close(self) -> None:
        """End this model's open streams (as ``Stream.close`` does: threads stopped, source released,
        outputs finalised; their iteration ends), then release the runtime."""
        for stream in list(self._streams):
            stream.close()
        if self.runner.is_active:
            self.runner.deactivate()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


def load(model: str, backend: str = "auto", precision: Optional[str] = None, size: Optional[str] = None,
         threads: Optional[int] = None, providers: Optional[Sequence[str]] = None,
         weights: Optional[str] = None, config: Optional[BuildConfig] = None) -> Model:
    """Load an ONNX file or TensorRT engine on ``backend`` (``auto`` chooses as ``dfseg-run`` does); on
    the host also a model name or architecture (``df1-seg``, ``64x1_64x1_64x1-wc19.32.32``) with
    optional ``weights`` (safetensors, or a weights-only torch file), exported to ONNX first.

    ``size`` is ``WIDTHxHEIGHT`` as on the command line (a name is exported at it, default 640x360);
    ``precision`` as ``--precision``; ``config`` a whole ``BuildConfig`` (FP32 layers, calibration),
    as the commands build it from their options.
    """
    import shutil
    import tempfile

    model = _path_or_name("model", model)
    if weights is not None:
        weights = _path_or_name("weights", weights)
    if threads is not None:
        check_whole_number("threads", threads, MIN_THREADS, MAX_THREADS)
    if providers is not None and (isinstance(providers, (str, bytes)) or not all(
            isinstance(name, str) for name in providers)):
        raise UserError("providers: expected a list of ONNX Runtime provider names, e.g. "
                        "providers=['cpu'] or ['CPUExecutionProvider'], got {!r}".format(providers))
    if config is not None and not isinstance(config, BuildConfig):
        raise UserError("config: expected a dfseg.build_config.BuildConfig, got {}; pass precision='fp16' "
                        "for the precision alone".format(_describe(config)))
    if config is not None and precision is not None and precision != config.precision:
        raise UserError("precision={!r} and config.precision={!r}: give one".format(precision, config.precision))
    if config is None and precision is not None:
        config = BuildConfig(precision=precision).checked()
    parsed_size = parse_size(size) if size else None
    scratch = tempfile.mkdtemp(prefix="dfseg-model-")
    try:
        with _no_log_prints():
            path = model_file(model, weights, parsed_size, scratch, _quiet, warn=_warn)
            choice = resolve_backend(backend, path)
            runner = get_runner(choice.backend, path, providers=list(providers) if providers else None,
                                threads=threads, config=config)
            # A runtime reads its model when it activates: the exported file is kept until then.
            result = Model(runner, parsed_size, choice.note)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


UNTRAINED_WARNING = (
    "{}: no --weights given, so the network has random weights: the class map will be noise. Pass trained "
    "weights (dfseg-convert turns the authors' Caffe models into safetensors)"
)


def model_file(model: str, weights: Optional[str], size: Optional[Size], scratch: str,
               log: Callable[[str], None], untrained: str = UNTRAINED_WARNING,
               warn: Optional[Callable[[str], None]] = None) -> str:
    """The model file to run: an existing ONNX file or engine as is; a model name exported (host) into
    ``scratch`` at ``size`` (default 640x360) with ``weights``.  ``log`` gets what a user should hear
    and ``warn`` (default ``log``) the ``untrained`` warning when a name comes without weights."""
    from .backends import ENGINE_SUFFIXES

    if os.path.isfile(model):
        if weights:
            raise UserError("--weights: {} is already a model file; --weights goes with a model name such as "
                            "df1-seg".format(model))
        return model
    if os.path.isdir(model):
        raise UserError("--model {}: is a folder; give an .onnx file, a TensorRT engine or a model name".format(model))
    if model.endswith((".onnx",) + ENGINE_SUFFIXES) or os.sep in model:  # a path: names have no "/"
        raise UserError("{}: file not found; give an existing .onnx file, a TensorRT engine or a model name such as "
                        "df1-seg".format(model))
    try:
        from .export import export_onnx
    except ImportError as exc:
        raise UserError(
            "--model {}: not a file, and exporting a model name needs the host extras ({}); on the device pass "
            "an .onnx file or engine exported on the host with dfseg-export".format(model, exc)
        ) from None
    from .arch import Arch

    arch = Arch.parse(model)
    if not arch.is_segmentation:
        raise UserError("--model {}: an ImageNet backbone; dfseg-run needs a segmentation model (df1-seg, ...)".format(model))
    if weights is None:
        (warn or log)(untrained.format(model))
    elif not os.path.isfile(weights):
        raise UserError("--weights {}: file not found".format(weights))
    from .models.registry import create_model

    # Built (and its weights read, once) before the export is announced: unreadable weights are an error first.
    network = create_model(arch, pretrained_weights=weights)
    export_size = size or Size(640, 360)
    path = os.path.join(scratch, "model.onnx")
    log("exporting {} at {} to ONNX".format(model, export_size))
    export_onnx(network, export_size, path, output="classmap")
    return path


def colorize(classmap: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """BGR colour mask of a class map in the Cityscapes palette."""
    _check_classmap(classmap)
    num_classes = _check_num_classes(num_classes)
    return Renderer(mode="mask", legend=False, num_classes=num_classes).colorize(classmap)


def overlay(bgr: np.ndarray, classmap: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """The frame blended with its colour mask, as ``dfseg-run --overlay blend`` draws it."""
    _check_frame(bgr)
    _check_classmap(classmap)
    num_classes = _check_num_classes(num_classes)
    if classmap.shape != bgr.shape[:2]:
        raise UserError("classmap: shape {} does not match the frame's {}; pass the class map of this frame "
                        "(Model(frame) returns one at the frame's size)".format(classmap.shape, bgr.shape[:2]))
    # Renderer blends into the image it is given: draw on a copy, so that the caller's frame stays as it was
    # (and a read-only frame or a reversed view such as frame[:, ::-1] works).
    return Renderer(mode="blend", legend=False, num_classes=num_classes).render(np.array(bgr, order="C"), classmap)


def _quiet(message: str) -> None:
    """The API never prints."""


@contextlib.contextmanager
def _no_log_prints() -> Iterator[None]:
    """dfseg's modules log notes for the commands ("deriving the fp16 graph ... (once; cached at ...)", an
    engine build) at WARNING on the ``dfseg`` loggers, which logging's last-resort handler prints to stderr
    when no handler is configured.  While the API works a NullHandler on ``dfseg`` keeps them off stderr;
    a program that configures logging (``logging.basicConfig``) still gets them."""
    logger = logging.getLogger("dfseg")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=2)


def _check_frame(bgr: object) -> None:
    if not isinstance(bgr, np.ndarray) or bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise UserError("frame: expected a BGR uint8 array of shape (height, width, 3), got {}".format(_describe(bgr)))
    if bgr.shape[0] == 0 or bgr.shape[1] == 0:
        raise UserError("frame: empty, shape {}; pass an image of at least 1x1 pixels".format(bgr.shape))


def _check_classmap(classmap: object) -> None:
    """Class ids index the 256-entry palette (ids without a colour are drawn black), so they are integers
    in 0..255."""
    if not isinstance(classmap, np.ndarray) or classmap.ndim != 2 or not np.issubdtype(classmap.dtype, np.integer):
        raise UserError("classmap: expected an integer array of class ids of shape (height, width), got {}".format(
            _describe(classmap)))
    if classmap.dtype != np.uint8 and classmap.size and (classmap.min() < 0 or classmap.max() > 255):
        raise UserError("classmap: class ids must lie in 0..255, got {}..{}".format(classmap.min(), classmap.max()))


def _check_num_classes(num_classes: object) -> int:
    """How many ids (from 0) get a colour: 1 to the palette's 256 (a negative count would slice the
    class table from its end, a string fail inside it)."""
    return check_whole_number("num_classes", num_classes, 1, 256)


def _path_or_name(name: str, value: object) -> str:
    """A file path (``str`` or ``os.PathLike`` such as ``pathlib.Path``) or a model name, as a str."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise UserError("{}: expected a file path or a model name (a str or pathlib.Path), got {}".format(
            name, _describe(value)))
    return value


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return "{} array of shape {}".format(value.dtype, value.shape)
    return type(value).__name__
