"""A functional fake of TensorRT's Python bindings, one API per version, over the simulated CUDA
driver in ``fake_cuda``.  The version is ``FAKE_TENSORRT_VERSION`` (default 10.3.0.30), e.g. 8.2.1.8
(JetPack 4.6.1), 8.5.2.2 (JetPack 5.1), 8.6.2.3 (JetPack 6.0), 10.3.0.30 (JetPack 6.1/6.2), 10.16.1.11
and 11.0.0 (desktop wheels); ``__version__`` is that string as given.

Sources (NVIDIA/TensorRT, the git mirror /work/.mirror/NVIDIA+TensorRT/repo, read with
``git show TAG:PATH``; tags 8.2.1 8.4.1 8.5.2 8.5.3 v8.6.1 v10.3.0 v10.16 v11.0):

* which names exist at each tag: the pybind11 bindings python/src/infer/pyCore.cpp (Builder,
  IBuilderConfig, BuilderFlag, MemoryPoolType, ProfilingVerbosity, Runtime, ICudaEngine,
  IExecutionContext, ILogger, IProfiler), pyGraph.cpp (INetworkDefinition, ILayer.precision,
  set_output_type), pyFoundationalTypes.cpp (DataType, TensorIOMode), pyInt8.cpp
  (IInt8EntropyCalibrator2; the file is gone at v11.0), python/src/parsers/pyOnnx.cpp (OnnxParser).
  ``API`` below lists what is added and removed, with the tag where it changes;
* ``nptype`` and ``__version__``: python/packaging/tensorrt/__init__.py (8.x) and
  python/packaging/bindings_wheel/tensorrt/__init__.py (v8.6.1 on).  Up to 8.5.2 the mapping has
  ``bool: np.bool``, from 8.5.3 ``np.bool_``: with numpy 1.24-1.26 (where the ``np.bool`` alias had
  expired; numpy 2.0 brought it back) every call of ``nptype`` up to 8.5.2 raises AttributeError
  (NVIDIA/TensorRT#2557).  The fake evaluates ``np.bool`` exactly where NVIDIA's code does, so it
  behaves as the device's numpy makes it (``FAKE_NUMPY_VERSION``: see ``_DeviceNumpy``);
* defaults from python/docstrings/infer/pyCoreDoc.h: ``BuilderFlag.TF32`` "Enabled by default" (8.2.1
  through v11.0), so a fresh builder config computes FP32 convolutions in TF32 on Ampere and newer;
* callbacks: an exception raised in a Python ``report_layer_time`` or ``get_batch`` is printed as
  ``[ERROR] Exception caught in report_layer_time(): ...`` and swallowed (pyCore.cpp, pyInt8.cpp);
* the profiler's layer names: fused layers join their ONNX node names with `` + ``; from 8.5 Myelin
  takes regions of non-convolution nodes and reports them as ``{ForeignNode[FIRST...LAST]}``.

What it does: ``OnnxParser`` reads the model with the ``onnx`` package; ``build_serialized_network``
returns an "engine" (a header recording the version, device, builder flags, I/O tensors and layer
names, then the ONNX bytes); ``Runtime.deserialize_cuda_engine`` refuses an engine of another
TensorRT version or compute capability (logs an error, returns None, as TensorRT does); an execution
context runs the ONNX model with ONNX Runtime (CPU) on the bytes at the bound device addresses and
writes the outputs back there, so results are real.  Weights and inputs are rounded as the engine's
precision would (FP16 flag: to half; TF32 flag on sm80+: to 10-bit mantissas) -- a model of where
reduced precision enters, not of TensorRT's kernels.  Enqueue follows the CUDA runtime's rules
(``fake_cuda``): the calling thread's current context, else its current device's primary context; a
stream or buffer of another context/device is a CUDA error that TensorRT logs, returning False.

Not modelled: dynamic shapes and optimization profiles, plugins, DLA, refit, the timing cache's
content, real INT8 scales, opset limits of each version's ONNX parser, the algorithm selector.
"""

import builtins
import enum
import json
import os
import re
import struct
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import fake_cuda
from fake_cuda import DRIVER, CudaError

__version__ = os.environ.get("FAKE_TENSORRT_VERSION", "10.3.0.30")
_V = tuple(int(part) for part in re.findall(r"\d+", __version__)[:3]) + (0, 0, 0)
_V = _V[:3]
if _V < (8, 0, 0):
    raise ImportError("FAKE_TENSORRT_VERSION={!r}: the fake models 8.2 and newer".format(__version__))


def _since(*version: int) -> bool:
    return _V >= tuple(version)


