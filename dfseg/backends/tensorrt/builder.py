"""ONNX -> TensorRT engine, apart from any runner (Polygraphy's ``EngineFromNetwork`` to our ``TrtRunner``).

``EngineFromOnnx(model, config)`` builds (or takes from the engine cache) the engine for one
``BuildConfig``, so engines can be built ahead of time on the device with no runner.  Precision:

* TensorRT >= 11, and 10 by default: the FP16 or Q/DQ INT8 graph of ``dfseg.precision`` is built as a
  strongly typed network; FP32 layers are casts in that graph.
* TensorRT 8.x, and 10 with ``network_typing="weak"``: the FP32 graph with the FP16/INT8 builder flags,
  the entropy calibrator (``calibrator``) for INT8, and FP32 layers pinned with layer precisions.

Device side: Python 3.6, no torch; tensorrt is passed in as ``trt``.
"""

import logging
import os
from typing import Any, Dict, List, Optional, Tuple  # noqa: F401  (List: in type comments)

from ...build_config import BuildConfig, calibration_fingerprint, matching_names
from ...errors import UserError
from ...fileio import read_json, sha256_bytes, sha256_file, write_atomic
from . import compat
from .engines import EngineCache, EngineSpec

log = logging.getLogger("dfseg.trt")


def import_tensorrt() -> Any:
    try:
        import tensorrt  # type: ignore
    except ImportError as exc:
        raise UserError("the tensorrt backend needs TensorRT's Python bindings ({}); on a Jetson they come with "
                        "JetPack (python3-libnvinfer), elsewhere pip install 'dfseg[tensorrt]'; or use --backend "
                        "trtexec or onnxruntime".format(exc)) from None
    compat.version_tuple(tensorrt)  # an unsupported version: a one-line TensorRTVersionError (a UserError)
    return tensorrt


class TrtLogger:
    """One TensorRT logger per process (TensorRT warns when several are created)."""

    instance = None  # type: Any

    @classmethod
    def get(cls, trt: Any) -> Any:
        if cls.instance is None:
            cls.instance = trt.Logger(trt.Logger.WARNING)
        return cls.instance


def parse_onnx(trt: Any, onnx_path: str, strong: bool = False) -> Tuple[Any, Any, Any]:
    """A network parsed from ``onnx_path`` (the parser must outlive the network)."""
    logger = TrtLogger.get(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(compat.network_flags(trt, strong))
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as handle:
        if not parser.parse(handle.read()):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise UserError("{}: TensorRT cannot parse this ONNX model: {}".format(onnx_path, "; ".join(errors)))
    return builder, network, parser


def onnx_input_shapes(trt: Any, onnx_path: str) -> Dict[str, Any]:
    """Input names and shapes of an ONNX model, read with TensorRT's own parser (no onnx package needed)."""
    builder, network, parser = parse_onnx(trt, onnx_path)
    shapes = {}
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        shapes[tensor.name] = tuple(int(d) for d in tensor.shape)
    return shapes


def build_engine(trt: Any, onnx_path: str, config: BuildConfig, calibrator: Any = None,
                 timing_cache: Optional[bytes] = None) -> Dict[str, Any]:
    """Build a serialized engine from ``onnx_path`` (already the precision's graph when strongly typed);
    returns {"engine": bytes, "timing_cache": bytes or None, "pinned_layers": [names kept in FP32]}."""
    strong = compat.strongly_typed(trt, config.precision, config.network_typing)
    builder, network, parser = parse_onnx(trt, onnx_path, strong)
    settings = builder.create_builder_config()
    compat.set_workspace(trt, settings, config.workspace_mb * (1 << 20))
    # Layer names in profiles: needed to attribute per-layer times to network parts.
    settings.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    # TF32 is on in a new builder config (BuilderFlag.TF32, pyCore.cpp 8.2.1 to v11.0): an Ampere GPU (Orin)
    # would run "fp32" convolutions with 10-bit mantissas.  FP32 here means IEEE FP32, in FP32 engines and
    # in the layers that fp32_layers keeps in FP32.
    settings.clear_flag(trt.BuilderFlag.TF32)
    pinned = []  # type: List[str]
    if config.precision != "fp32" and not strong:
        if config.precision == "int8" and calibrator is None:
            raise UserError("int8 with weak typing needs calibration images or a calibration cache: pass "
                            "--calibration FOLDER|VIDEO|CITYSCAPES_ROOT")
        compat.set_weak_precision(trt, builder, settings, config.precision, calibrator)
        if config.fp32_layers:
            layers = [network.get_layer(i) for i in range(network.num_layers)]
            pinned = list(matching_names([layer.name for layer in layers], config.fp32_layers, "layer"))
            compat.keep_layers_fp32(trt, [layer for layer in layers if layer.name in pinned], settings)
    cache = None
    if hasattr(settings, "create_timing_cache"):
        cache = settings.create_timing_cache(timing_cache or b"")
        settings.set_timing_cache(cache, False)
    serialized = builder.build_serialized_network(network, settings)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build {} ({}); see the TensorRT log above".format(
            onnx_path, config.precision))
    new_cache = bytes(settings.get_timing_cache().serialize()) if cache is not None else None
    return {"engine": bytes(serialized), "timing_cache": new_cache, "pinned_layers": pinned}


