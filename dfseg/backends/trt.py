"""TensorRT runner: ONNX -> engine (cached under ``engines/``) -> inference with the TensorRT Python
API, one code path for 8.2, 8.5/8.6 and 10.x (the differences live in ``trt_compat``).

Inference copies inputs into page-locked host buffers, then on one CUDA stream: H2D copies,
compute between two CUDA events, D2H copies, one synchronize.  ``last_compute_ms`` is the event
time (GPU compute only); the base class's wall clock gives end to end (copies included).

Precision: fp32, fp16 or int8 (entropy calibration on real images, see ``dfseg.calibration``);
``fp32_layers`` keeps named layers (ONNX node names, or prefixes such as ``/head/``) in FP32 when
reduced precision breaks them.

Device side: Python 3.6, no torch; tensorrt and pycuda/cuda-python load in ``activate``.
"""

import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..engines import DEFAULT_WORKSPACE_MB, PRECISIONS, EngineCache, EngineSpec, sha256_file
from ..errors import UserError
from . import trt_compat
from .base import BaseRunner, TensorMeta
from .cuda_memory import CudaMemory, open_cuda

log = logging.getLogger("dfseg.trt")


def import_tensorrt() -> Any:
    try:
        import tensorrt  # type: ignore
    except ImportError as exc:
        raise UserError("the tensorrt backend needs TensorRT's Python bindings ({}); on a Jetson they come with "
                        "JetPack (python3-libnvinfer), elsewhere pip install tensorrt; or use --backend trtexec "
                        "or onnxruntime".format(exc)) from None
    trt_compat.version_tuple(tensorrt)
    return tensorrt


class _Logger:
    """One TensorRT logger per process (TensorRT warns when several are created)."""

    instance = None  # type: Any

    @classmethod
    def get(cls, trt: Any) -> Any:
        if cls.instance is None:
            cls.instance = trt.Logger(trt.Logger.WARNING)
        return cls.instance