def _before(*version: int) -> bool:
    return _V < tuple(version)


class _Pybind11Enum(enum.IntEnum):
    """pybind11's ``py::enum_``: ``str()`` is ``Type.MEMBER`` (pybind11 enum_base ``__str__``), ``int()`` the
    value, ``.name`` the member's name."""

    def __str__(self) -> str:
        return "{}.{}".format(type(self).__name__, self.name)

    def __repr__(self) -> str:
        return "<{}.{}: {}>".format(type(self).__name__, self.name, int(self))


# ---------------------------------------------------------------------------------------------- logging
class ILogger:
    class Severity(_Pybind11Enum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self) -> None:
        pass

    def log(self, severity: "ILogger.Severity", msg: str) -> None:
        raise NotImplementedError


for _name, _value in ILogger.Severity.__members__.items():
    setattr(ILogger, _name, _value)

_LETTER = {0: "F", 1: "E", 2: "W", 3: "I", 4: "V"}


class Logger(ILogger):
    """The default logger: prints ``[TRT] [E] message`` lines at or above ``min_severity``."""

    Severity = ILogger.Severity

    def __init__(self, min_severity: ILogger.Severity = ILogger.Severity.WARNING) -> None:
        super().__init__()
        self.min_severity = min_severity

    def log(self, severity: ILogger.Severity, msg: str) -> None:
        if int(severity) <= int(self.min_severity):
            sys.stderr.write("[TRT] [{}] {}\n".format(_LETTER[int(severity)], msg))
            sys.stderr.flush()


def _log(logger: Optional[ILogger], severity: ILogger.Severity, msg: str) -> None:
    if logger is not None:
        logger.log(severity, msg)


# ---------------------------------------------------------------------------------------------- enums
def _enum(name: str, members: Sequence[str]) -> type:
    return _Pybind11Enum(name, [(member, index) for index, member in enumerate(members)])


# DataType (pyFoundationalTypes.cpp): UINT8 from 8.5, BF16/INT64/FP8/INT4 from 10.0, FP4/E8M0 from 10.8.
_DATATYPES = ["FLOAT", "HALF", "INT8", "INT32", "BOOL"]
if _since(8, 5):
    _DATATYPES.append("UINT8")
if _since(10, 0):
    _DATATYPES += ["BF16", "INT64", "FP8", "INT4"]
if _since(11, 0):
    _DATATYPES += ["FP4", "E8M0"]
DataType = _enum("DataType", _DATATYPES)
_ITEMSIZE = {"FLOAT": 4, "HALF": 2, "INT8": 1, "INT32": 4, "BOOL": 1, "UINT8": 1, "BF16": 2, "INT64": 8, "FP8": 1}
DataType.itemsize = property(lambda self: _ITEMSIZE.get(self.name, 1))
float32, float16, int8, int32, bool = DataType.FLOAT, DataType.HALF, DataType.INT8, DataType.INT32, DataType.BOOL  # noqa: A001
if _since(8, 5):
    uint8 = DataType.UINT8
if _since(10, 0):
    int64, bfloat16 = DataType.INT64, DataType.BF16

if _since(8, 5):
    TensorIOMode = _enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])

# NetworkDefinitionCreationFlag (pyCore.cpp): EXPLICIT_BATCH until 11 (deprecated, ignored in 10),
# EXPLICIT_PRECISION until 10, STRONGLY_TYPED from 10.0.
_NETWORK_FLAGS = []  # type: List[str]
if _before(11, 0):
    _NETWORK_FLAGS.append("EXPLICIT_BATCH")
if _before(10, 0):
    _NETWORK_FLAGS.append("EXPLICIT_PRECISION")
if _since(10, 0):
    _NETWORK_FLAGS.append("STRONGLY_TYPED")
NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag", _NETWORK_FLAGS)

# BuilderFlag (pyCore.cpp at each tag).
_BUILDER_FLAGS = ["DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS",
                  "SAFETY_SCOPE", "DIRECT_IO"]
if _before(11, 0):
    _BUILDER_FLAGS += ["FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"]
if _before(10, 0):
    _BUILDER_FLAGS += ["STRICT_TYPES", "REJECT_EMPTY_ALGORITHMS"]
if _since(8, 5) and _before(10, 0):
    _BUILDER_FLAGS.append("ENABLE_TACTIC_HEURISTIC")