def checked_source(model_path: str, config: BuildConfig, strong: bool) -> str:
    """The ONNX file to build: the precision's graph when strongly typed (``dfseg.precision.graph_for``,
    which also refuses a graph of another precision or target), else the FP32 graph that the weak flags
    reduce.  Without the onnx package (TensorRT 8.2 on JetPack 4.6.1) an FP32 weak build trusts the file."""
    if strong:
        from ...precision import graph_for

        return graph_for(model_path, config, "tensorrt")
    from ...precision import graph_precision, onnx_available

    if onnx_available():
        present = graph_precision(model_path)
        if present != "fp32":
            raise UserError("{}: a {} graph; TensorRT 8.x reduces precision with builder flags from the FP32 export: "
                            "pass that".format(model_path, present))
    return model_path


def check_engine_precision(engine_path: str, config: BuildConfig) -> None:
    """An engine's precision is fixed when it is built: refuse a request for another one where its
    cache sidecar says what it is."""
    sidecar = engine_path + ".json"
    if not os.path.isfile(sidecar):
        return
    built = ((read_json(sidecar, "engine sidecar") or {}).get("spec") or {}).get("precision")
    if built not in (None, config.precision):
        raise UserError("{}: a {} engine (its sidecar {} says so); pass --precision {} or build another".format(
            engine_path, built, sidecar, built))


class EngineFromOnnx:
    """A loader: ``loader(trt, memory)`` returns the engine bytes for ``model_path`` under ``config``,
    built once into the engine cache.  ``memory`` (a ``cuda_memory.CudaMemory``) names the device and
    holds the INT8 calibrator's buffer on TensorRT 8.x."""

    def __init__(self, model_path: str, config: BuildConfig) -> None:
        self.model_path = model_path
        self.config = config.checked()
        self.cache = EngineCache(self.config.cache_dir)
        self.engine_path = None  # type: Optional[str]
        self.built_model = None  # type: Optional[str]  the ONNX file the engine was built from
        self.cache_hit = None  # type: Optional[bool]

    def __call__(self, trt: Any, memory: Any) -> bytes:
        config = self.config
        strong = compat.strongly_typed(trt, config.precision, config.network_typing)
        source = checked_source(self.model_path, config, strong)
        self.built_model = source
        device = memory.device_name()
        shapes = onnx_input_shapes(trt, source)
        flags = {"workspace_mb": config.workspace_mb, "fp32_layers": list(config.fp32_layers),
                 "strongly_typed": strong, "tf32": False}  # type: Dict[str, Any]
        if config.precision == "int8" and not strong:
            flags["calibration"] = self._calibration_identity()
        spec = EngineSpec.create(source, shapes, config.precision, trt.__version__, device, flags)
        self.engine_path = self.cache.engine_path(spec)

        def build() -> bytes:
            log.warning("building a TensorRT %s engine for %s (minutes on a Jetson; cached afterwards)",
                        config.precision, source)
            calibrator = self._calibrator(trt, memory, shapes) if config.precision == "int8" and not strong else None
            built = build_engine(trt, source, config, calibrator, self._read_timing_cache(trt, device))
            if built["timing_cache"]:
                self._write_timing_cache(trt, device, built["timing_cache"])
            return built["engine"]

        data, self.cache_hit = self.cache.get_or_build(
            spec, build, extra={"builder": "tensorrt-python", "build_config": config.to_dict()})
        return data

    def _read_timing_cache(self, trt: Any, device: str) -> Optional[bytes]:
        if self.config.timing_cache:
            from .calibrator import read_cache

            return read_cache(self.config.timing_cache)
        return self.cache.read_timing_cache(trt.__version__, device)

    def _write_timing_cache(self, trt: Any, device: str, data: bytes) -> None:
        if self.config.timing_cache:
            write_atomic(self.config.timing_cache, data)
        else:
            self.cache.write_timing_cache(trt.__version__, device, data)

    def _calibration_identity(self) -> str:
        """What the INT8 scales come from: the images when there are any (the cache that calibrating them
        writes must not change the engine's key, or the first run's engine is built again on the
        second), else the calibration cache's content."""
        cache = self.config.calibration_cache
        if not self.config.calibration and cache and os.path.isfile(cache):
            return "cache:" + sha256_file(cache)
        return "images:{}:{}:{}".format(os.path.abspath(self.config.calibration or ""), self.config.calibration_images,
                                        calibration_fingerprint(self.config.calibration, self.config.calibration_images))

    def _calibration_key(self, shape: Any) -> str:
        """The default calibration cache belongs to one model, input shape and set of images."""
        text = "{}:{}:{}".format(sha256_file(self.model_path), tuple(shape), self._calibration_identity())
        return sha256_bytes(text.encode("utf-8"))[:12]

    def _calibrator(self, trt: Any, memory: Any, shapes: Dict[str, Any]) -> Any:
        from .calibrator import make_entropy_calibrator

        if len(shapes) != 1:
            raise UserError("int8 calibration supports single-input models; this one has {}".format(sorted(shapes)))
        (input_name, shape), = shapes.items()
        cache = self.config.calibration_cache or os.path.join(self.cache.root, "calibration-{}-{}.cache".format(
            os.path.splitext(os.path.basename(self.model_path))[0], self._calibration_key(shape)))
        return make_entropy_calibrator(trt, memory, input_name, tuple(shape), self.config.calibration, cache,
                                       limit=self.config.calibration_images)