def _parse_onnx(trt: Any, onnx_path: str) -> Tuple[Any, Any, Any]:
    """An explicit-batch network parsed from ``onnx_path`` (the parser must outlive the network)."""
    logger = _Logger.get(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(trt_compat.network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as handle:
        if not parser.parse(handle.read()):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise UserError("{}: TensorRT cannot parse this ONNX model: {}".format(onnx_path, "; ".join(errors)))
    return builder, network, parser


def build_engine(trt: Any, onnx_path: str, precision: str = "fp32", workspace_mb: int = DEFAULT_WORKSPACE_MB,
                 fp32_layers: Sequence[str] = (), calibrator: Any = None,
                 timing_cache: Optional[bytes] = None) -> Dict[str, Any]:
    """Build a serialized engine; returns {"engine": bytes, "timing_cache": bytes or None,
    "pinned_layers": [names kept in FP32]}."""
    builder, network, parser = _parse_onnx(trt, onnx_path)
    config = builder.create_builder_config()
    trt_compat.set_workspace(trt, config, workspace_mb * (1 << 20))
    # Layer names in profiles: needed to attribute per-layer times to network parts.
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if precision in ("fp16", "int8"):
        if not builder.platform_has_fast_fp16:
            log.warning("this GPU has no fast FP16; the engine will be slow")
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if calibrator is None:
            raise UserError("int8 needs calibration images: pass calibration=FOLDER|VIDEO|CITYSCAPES_ROOT")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
    pinned = pin_layers_fp32(trt, network, config, fp32_layers) if fp32_layers else []
    cache = None
    if hasattr(config, "create_timing_cache"):
        cache = config.create_timing_cache(timing_cache or b"")
        config.set_timing_cache(cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build {} ({}); see the TensorRT log above".format(onnx_path, precision))
    new_cache = bytes(config.get_timing_cache().serialize()) if cache is not None else None
    return {"engine": bytes(serialized), "timing_cache": new_cache, "pinned_layers": pinned}


def pin_layers_fp32(trt: Any, network: Any, config: Any, patterns: Sequence[str]) -> List[str]:
    """Keep layers whose name equals or starts with one of ``patterns`` in FP32."""
    pinned = []
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if any(layer.name == p or layer.name.startswith(p) for p in patterns):
            layer.precision = trt.float32
            for output in range(layer.num_outputs):
                layer.set_output_type(output, trt.float32)
            pinned.append(layer.name)
    unmatched = [p for p in patterns if not any(name == p or name.startswith(p) for name in pinned)]
    if unmatched:
        raise UserError("fp32_layers: no layer named or starting with {}; layer names are ONNX node names such as "
                        "/head/conv/Conv".format(", ".join(repr(p) for p in unmatched)))
    config.set_flag(trt_compat.precision_constraints_flag(trt))
    return pinned


class TensorRTRunner(BaseRunner):
    """Runs an ONNX model (built into the engine cache) or a ``.engine`` file with TensorRT."""

    backend = "tensorrt"

    def __init__(self, model_path: str, precision: str = "fp32", cache_dir: str = "engines",
                 workspace_mb: int = DEFAULT_WORKSPACE_MB, fp32_layers: Sequence[str] = (),
                 calibration: Optional[str] = None, calibration_images: int = 500,
                 calibration_cache: Optional[str] = None, cuda: str = "auto", device_index: int = 0,
                 name: Optional[str] = None) -> None:
        if not os.path.isfile(model_path):
            raise UserError("{}: model file not found; export one with dfseg-export".format(model_path))
        if precision not in PRECISIONS:
            raise UserError("precision {!r}: choose fp32, fp16 or int8".format(precision))
        super().__init__(name or os.path.basename(model_path))
        self.model_path = model_path
        self.precision = precision
        self.cache = EngineCache(cache_dir)
        self.workspace_mb = workspace_mb
        self.fp32_layers = tuple(fp32_layers)
        self.calibration = calibration
        self.calibration_images = calibration_images
        self.calibration_cache = calibration_cache
        self.cuda_library = cuda
        self.device_index = device_index
        self.trt = None  # type: Any
        self.memory: Optional[CudaMemory] = None
        self.engine = None  # type: Any
        self.context = None  # type: Any
        self.cache_hit = None  # type: Optional[bool]
        self.engine_path = None  # type: Optional[str]
        self._tensors = []  # type: List[trt_compat.IOTensor]
        self._host = {}  # type: Dict[str, np.ndarray]
        self._device = {}  # type: Dict[str, int]
        self._bindings = []  # type: List[int]

    # ------------------------------------------------------------------ lifecycle
    def activate_impl(self) -> None:
        trt = self.trt = import_tensorrt()
        self.memory = open_cuda(self.cuda_library, self.device_index)
        try:
            data = self._engine_bytes(trt)
            runtime = trt.Runtime(_Logger.get(trt))
            self.engine = runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise UserError("{}: TensorRT cannot deserialize this engine (built by another TensorRT version or "
                                "for another GPU?); delete it to rebuild".format(self.engine_path))
            self.context = self.engine.create_execution_context()
            self._allocate()
        except BaseException:
            self.memory.close()
            self.memory = None
            raise

    def _engine_bytes(self, trt: Any) -> bytes:
        if not self.model_path.endswith(".onnx"):
            self.engine_path, self.cache_hit = self.model_path, True
            with open(self.model_path, "rb") as handle:
                return handle.read()
        assert self.memory is not None
        device = self.memory.device_name()
        shapes = onnx_input_shapes(trt, self.model_path)
        flags = {"workspace_mb": self.workspace_mb, "fp32_layers": list(self.fp32_layers)}
        if self.precision == "int8":
            flags["calibration"] = self._calibration_identity()
        spec = EngineSpec.create(self.model_path, shapes, self.precision, trt.__version__, device, flags)
        self.engine_path = self.cache.engine_path(spec)

        def build() -> bytes:
            log.warning("building a TensorRT %s engine for %s (minutes on a Jetson; cached afterwards)",
                        self.precision, self.model_path)
            calibrator = self._calibrator(trt, shapes) if self.precision == "int8" else None
            built = build_engine(trt, self.model_path, self.precision, self.workspace_mb, self.fp32_layers,
                                 calibrator, self.cache.read_timing_cache(trt.__version__, device))
            if built["timing_cache"]:
                self.cache.write_timing_cache(trt.__version__, device, built["timing_cache"])
            return built["engine"]

        data, self.cache_hit = self.cache.get_or_build(spec, build, extra={"builder": "tensorrt-python"})
        return data

    def _calibration_identity(self) -> str:
        if self.calibration_cache and os.path.isfile(self.calibration_cache):
            return "cache:" + sha256_file(self.calibration_cache)
        return "images:{}:{}".format(os.path.abspath(self.calibration or ""), self.calibration_images)

    def _calibrator(self, trt: Any, shapes: Dict[str, Any]) -> Any:
        from ..calibration import make_entropy_calibrator

        if len(shapes) != 1:
            raise UserError("int8 calibration supports single-input models; this one has {}".format(sorted(shapes)))
        (input_name, shape), = shapes.items()
        assert self.memory is not None
        cache = self.calibration_cache or os.path.join(
            self.cache.root, "calibration-{}.cache".format(os.path.splitext(os.path.basename(self.model_path))[0]))
        return make_entropy_calibrator(trt, self.memory, input_name, tuple(shape), self.calibration, cache,
                                       limit=self.calibration_images)

    def _allocate(self) -> None:
        trt, memory = self.trt, self.memory
        assert memory is not None
        self._tensors = trt_compat.io_tensors(trt, self.engine)
        for tensor in self._tensors:
            if any(d < 0 for d in tensor.shape):
                raise UserError("{}: dynamic input shapes are not supported; export the ONNX model at a fixed "
                                "size (dfseg-export --size)".format(self.name))
            self._host[tensor.name] = memory.host(tensor.shape, tensor.dtype)
            self._device[tensor.name] = memory.device(self._host[tensor.name].nbytes)
        self._bindings = trt_compat.bind_addresses(trt, self.context, self._tensors, self._device)

    def deactivate_impl(self) -> None:
        self.context = None
        self.engine = None
        self._host, self._device, self._bindings = {}, {}, []
        if self.memory is not None:
            self.memory.close()
            self.memory = None

    # ------------------------------------------------------------------ inference
    def input_metadata_impl(self) -> Dict[str, TensorMeta]:
        return {t.name: TensorMeta(t.shape, t.dtype) for t in self._tensors if t.is_input}

    def output_metadata(self) -> Dict[str, TensorMeta]:
        self._require_active()
        return {t.name: TensorMeta(t.shape, t.dtype) for t in self._tensors if not t.is_input}

    def synchronize(self) -> None:
        if self.memory is not None:
            self.memory.synchronize()

    def infer_impl(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        memory = self.memory
        assert memory is not None
        inputs = [t for t in self._tensors if t.is_input]
        outputs = [t for t in self._tensors if not t.is_input]
        for tensor in inputs:
            np.copyto(self._host[tensor.name], feed[tensor.name], casting="same_kind")
            memory.htod(self._device[tensor.name], self._host[tensor.name])
        memory.record(0)
        trt_compat.execute(self.trt, self.context, self._bindings, memory.stream_handle)
        memory.record(1)
        for tensor in outputs:
            memory.dtoh(self._host[tensor.name], self._device[tensor.name])
        memory.synchronize()
        self.last_compute_ms = memory.elapsed_ms()
        return {tensor.name: self._host[tensor.name].copy() for tensor in outputs}

    def layer_profile(self, feed: Dict[str, np.ndarray], runs: int = 20) -> Dict[str, float]:
        """Median per-layer GPU time (ms per inference) over ``runs`` profiled inferences."""
        from ..profiling import collect_layer_times

        self._require_active()
        self._check_feed(feed)
        return collect_layer_times(self.trt, self.context, lambda: self.infer_impl(feed), runs)


def onnx_input_shapes(trt: Any, onnx_path: str) -> Dict[str, Any]:
    """Input names and shapes of an ONNX model, read with TensorRT's own parser (no onnx package needed)."""
    builder, network, parser = _parse_onnx(trt, onnx_path)
    shapes = {}
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        shapes[tensor.name] = tuple(int(d) for d in tensor.shape)
    return shapes


def make_runner(model_path: str, **options: Any) -> TensorRTRunner:
    """Entry point used by ``dfseg.backends.get_runner('tensorrt', ...)``."""
    return TensorRTRunner(model_path, **options)
