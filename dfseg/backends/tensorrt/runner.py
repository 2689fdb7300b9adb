"""TensorRT runner: an engine (a ``.engine`` file, or one that ``builder.EngineFromOnnx`` builds from
an ONNX file into the engine cache) run with the TensorRT Python API, one code path for 8.2 to 11.x
(the differences live in ``compat``).

Inference copies inputs into page-locked host buffers, then on one CUDA stream: H2D copies,
compute between two CUDA events, D2H copies, one synchronize.  ``last_compute_ms`` is the event
time (GPU compute only); the base class's wall clock gives end to end (copies included).

Device side: Python 3.6, no torch; tensorrt and cuda-python/pycuda load in ``activate``.
"""

from typing import Any, Dict, List, Optional  # noqa: F401  (List: in type comments)

import numpy as np

from ...build_config import BuildConfig
from ...errors import UserError
from ..base import ModelFileRunner, TensorMeta
from . import compat
from .builder import EngineFromOnnx, TrtLogger, check_engine_precision, import_tensorrt
from .cuda_memory import CudaMemory, open_cuda


class TensorRTRunner(ModelFileRunner):
    """Runs an ONNX model (built into the engine cache) or a ``.engine`` file with TensorRT."""

    backend = "tensorrt"

    def __init__(self, model_path: str, config: Optional[BuildConfig] = None, cuda: str = "auto",
                 device_index: int = 0, name: Optional[str] = None) -> None:
        super().__init__(model_path, config, name)
        self.cuda_library = cuda
        self.device_index = device_index
        self.trt = None  # type: Any
        self.memory: Optional[CudaMemory] = None
        self.engine = None  # type: Any
        self.context = None  # type: Any
        self._tensors = []  # type: List[compat.IOTensor]
        self._host = {}  # type: Dict[str, np.ndarray]
        self._device = {}  # type: Dict[str, int]
        self._bindings = []  # type: List[int]

    # ------------------------------------------------------------------ lifecycle
    def activate_impl(self) -> None:
        trt = self.trt = import_tensorrt()
        self.memory = open_cuda(self.cuda_library, self.device_index)
        try:
            with self.memory.current():
                data = self._engine_bytes(trt)
                self.engine, self.context = load_engine(trt, data, self.engine_path or self.model_path)
                self._allocate()
        except BaseException:
            self.deactivate_impl()  # nothing of a failed activation stays alive: engine, context, buffers
            raise

    def _engine_bytes(self, trt: Any) -> bytes:
        if not self.model_path.endswith(".onnx"):
            check_engine_precision(self.model_path, self.config)
            self.engine_path, self.cache_hit = self.model_path, True
            with open(self.model_path, "rb") as handle:
                return handle.read()
        loader = EngineFromOnnx(self.model_path, self.config)
        data = loader(trt, self.memory)
        self.engine_path, self.cache_hit, self.built_model = loader.engine_path, loader.cache_hit, loader.built_model
        return data

    def _allocate(self) -> None:
        trt, memory = self.trt, self.memory
        assert memory is not None
        self._tensors = compat.io_tensors(trt, self.engine)
        for tensor in self._tensors:
            if any(d < 0 for d in tensor.shape):
                raise UserError("{}: dynamic input shapes are not supported; export the ONNX model at a fixed "
                                "size (dfseg-export --size)".format(self.name))
            self._host[tensor.name] = memory.host(tensor.shape, tensor.dtype)
            self._device[tensor.name] = memory.device(self._host[tensor.name].nbytes)
        self._bindings = compat.bind_addresses(trt, self.context, self._tensors, self._device)

    def deactivate_impl(self) -> None:
        memory, self.memory = self.memory, None
        if memory is None:
            self.context = self.engine = None
            self._tensors, self._host, self._device, self._bindings = [], {}, {}, []
            return
        with memory.current():  # TensorRT and pycuda free device and page-locked memory in its context
            self.context = self.engine = None
            self._tensors, self._host, self._device, self._bindings = [], {}, {}, []
        memory.close()

    # ------------------------------------------------------------------ inference
    def input_metadata_impl(self) -> Dict[str, TensorMeta]:
        return {t.name: TensorMeta(t.shape, t.dtype) for t in self._tensors if t.is_input}

    def output_metadata(self) -> Dict[str, TensorMeta]:
        self._require_active()
        return {t.name: TensorMeta(t.shape, t.dtype) for t in self._tensors if not t.is_input}

    def synchronize(self) -> None:
        if self.memory is not None:
            with self.memory.current():
                self.memory.synchronize()

    def infer_impl(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        memory = self.memory
        assert memory is not None
        with memory.current():  # on whichever thread infers (the live pipeline's is not the activating one)
            return self._infer_current(memory, feed)

    def _infer_current(self, memory: CudaMemory, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        inputs = [t for t in self._tensors if t.is_input]
        outputs = [t for t in self._tensors if not t.is_input]
        for tensor in inputs:
            np.copyto(self._host[tensor.name], feed[tensor.name], casting="same_kind")
            memory.htod(self._device[tensor.name], self._host[tensor.name])
        memory.record(0)
        compat.execute(self.trt, self.context, self._bindings, memory.stream_handle)
        memory.record(1)
        for tensor in outputs:
            memory.dtoh(self._host[tensor.name], self._device[tensor.name])
        memory.synchronize()
        self.last_compute_ms = memory.elapsed_ms()
        return {tensor.name: self._host[tensor.name].copy() for tensor in outputs}

    def layer_profile(self, feed: Dict[str, np.ndarray], runs: int = 20) -> Dict[str, float]:
        """Median per-layer GPU time (ms per inference) over ``runs`` profiled inferences."""
        from .profiling import collect_layer_times

        self._require_active()
        self._check_feed(feed)
        assert self.memory is not None
        with self.memory.current():
            return collect_layer_times(self.trt, self.context, lambda: self.infer_impl(feed), runs)


def load_engine(trt: Any, data: bytes, source: str) -> Any:
    """(engine, execution context) from serialized engine bytes."""
    engine = trt.Runtime(TrtLogger.get(trt)).deserialize_cuda_engine(data)
    if engine is None:
        raise UserError("{}: TensorRT cannot deserialize this engine (built by another TensorRT version or for "
                        "another GPU?); delete it to rebuild".format(source))
    return engine, engine.create_execution_context()