if _since(10, 0):
    _BUILDER_FLAGS += ["VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "ERROR_ON_TIMING_CACHE_MISS",
                       "DISABLE_COMPILATION_CACHE", "STRIP_PLAN", "REFIT_IDENTICAL", "WEIGHT_STREAMING",
                       "REFIT_INDIVIDUAL"]
    if _before(11, 0):
        _BUILDER_FLAGS += ["BF16", "FP8", "INT4", "WEIGHTLESS"]
if _since(11, 0):
    _BUILDER_FLAGS += ["EDITABLE_TIMING_CACHE", "STRICT_NANS", "MONITOR_MEMORY", "DISTRIBUTIVE_INDEPENDENCE"]
BuilderFlag = _enum("BuilderFlag", _BUILDER_FLAGS)

if _since(8, 4):  # MemoryPoolType and set_memory_pool_limit arrive in 8.4 (absent at 8.2.1)
    MemoryPoolType = _enum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM",
                                              "DLA_GLOBAL_DRAM"])

# ProfilingVerbosity: DEFAULT and VERBOSE (aliases) are gone at v10.3.0.
ProfilingVerbosity = _enum("ProfilingVerbosity", ["LAYER_NAMES_ONLY", "NONE", "DETAILED"] +
                           (["DEFAULT", "VERBOSE"] if _before(10, 0) else []))

CalibrationAlgoType = _enum("CalibrationAlgoType", ["LEGACY_CALIBRATION", "ENTROPY_CALIBRATION",
                                                    "ENTROPY_CALIBRATION_2", "MINMAX_CALIBRATION"])


def nptype(trt_type: Any) -> Any:
    """numpy's type for a DataType, built as each version's wheel builds it (see the module docstring)."""
    import numpy as np

    np = _DeviceNumpy(np)
    mapping = {float32: np.float32, float16: np.float16, int8: np.int8, int32: np.int32}
    if _V <= (8, 5, 2):
        mapping[bool] = np.bool  # NVIDIA's code up to 8.5.2: AttributeError on numpy 1.24-1.26
    else:
        mapping[bool] = np.bool_
    if _since(8, 5):
        mapping[uint8] = np.uint8
    if _since(10, 0):
        mapping[int64] = np.int64
    if trt_type in mapping:
        return mapping[trt_type]
    raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")


class _DeviceNumpy:
    """numpy as the TensorRT wheel sees it on the device: the numpy installed here, except that with
    ``FAKE_NUMPY_VERSION`` set to 1.24-1.26 the aliases numpy 1.24 expired (``np.bool``, ``np.int``,
    ``np.float``, ``np.complex``, ``np.object``, ``np.str``; numpy 1.24.0 release notes, "Expired
    deprecations") raise AttributeError as they did there.  numpy 2.0 brought ``np.bool`` back (as
    ``np.bool_``), so the numpy 2.x here cannot itself show the JetPack 5 failure, and numpy's own
    internals need the name, so it cannot be removed from the real module either."""

    EXPIRED = ("bool", "int", "float", "complex", "object", "str")

    def __init__(self, module: Any) -> None:
        self._module = module
        version = tuple(int(p) for p in re.findall(r"\d+", os.environ.get("FAKE_NUMPY_VERSION", ""))[:2])
        self._expired = (1, 24) <= version < (2, 0)

    def __getattr__(self, name: str) -> Any:
        if self._expired and name in self.EXPIRED:
            raise AttributeError("module 'numpy' has no attribute '{0}'.\n`np.{0}` was a deprecated alias for the "
                                 "builtin `{0}`. (numpy {1})".format(name, os.environ["FAKE_NUMPY_VERSION"]))
        return getattr(self._module, name)


def volume(iterable: Any) -> int:
    result = 1
    for item in iterable:
        result *= item
    return result


class Dims(tuple):
    """A shape (iterable of ints, as TensorRT's Dims)."""


