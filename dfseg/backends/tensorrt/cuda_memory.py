"""CUDA buffers, one stream and events for the TensorRT runner, through pycuda (JetPack's usual
package) or cuda-python (NVIDIA's bindings, ``pip install cuda-python``), whichever imports.

Host buffers are page-locked so host<->device copies are real DMA and can be asynchronous.

CUDA's current context is per thread, in both libraries: pycuda keeps a context stack per thread
(``context_stack`` in pycuda's ``src/cpp/cuda.hpp``; a driver call on a thread with no current context
fails with "invalid device context", inducer/pycuda#242, NVIDIA/TensorRT#475), and the runtime API's
``cudaSetDevice`` sets the device of the calling thread only (other threads stay on device 0).  The live
pipeline activates a runner on the main thread and infers on its own inference thread, so every use of
a ``CudaMemory`` happens inside ``with memory.current():``, which makes its context current on the
calling thread for the block, whichever thread that is.

Device side: Python 3.6, no torch; both libraries are imported lazily.
"""

import contextlib
import ctypes
from typing import Any, ContextManager, Iterator, List, Tuple

import numpy as np

from ...errors import UserError
from .engines import device_label


class CudaMemory:
    """Interface of the two implementations below.  Every method but ``current``, ``device_name`` and
    ``close`` must be called inside ``with memory.current():`` on the calling thread."""

    library = "none"

    def current(self) -> ContextManager[None]:
        """A context manager that makes this memory's CUDA context current on the calling thread."""
        raise NotImplementedError

    def host(self, shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        raise NotImplementedError

    def device(self, nbytes: int) -> int:
        raise NotImplementedError

    def htod(self, device_ptr: int, host: np.ndarray) -> None:
        raise NotImplementedError

    def dtoh(self, host: np.ndarray, device_ptr: int) -> None:
        raise NotImplementedError

    @property
    def stream_handle(self) -> int:
        raise NotImplementedError

    def record(self, which: int) -> None:
        """Record event ``which`` (0: compute start, 1: compute end) on the stream."""
        raise NotImplementedError

    def elapsed_ms(self) -> float:
        raise NotImplementedError

    def synchronize(self) -> None:
        raise NotImplementedError

    def device_name(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class PycudaMemory(CudaMemory):
    library = "pycuda"

    def __init__(self, device_index: int = 0) -> None:
        import pycuda.driver as cuda  # type: ignore

        cuda.init()
        self.cuda = cuda
        self._device = cuda.Device(device_index)
        # The primary context is the one TensorRT's runtime-API calls use, so buffers are shared.  It is
        # pushed only for the blocks that need it (``current``), on whichever thread runs them.
        self._context = self._device.retain_primary_context()
        self._allocations: List[Any] = []
        with self.current():
            self._stream = cuda.Stream()
            self._events = (cuda.Event(), cuda.Event())

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        self._context.push()
        try:
            yield
        finally:
            self.cuda.Context.pop()

    def host(self, shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return self.cuda.pagelocked_empty(shape, dtype)

    def device(self, nbytes: int) -> int:
        allocation = self.cuda.mem_alloc(max(1, int(nbytes)))
        self._allocations.append(allocation)
        return int(allocation)

    def htod(self, device_ptr: int, host: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(device_ptr, host, self._stream)

    def dtoh(self, host: np.ndarray, device_ptr: int) -> None:
        self.cuda.memcpy_dtoh_async(host, device_ptr, self._stream)

    @property
    def stream_handle(self) -> int:
        return int(self._stream.handle)

    def record(self, which: int) -> None:
        self._events[which].record(self._stream)

    def elapsed_ms(self) -> float:
        self._events[1].synchronize()
        return float(self._events[1].time_since(self._events[0]))

    def synchronize(self) -> None:
        self._stream.synchronize()

    def device_name(self) -> str:
        major, minor = self._device.compute_capability()
        return device_label(self._device.name(), major, minor)

    def close(self) -> None:
        with self.current():
            for allocation in self._allocations:
                allocation.free()
            self._allocations = []
            self._events = ()
            self._stream = None
        self._context.detach()  # releases the retained primary context


class CudaPythonMemory(CudaMemory):
    library = "cuda-python"

    def __init__(self, device_index: int = 0) -> None:
        try:
            from cuda.bindings import runtime as cudart  # type: ignore  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart  # type: ignore
        self.cudart = cudart
        self.device_index = device_index
        self._host_ptrs: List[int] = []
        self._device_ptrs: List[int] = []
        with self.current():
            self._stream = self._check(cudart.cudaStreamCreate())
            self._events = (self._check(cudart.cudaEventCreate()), self._check(cudart.cudaEventCreate()))

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        # cudaSetDevice is per thread: without it a new thread works on device 0, whatever was asked.
        previous = self._check(self.cudart.cudaGetDevice())
        self._check(self.cudart.cudaSetDevice(self.device_index))
        try:
            yield
        finally:
            if previous != self.device_index:
                self.cudart.cudaSetDevice(previous)

    def _check(self, result: Any) -> Any:
        err, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if int(err) != 0:
            _, name = self.cudart.cudaGetErrorName(err)
            raise RuntimeError("CUDA error {}".format(name.decode() if isinstance(name, bytes) else name))
        return rest[0] if len(rest) == 1 else (rest or None)

    def host(self, shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        pointer = int(self._check(self.cudart.cudaMallocHost(max(1, nbytes))))
        self._host_ptrs.append(pointer)
        buffer = (ctypes.c_byte * max(1, nbytes)).from_address(pointer)
        return np.frombuffer(buffer, dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    def device(self, nbytes: int) -> int:
        pointer = int(self._check(self.cudart.cudaMalloc(max(1, int(nbytes)))))
        self._device_ptrs.append(pointer)
        return pointer

    def htod(self, device_ptr: int, host: np.ndarray) -> None:
        self._check(self.cudart.cudaMemcpyAsync(device_ptr, host.ctypes.data, host.nbytes,
                                                self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream))

    def dtoh(self, host: np.ndarray, device_ptr: int) -> None:
        self._check(self.cudart.cudaMemcpyAsync(host.ctypes.data, device_ptr, host.nbytes,
                                                self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream))

    @property
    def stream_handle(self) -> int:
        return int(self._stream)

    def record(self, which: int) -> None:
        self._check(self.cudart.cudaEventRecord(self._events[which], self._stream))

    def elapsed_ms(self) -> float:
        self._check(self.cudart.cudaEventSynchronize(self._events[1]))
        return float(self._check(self.cudart.cudaEventElapsedTime(self._events[0], self._events[1])))

    def synchronize(self) -> None:
        self._check(self.cudart.cudaStreamSynchronize(self._stream))

    def device_name(self) -> str:
        props = self._check(self.cudart.cudaGetDeviceProperties(self.device_index))
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        return device_label(name, props.major, props.minor)

    def close(self) -> None:
        with self.current():
            for pointer in self._device_ptrs:
                self.cudart.cudaFree(pointer)
            for pointer in self._host_ptrs:
                self.cudart.cudaFreeHost(pointer)
            self._device_ptrs, self._host_ptrs = [], []
            for event in self._events:
                self.cudart.cudaEventDestroy(event)
            self.cudart.cudaStreamDestroy(self._stream)
            self._events = ()


def open_cuda(prefer: str = "auto", device_index: int = 0) -> CudaMemory:
    """pycuda, else cuda-python (``prefer`` picks one explicitly)."""
    order = {"auto": ("pycuda", "cuda-python"), "pycuda": ("pycuda",), "cuda-python": ("cuda-python",)}.get(prefer)
    if order is None:
        raise UserError("cuda library {!r}: choose auto, pycuda or cuda-python".format(prefer))
    errors = []
    for library in order:
        try:
            return PycudaMemory(device_index) if library == "pycuda" else CudaPythonMemory(device_index)
        except ImportError as exc:
            errors.append("{}: {}".format(library, exc))
    raise UserError("the tensorrt backend needs pycuda or cuda-python for GPU buffers ({}); install one: "
                    "pip install pycuda (JetPack: sudo apt install python3-pycuda) or pip install cuda-python".format(
                        "; ".join(errors)))
