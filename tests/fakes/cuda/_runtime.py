"""The cudart functions dfseg calls, with cuda-python's calling convention: every function returns a
tuple whose first item is a ``cudaError_t`` (``(err,)`` or ``(err, value)``; NVIDIA/cuda-python,
cuda/bindings/runtime.pyx.in), handles are objects that ``int()`` turns into the address, and
``cudaGetErrorName`` returns ``(err, bytes)``.

The semantics are the CUDA runtime's (see ``fake_cuda``): a current device per thread, 0 until
``cudaSetDevice`` on that thread; a call on a thread without a current context makes the current
device's primary context current; a stream of another context is ``cudaErrorInvalidResourceHandle``.
"""

import enum
from typing import Any

import fake_cuda
from fake_cuda import DRIVER, CudaError


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInitializationError = 3
    cudaErrorInvalidDevice = 101
    cudaErrorDeviceUninitialized = 201
    cudaErrorInvalidResourceHandle = 400
    cudaErrorIllegalAddress = 700


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


class _Handle:
    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def __int__(self) -> int:
        return self._raw.handle

    def getPtr(self) -> int:
        return self._raw.handle


class cudaStream_t(_Handle):
    pass


class cudaEvent_t(_Handle):
    pass


class cudaDeviceProp:
    def __init__(self, device: fake_cuda.Device) -> None:
        # cuda-python gives the C char[256] as bytes, NUL padded.
        self.name = device.flavour.name.encode() + b"\x00" * (256 - len(device.flavour.name))
        self.major = device.flavour.major
        self.minor = device.flavour.minor


def _err(exc: CudaError) -> cudaError_t:
    return cudaError_t(exc.code)


def _call(function, *args):
    try:
        value = function(*args)
    except CudaError as exc:
        return (_err(exc),) if value_free(function) else (_err(exc), None)
    return (cudaError_t.cudaSuccess,) if value_free(function) else (cudaError_t.cudaSuccess, value)


def value_free(function) -> bool:
    return getattr(function, "returns_nothing", False)


def _nothing(function):
    function.returns_nothing = True
    return function


def cudaGetErrorName(error: Any):
    code = int(error)
    return (cudaError_t.cudaSuccess, fake_cuda.RUNTIME_NAMES.get(code, "cudaErrorUnknown").encode())


def cudaGetErrorString(error: Any):
    return (cudaError_t.cudaSuccess, fake_cuda.ERROR_STRINGS.get(int(error), "unknown error").encode())


def cudaGetDeviceCount():
    return (cudaError_t.cudaSuccess, len(DRIVER.devices))


@_nothing
def _set_device(ordinal: int) -> None:
    DRIVER.runtime_set_device(int(ordinal))


def cudaSetDevice(device: int):
    return _call(_set_device, device)


def cudaGetDevice():
    return (cudaError_t.cudaSuccess, DRIVER.runtime_device())


def cudaGetDeviceProperties(device: int):
    return _call(lambda: cudaDeviceProp(DRIVER.device(int(device))))


def cudaMalloc(size: int):
    def allocate():
        DRIVER.runtime_context()
        return DRIVER.mem_alloc(int(size), True).address
    return _call(allocate)


def cudaMallocHost(size: int):
    def allocate():
        DRIVER.runtime_context()
        return DRIVER.mem_alloc(int(size), False).address
    return _call(allocate)


@_nothing
def _free(pointer: int) -> None:
    DRIVER.runtime_context()
    DRIVER.mem_free(int(pointer))


def cudaFree(devPtr: int):
    return _call(_free, devPtr)


def cudaFreeHost(ptr: int):
    return _call(_free, ptr)


def cudaStreamCreate():
    def create():
        DRIVER.runtime_context()
        return cudaStream_t(DRIVER.stream_create())
    return _call(create)


def _stream(stream: Any):
    if isinstance(stream, cudaStream_t):
        return stream._raw
    return DRIVER.stream_by_handle(int(stream or 0))


def cudaStreamDestroy(stream: Any):
    return _call(_nothing(lambda: DRIVER.stream_destroy(_stream(stream))))


def cudaStreamSynchronize(stream: Any):
    def synchronize():
        DRIVER.runtime_context()
        _stream(stream)
    return _call(_nothing(synchronize))


def cudaMemcpyAsync(dst: int, src: int, count: int, kind: Any, stream: Any):
    def copy():
        context = DRIVER.runtime_context()
        if int(kind) not in (cudaMemcpyKind.cudaMemcpyHostToDevice, cudaMemcpyKind.cudaMemcpyDeviceToHost):
            raise CudaError(fake_cuda.CUDA_ERROR_INVALID_VALUE, "only host<->device copies are simulated")
        DRIVER.copy(int(dst), int(src), int(count), context, _stream(stream),
                    int(kind) == cudaMemcpyKind.cudaMemcpyHostToDevice, runtime=True)
    return _call(_nothing(copy))


def cudaMemcpy(dst: int, src: int, count: int, kind: Any):
    return cudaMemcpyAsync(dst, src, count, kind, 0)


def cudaEventCreate():
    def create():
        DRIVER.runtime_context()
        return cudaEvent_t(DRIVER.event_create())
    return _call(create)


def cudaEventDestroy(event: Any):
    return (cudaError_t.cudaSuccess,)


def cudaEventRecord(event: cudaEvent_t, stream: Any = 0):
    def record():
        DRIVER.runtime_context()
        DRIVER.event_record(event._raw, _stream(stream), runtime=True)
    return _call(_nothing(record))


def cudaEventSynchronize(event: cudaEvent_t):
    return (cudaError_t.cudaSuccess,)


def cudaEventElapsedTime(start: cudaEvent_t, end: cudaEvent_t):
    return _call(lambda: DRIVER.elapsed(start._raw, end._raw))


def cudaDeviceSynchronize():
    return _call(_nothing(lambda: DRIVER.runtime_context() and None))