class IHostMemory:
    """Serialized bytes (``bytes(memory)`` and the buffer protocol via ``memoryview``)."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)

    def __bytes__(self) -> bytes:
        return self._data

    def __len__(self) -> int:
        return len(self._data)

    @property
    def nbytes(self) -> int:
        return len(self._data)


# ---------------------------------------------------------------------------------------------- callbacks
class IProfiler:
    def __init__(self) -> None:
        pass

    def report_layer_time(self, layer_name: str, ms: float) -> None:
        raise NotImplementedError


class Profiler(IProfiler):
    def report_layer_time(self, layer_name: str, ms: float) -> None:
        print("{}: {}ms".format(layer_name, ms))


def _callback(owner: str, function: Any, *args: Any) -> Tuple[bool, Any]:
    """Run a Python override as the bindings do: an exception is printed and swallowed."""
    try:
        return True, function(*args)
    except Exception as exc:  # noqa: BLE001  (pyCore.cpp / pyInt8.cpp catch std::exception)
        sys.stderr.write("[ERROR] Exception caught in {}(): {}\n".format(owner, exc))
        return False, None


if _before(11, 0):  # pyInt8.cpp is gone at v11.0: no implicit INT8 calibration
    class IInt8Calibrator:
        def __init__(self) -> None:
            pass

        def get_batch_size(self) -> int:
            raise NotImplementedError

        def get_batch(self, names: List[str]) -> Any:
            raise NotImplementedError

        def read_calibration_cache(self) -> Any:
            raise NotImplementedError

        def write_calibration_cache(self, cache: Any) -> None:
            raise NotImplementedError

    class IInt8EntropyCalibrator2(IInt8Calibrator):
        def get_algorithm(self) -> Any:
            return CalibrationAlgoType.ENTROPY_CALIBRATION_2


# ---------------------------------------------------------------------------------------------- network
class ITensor:
    def __init__(self, name: str, shape: Sequence[int], dtype: Any) -> None:
        self.name = name
        self.shape = Dims(shape)
        self.dtype = dtype


class ILayer:
    def __init__(self, name: str, op_type: str, outputs: int) -> None:
        self.name = name
        self.type = op_type
        self.num_outputs = outputs
        self._precision = None  # type: Any
        self._output_types = {}  # type: Dict[int, Any]

    if _before(11, 0):  # pyGraph.cpp: ILayer.precision and set_output_type are gone at v11.0
        @property
        def precision(self) -> Any:
            return self._precision if self._precision is not None else float32

        @precision.setter
        def precision(self, value: Any) -> None:
            self._precision = value

        def set_output_type(self, index: int, dtype: Any) -> None:
            self._output_types[index] = dtype


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.explicit_batch = _since(10, 0) or builtins.bool(flags & (1 << int(NetworkDefinitionCreationFlag.EXPLICIT_BATCH)))
        self.strongly_typed = _since(11, 0) or (_since(10, 0) and builtins.bool(
            flags & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED))))
        self.model_bytes = b""
        self.inputs = []  # type: List[ITensor]
        self.outputs = []  # type: List[ITensor]
        self.layers = []  # type: List[ILayer]
        self.nodes = []  # type: List[Tuple[str, str]]

    @property
    def has_implicit_batch_dimension(self) -> bool:
        return not self.explicit_batch

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_input(self, index: int) -> ITensor:
        return self.inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self.outputs[index]

    def get_layer(self, index: int) -> ILayer:
        return self.layers[index]


# ONNX element types -> DataType as the ONNX parser of each version imports them.
_ONNX_TYPES = {1: "FLOAT", 10: "HALF", 3: "INT8", 6: "INT32", 9: "BOOL", 2: "UINT8", 7: "INT64"}


class ParserError:
    def __init__(self, desc: str, node: int = -1) -> None:
        self._desc = desc
        self._node = node

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def __str__(self) -> str:
        return "In node {} (parseGraph): {}".format(self._node, self._desc)


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
        self.network = network
        self.logger = logger
        self.errors = []  # type: List[ParserError]

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> ParserError:
        return self.errors[index]

    def clear_errors(self) -> None:
        self.errors = []

    def _fail(self, message: str) -> bool:
        self.errors.append(ParserError(message))
        _log(self.logger, ILogger.Severity.ERROR, "ModelImporter.cpp: " + message)
        return False

    def parse(self, model: bytes, path: Optional[str] = None) -> bool:
        import onnx

        network = self.network
        if not network.explicit_batch:
            # onnx-tensorrt (8.x): "Network must have explicit batch dimension" unless EXPLICIT_BATCH is set.
            return self._fail("Assertion failed: !_importer_ctx.network()->hasImplicitBatchDimension() && "
                              "\"This version of the ONNX parser only supports TensorRT INetworkDefinitions "
                              "with an explicit batch dimension.\"")
        try:
            proto = onnx.load_from_string(bytes(model))
        except Exception as exc:  # noqa: BLE001
            return self._fail("Failed to parse ONNX model: {}".format(exc))
        initializers = {init.name for init in proto.graph.initializer}
        for value in proto.graph.input:
            if value.name in initializers:
                continue
            network.inputs.append(ITensor(value.name, _shape(value), self._dtype(value)))
        for value in proto.graph.output:
            network.outputs.append(ITensor(value.name, _shape(value), self._dtype(value)))
        for index, node in enumerate(proto.graph.node):
            name = node.name or "(Unnamed Layer* {}) [{}]".format(index, node.op_type)
            network.layers.append(ILayer(name, node.op_type, len(node.output)))
            network.nodes.append((name, node.op_type))
        network.model_bytes = bytes(model)
        return True

    @staticmethod
    def _dtype(value: Any) -> Any:
        element = value.type.tensor_type.elem_type
        name = _ONNX_TYPES.get(element, "FLOAT")
        if name == "INT64" and _before(10, 0):
            name = "INT32"  # 8.x has no INT64 tensors: the parser casts them down to INT32 (with a warning)
        if name == "UINT8" and _before(8, 5):
            name = "INT8"
        return DataType[name]


def _shape(value: Any) -> List[int]:
    return [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]


# ---------------------------------------------------------------------------------------------- builder
class ITimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = bytes(data) or b"fake-timing-cache:" + __version__.encode()

    def serialize(self) -> IHostMemory:
        return IHostMemory(self.data)

    def combine(self, other: "ITimingCache", ignore_mismatch: bool) -> bool:
        return True

    def reset(self) -> bool:
        return True


class IBuilderConfig:
    profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY  # the default (pyCoreDoc.h)

    def __init__(self) -> None:
        self.flags = 1 << int(BuilderFlag.TF32)  # pyCoreDoc.h: TF32 "Enabled by default"
        self._pools = {}  # type: Dict[Any, int]
        self._workspace = 1 << 30
        self._calibrator = None  # type: Any
        self._timing_cache = None  # type: Optional[ITimingCache]

    def set_flag(self, flag: Any) -> None:
        self.flags |= 1 << int(flag)

    def clear_flag(self, flag: Any) -> None:
        self.flags &= ~(1 << int(flag))

    def get_flag(self, flag: Any) -> bool:
        return builtins.bool(self.flags & (1 << int(flag)))

    def flag_names(self) -> List[str]:
        return sorted(flag.name for flag in BuilderFlag if self.get_flag(flag))

    if _before(10, 0):  # max_workspace_size: gone at v10.3.0
        @property
        def max_workspace_size(self) -> int:
            return self._workspace

        @max_workspace_size.setter
        def max_workspace_size(self, value: int) -> None:
            self._workspace = int(value)

    if _since(8, 4):
        def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
            self._pools[pool] = int(pool_size)

        def get_memory_pool_limit(self, pool: Any) -> int:
            return self._pools.get(pool, self._workspace)

    if _before(11, 0):
        @property
        def int8_calibrator(self) -> Any:
            return self._calibrator

        @int8_calibrator.setter
        def int8_calibrator(self, value: Any) -> None:
            self._calibrator = value

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
        return ITimingCache(bytes(serialized_timing_cache))

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        self._timing_cache = cache
        return True

    def get_timing_cache(self) -> Optional[ITimingCache]:
        return self._timing_cache


MAGIC = b"FAKETRT1"


class Builder:
    def __init__(self, logger: ILogger) -> None:
        self.logger = logger
        # The builder works through the CUDA runtime: the calling thread's context (or its device's primary one).
        self.device = DRIVER.runtime_context().device

    if _before(11, 0):  # gone at v11.0 (pyCore.cpp)
        @property
        def platform_has_fast_fp16(self) -> bool:
            return self.device.flavour.fast_fp16

        @property
        def platform_has_fast_int8(self) -> bool:
            return self.device.flavour.fast_int8

        @property
        def platform_has_tf32(self) -> bool:
            return self.device.flavour.tf32

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(int(flags))

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> Optional[IHostMemory]:
        if not network.model_bytes:
            _log(self.logger, ILogger.Severity.ERROR, "4: [network.cpp::validate] Network has no inputs or outputs")
            return None
        flags = config.flag_names()
        if "INT8" in flags and not network.strongly_typed and not self._calibrate(network, config):
            return None
        header = {
            "version": __version__,
            "device": {"name": self.device.flavour.name, "major": self.device.flavour.major,
                       "minor": self.device.flavour.minor},
            "flags": flags,
            "strongly_typed": network.strongly_typed,
            "tensors": [{"name": t.name, "input": True, "shape": list(t.shape), "dtype": t.dtype.name}
                        for t in network.inputs] +
                       [{"name": t.name, "input": False, "shape": list(t.shape), "dtype": t.dtype.name}
                        for t in network.outputs],
            "layers": fused_layer_names(network.nodes),
        }
        text = json.dumps(header).encode()
        return IHostMemory(MAGIC + struct.pack("<I", len(text)) + text + network.model_bytes)

    if _before(10, 0):  # build_engine: gone at v10.3.0
        def build_engine(self, network: INetworkDefinition, config: IBuilderConfig) -> Any:
            data = self.build_serialized_network(network, config)
            return None if data is None else Runtime(self.logger).deserialize_cuda_engine(bytes(data))

    def _calibrate(self, network: INetworkDefinition, config: IBuilderConfig) -> bool:
        """8.x implicit INT8: read the calibrator's cache, else feed it batches (pyInt8.cpp's callbacks)."""
        calibrator = getattr(config, "int8_calibrator", None)
        failure = ("Calibration failure occurred with no scaling factors detected. This could be due to no int8 "
                   "calibrator or insufficient custom scales for network layers.")
        if calibrator is None:
            _log(self.logger, ILogger.Severity.ERROR, "2: [standardEngineBuilder.cpp::initCalibrationParams] " + failure)
            return False
        ok, cache = _callback("read_calibration_cache", calibrator.read_calibration_cache)
        if ok and cache:
            return True
        names = [t.name for t in network.inputs]
        context = DRIVER.runtime_context()
        batches, peaks = 0, []
        while True:
            ok, pointers = _callback("get_batch", calibrator.get_batch, names)
            if not ok or not pointers:
                break
            for tensor, pointer in zip(network.inputs, pointers):
                nbytes = volume(tensor.shape) * tensor.dtype.itemsize
                try:
                    DRIVER.device_access(int(pointer), nbytes, context)
                except CudaError as exc:
                    _log(self.logger, ILogger.Severity.ERROR, "1: [calibrator.cpp::add] Error Code 1: Cuda Runtime "
                         "({})".format(exc))
                    return False
                import numpy as np

                values = np.frombuffer((ctypes_buffer(int(pointer), nbytes)), dtype=np.float32)
                peaks.append(float(np.abs(values).max()) if values.size else 0.0)
            batches += 1
        if not batches:
            _log(self.logger, ILogger.Severity.ERROR, "2: [standardEngineBuilder.cpp::initCalibrationParams] " + failure)
            return False
        scale = struct.unpack("<I", struct.pack("<f", max(peaks) / 127.0 or 1.0))[0]
        lines = ["TRT-{}{}{:02d}-EntropyCalibration2".format(_V[0], _V[1], _V[2])] + \
                ["{}: {:08x}".format(name, scale) for name in names]
        _callback("write_calibration_cache", calibrator.write_calibration_cache, ("\n".join(lines) + "\n").encode())
        return True


def ctypes_buffer(address: int, nbytes: int) -> bytes:
    import ctypes

    return ctypes.string_at(address, nbytes)


# Node kinds the builder folds away (no layer of their own at run time).
_FOLDED = {"Identity", "Constant"}
# Node kinds TensorRT fuses into the convolution before them, and kinds Myelin takes (8.5+).
_FUSED_INTO_CONV = {"BatchNormalization", "Relu", "Add", "Clip", "LeakyRelu", "Sigmoid", "Mul"}
_MYELIN = {"Resize", "Concat", "Slice", "ArgMax", "Cast", "Pad", "ReduceMean", "GlobalAveragePool", "Softmax",
           "Transpose", "Reshape", "Shape", "Gather", "Unsqueeze", "Squeeze", "AveragePool", "Upsample"}


def fused_layer_names(nodes: Sequence[Tuple[str, str]]) -> List[str]:
    """The engine's layer names: constants and identities fold away, a convolution absorbs the pointwise
    nodes after it (``A + B + C``); from 8.5 a run of two or more Myelin nodes becomes
    ``{ForeignNode[FIRST...LAST]}``."""
    nodes = [(name, kind) for name, kind in nodes if kind not in _FOLDED]
    layers = []  # type: List[str]
    index = 0
    while index < len(nodes):
        name, kind = nodes[index]
        if kind in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            group = [name]
            index += 1
            while index < len(nodes) and nodes[index][1] in _FUSED_INTO_CONV:
                group.append(nodes[index][0])
                index += 1
            layers.append(" + ".join(group))
            continue
        if _since(8, 5) and kind in _MYELIN:
            end = index
            while end + 1 < len(nodes) and nodes[end + 1][1] in _MYELIN:
                end += 1
            if end > index:
                layers.append("{{ForeignNode[{}...{}]}}".format(name, nodes[end][0]))
                index = end + 1
                continue
        layers.append(name)
        index += 1
    return layers


# ---------------------------------------------------------------------------------------------- runtime
class Runtime:
    def __init__(self, logger: ILogger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine: Any) -> Optional["ICudaEngine"]:
        data = bytes(serialized_engine)
        context = DRIVER.runtime_context()
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
            _log(self.logger, ILogger.Severity.ERROR, "1: [stdArchiveReader.cpp::StdArchiveReader::32] Error Code 1: "
                 "Serialization (Serialization assertion magicTagRead == kMAGIC_TAG failed.Magic tag does not match)")
            return None
        (length,) = struct.unpack("<I", data[len(MAGIC):len(MAGIC) + 4])
        header = json.loads(data[len(MAGIC) + 4:len(MAGIC) + 4 + length].decode())
        if header["version"] != __version__:
            _log(self.logger, ILogger.Severity.ERROR, "6: The engine plan file is not compatible with this version of "
                 "TensorRT, expecting library version {} got {}, please rebuild.".format(__version__, header["version"]))
            return None
        device = header["device"]
        flavour = context.device.flavour
        if (device["major"], device["minor"]) != (flavour.major, flavour.minor):
            _log(self.logger, ILogger.Severity.ERROR, "6: The engine plan file is generated on an incompatible device, "
                 "expecting compute {}.{} got compute {}.{}, please rebuild.".format(
                     flavour.major, flavour.minor, device["major"], device["minor"]))
            return None
        return ICudaEngine(header, data[len(MAGIC) + 4 + length:], context.device, self.logger)


class _IOTensor:
    def __init__(self, spec: Dict[str, Any]) -> None:
        self.name = spec["name"]
        self.is_input = spec["input"]
        self.shape = Dims(spec["shape"])
        self.dtype = DataType[spec["dtype"]]


class ICudaEngine:
    def __init__(self, header: Dict[str, Any], model: bytes, device: fake_cuda.Device, logger: ILogger) -> None:
        self.header = header
        self.model = model
        self.device = device
        self.logger = logger
        self.tensors = [_IOTensor(spec) for spec in header["tensors"]]
        self._session = None  # type: Any

    @property
    def num_layers(self) -> int:
        return len(self.header["layers"])

    def _tensor(self, name: str) -> Optional[_IOTensor]:
        return next((t for t in self.tensors if t.name == name), None)

    if _before(10, 0):  # the binding API: gone at v10.3.0
        @property
        def num_bindings(self) -> int:
            return len(self.tensors)

        def get_binding_name(self, index: int) -> str:
            return self.tensors[index].name

        def get_binding_index(self, name: str) -> int:
            return next((i for i, t in enumerate(self.tensors) if t.name == name), -1)

        def binding_is_input(self, index: Any) -> bool:
            tensor = self.tensors[index] if isinstance(index, int) else self._tensor(index)
            return tensor.is_input

        def get_binding_shape(self, index: Any) -> Dims:
            return (self.tensors[index] if isinstance(index, int) else self._tensor(index)).shape

        def get_binding_dtype(self, index: Any) -> Any:
            return (self.tensors[index] if isinstance(index, int) else self._tensor(index)).dtype

    if _since(8, 5):  # the named-tensor API (absent at 8.2.1 and 8.4.1)
        @property
        def num_io_tensors(self) -> int:
            return len(self.tensors)

        def get_tensor_name(self, index: int) -> str:
            return self.tensors[index].name

        def get_tensor_mode(self, name: str) -> Any:
            tensor = self._tensor(name)
            if tensor is None:
                return TensorIOMode.NONE
            return TensorIOMode.INPUT if tensor.is_input else TensorIOMode.OUTPUT

        def get_tensor_shape(self, name: str) -> Dims:
            return self._tensor(name).shape

        def get_tensor_dtype(self, name: str) -> Any:
            return self._tensor(name).dtype

    def create_execution_context(self) -> "IExecutionContext":
        return IExecutionContext(self)

    def session(self) -> Any:
        """ONNX Runtime (CPU) over the model as this engine's precision would see it."""
        if self._session is None:
            import onnx
            import onnxruntime

            model = onnx.load_from_string(self.model)
            _round_weights(model, self.rounding())
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            self._session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                                         providers=["CPUExecutionProvider"])
        return self._session

    def rounding(self) -> Optional[str]:
        flags = self.header["flags"]
        if self.header.get("strongly_typed"):
            return None
        if "FP16" in flags and self.device.flavour.fast_fp16:
            return "fp16"
        if "TF32" in flags and self.device.flavour.tf32 and "INT8" not in flags:
            return "tf32"
        return None


def _round(array: Any, mode: Optional[str]) -> Any:
    import numpy as np

    if mode is None or array.dtype != np.float32:
        return array
    if mode == "fp16":
        return array.astype(np.float16).astype(np.float32)
    bits = np.ascontiguousarray(array).view(np.uint32)
    rounded = (bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)  # round to a 10-bit mantissa (TF32)
    return rounded.view(np.float32)


def _round_weights(model: Any, mode: Optional[str]) -> None:
    if mode is None:
        return
    import numpy as np
    from onnx import numpy_helper

    for index, initializer in enumerate(model.graph.initializer):
        array = numpy_helper.to_array(initializer)
        if array.dtype == np.float32 and array.ndim >= 2:
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(_round(array, mode), initializer.name))


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self._profiler = None  # type: Any
        self._addresses = {}  # type: Dict[str, int]

    @property
    def profiler(self) -> Any:
        return self._profiler

    @profiler.setter
    def profiler(self, value: Any) -> None:
        self._profiler = value

    def _error(self, message: str) -> bool:
        _log(self.engine.logger, ILogger.Severity.ERROR, message)
        return False

    if _since(8, 5):
        def set_tensor_address(self, name: str, memory: int) -> bool:
            if self.engine._tensor(name) is None:
                return self._error("3: [executionContext.cpp::setTensorAddress] Error Code 3: API Usage Error "
                                   "(Parameter check failed, condition: tensor named {} is not an I/O tensor)".format(name))
            self._addresses[name] = int(memory)
            return True

        def get_tensor_address(self, name: str) -> int:
            return self._addresses.get(name, 0)

        def execute_async_v3(self, stream_handle: int) -> bool:
            missing = [t.name for t in self.engine.tensors if t.name not in self._addresses]
            if missing:
                return self._error("3: [executionContext.cpp::enqueueV3] Error Code 3: API Usage Error (Parameter "
                                   "check failed, condition: address of tensor {} is not set)".format(missing[0]))
            return self._enqueue(dict(self._addresses), stream_handle)

    if _before(10, 0):
        def execute_async_v2(self, bindings: Sequence[int], stream_handle: int) -> bool:
            if len(bindings) != len(self.engine.tensors):
                return self._error("3: [executionContext.cpp::enqueueV2] Error Code 3: API Usage Error (bindings)")
            return self._enqueue({t.name: int(b) for t, b in zip(self.engine.tensors, bindings)}, stream_handle)

    def _enqueue(self, addresses: Dict[str, int], stream_handle: int) -> bool:
        import numpy as np

        where = "1: [executionContext.cpp::enqueueInternal] Error Code 1: Cuda Runtime ({})"
        try:
            # "A kernel launch will fail if it is issued to a stream that is not associated to the current
            # device" (CUDA C++ Programming Guide, Multi-Device System, "Stream and Event Behavior").
            context = DRIVER.runtime_context()
            stream = DRIVER.stream_by_handle(int(stream_handle))
            DRIVER.check_stream(stream, context)
            if context.device is not self.engine.device:
                raise CudaError(fake_cuda.CUDA_ERROR_INVALID_HANDLE, "engine of device {} enqueued on device {}".format(
                    self.engine.device.ordinal, context.device.ordinal))
            feed = {}
            mode = self.engine.rounding()
            for tensor in self.engine.tensors:
                dtype = np.dtype(_NUMPY[tensor.dtype.name])
                nbytes = volume(tensor.shape) * dtype.itemsize
                DRIVER.device_access(addresses[tensor.name], nbytes, context)
                if tensor.is_input:
                    raw = np.frombuffer(ctypes_buffer(addresses[tensor.name], nbytes), dtype=dtype)
                    feed[tensor.name] = _round(raw.reshape(tuple(tensor.shape)), mode)
        except CudaError as exc:
            return self._error(where.format(fake_cuda.ERROR_STRINGS.get(exc.code, "unknown error")))
        session = self.engine.session()
        results = session.run(None, feed)
        import ctypes

        for tensor, value in zip([t for t in self.engine.tensors if not t.is_input], results):
            out = np.ascontiguousarray(value.astype(_NUMPY[tensor.dtype.name]))
            ctypes.memmove(addresses[tensor.name], out.ctypes.data, out.nbytes)
        layers = self.engine.header["layers"]
        DRIVER.advance(stream, 0.05 * max(1, len(layers)))
        if self._profiler is not None:
            for name in layers:
                _callback("report_layer_time", self._profiler.report_layer_time, name, 0.05)
        return True


_NUMPY = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "BOOL": "bool", "UINT8": "uint8",
          "INT64": "int64"}
