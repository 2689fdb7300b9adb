"""A simulated CUDA driver shared by the fake ``pycuda``, ``cuda-python`` and ``tensorrt`` in this folder.

It models what the real stack does that dfseg's code depends on, so that dfseg's real commands fail
here where they would fail on a Jetson:

* **Devices** from the environment: ``FAKE_CUDA_DEVICE_COUNT`` (default 1) devices of the flavour
  ``FAKE_CUDA_DEVICE`` (``orin`` sm87 by default, ``xavier`` sm72, ``tx2`` "NVIDIA Tegra X2" sm62,
  ``nano`` sm53, ``rtx4090`` sm89).  What each flavour has fast (FP16, INT8, TF32) follows the
  compute capability: FP16 from sm53 (Tegra X1 / TX2 have it, sm61 desktop Pascal does not), INT8
  (DP4A) on sm61 and sm70+ but not sm62 (TX2), TF32 from sm80 (Ampere).
* **Contexts** with one context stack **per thread** (the driver API's ``cuCtxPushCurrent`` /
  ``cuCtxPopCurrent`` act on the calling thread only: CUDA Driver API reference, "Context
  Management"), and one primary context per device (``cuDevicePrimaryCtxRetain``).
* **Driver-API semantics** (what pycuda calls): a call that needs a context on a thread whose stack is
  empty fails with ``CUDA_ERROR_INVALID_CONTEXT`` (201, ``cuGetErrorString``: "invalid device
  context"); a stream used from a context other than the one that created it fails with
  ``CUDA_ERROR_INVALID_HANDLE`` (400, "invalid resource handle").
* **Stream-ordered calls on a thread with an empty stack** (``cuMemcpy*Async``, ``cuEventRecord`` with
  a stream): driver 580 (CUDA 13.0) takes the stream's context, measured on an H200
  (tests/data/cuda/pycuda_driver580_no_context.json; NVIDIA/cccl#9615 saw the same); a current
  context other than the stream's still fails.  Older drivers (``FAKE_CUDA_DRIVER_VERSION`` below
  13000, the default 10020 of JetPack 4.6.1, and JetPack 5/6's 11.4-12.6) are modelled stricter:
  those calls need a current context too (the desk-check's reading of pycuda#242; not measured).
* **Runtime-API semantics** (cuda-python's ``cudart`` and TensorRT's own enqueue): a current device
  **per thread** (0 until ``cudaSetDevice`` on that thread); a runtime call on a thread with no
  current context makes the current device's primary context current, as the CUDA runtime does
  (CUDA Programming Guide, "Initialization" / "Runtime": the runtime creates or uses the primary
  context of the current device).  So work from a thread that never called ``cudaSetDevice`` lands on
  device 0.
* **Memory**: allocations are real ``ctypes`` buffers with real addresses (numpy and ctypes copies
  work), owned by a context; page-locked host memory likewise.  Copies run when they are enqueued.
* **Streams and events** belong to a context.  No wall clock is read anywhere: each stream keeps a
  simulated clock that enqueued work advances (``advance``), and events record that clock, so event
  times are deterministic.
"""

import ctypes
import os
import threading
from typing import Dict, List, NamedTuple, Optional

# Driver-API result codes and cuGetErrorString's text for them (cuda.h / CUDA Driver API "Error Handling").
CUDA_SUCCESS = 0
CUDA_ERROR_INVALID_VALUE = 1
CUDA_ERROR_OUT_OF_MEMORY = 2
CUDA_ERROR_NOT_INITIALIZED = 3
CUDA_ERROR_INVALID_DEVICE = 101
# The first driver seen taking a stream's context for a stream-ordered call made with none current.
STREAM_CONTEXT_SINCE = 13000
CUDA_ERROR_INVALID_CONTEXT = 201
CUDA_ERROR_INVALID_HANDLE = 400
CUDA_ERROR_ILLEGAL_ADDRESS = 700
ERROR_STRINGS = {
    CUDA_SUCCESS: "no error",
    CUDA_ERROR_INVALID_VALUE: "invalid argument",
    CUDA_ERROR_OUT_OF_MEMORY: "out of memory",
    CUDA_ERROR_NOT_INITIALIZED: "initialization error",
    CUDA_ERROR_INVALID_DEVICE: "invalid device ordinal",
    CUDA_ERROR_INVALID_CONTEXT: "invalid device context",
    CUDA_ERROR_INVALID_HANDLE: "invalid resource handle",
    CUDA_ERROR_ILLEGAL_ADDRESS: "an illegal memory access was encountered",
}
# The runtime API's names for the same conditions (driver_types.h: cudaError).
RUNTIME_NAMES = {
    CUDA_SUCCESS: "cudaSuccess",
    CUDA_ERROR_INVALID_VALUE: "cudaErrorInvalidValue",
    CUDA_ERROR_OUT_OF_MEMORY: "cudaErrorMemoryAllocation",
    CUDA_ERROR_NOT_INITIALIZED: "cudaErrorInitializationError",
    CUDA_ERROR_INVALID_DEVICE: "cudaErrorInvalidDevice",
    CUDA_ERROR_INVALID_CONTEXT: "cudaErrorDeviceUninitialized",
    CUDA_ERROR_INVALID_HANDLE: "cudaErrorInvalidResourceHandle",
    CUDA_ERROR_ILLEGAL_ADDRESS: "cudaErrorIllegalAddress",
}


class Flavour(NamedTuple):
    name: str
    major: int
    minor: int

    @property
    def sm(self) -> int:
        return self.major * 10 + self.minor

    @property
    def fast_fp16(self) -> bool:
        return self.sm >= 53 and self.sm != 61

    @property
    def fast_int8(self) -> bool:
        return self.sm == 61 or self.sm >= 70

    @property
    def tf32(self) -> bool:
        return self.sm >= 80


FLAVOURS = {
    "orin": Flavour("Orin", 8, 7),
    "xavier": Flavour("Xavier", 7, 2),
    "tx2": Flavour("NVIDIA Tegra X2", 6, 2),
    "nano": Flavour("NVIDIA Tegra X1", 5, 3),
    "rtx4090": Flavour("NVIDIA GeForce RTX 4090", 8, 9),
}


class CudaError(Exception):
    """A failed driver or runtime call; ``code`` is the CUresult / cudaError_t value."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(ERROR_STRINGS.get(code, "unknown error") + (" ({})".format(detail) if detail else ""))
        self.code = code
        self.detail = detail


class Device:
    def __init__(self, ordinal: int, flavour: Flavour) -> None:
        self.ordinal = ordinal
        self.flavour = flavour
        self.primary = None  # type: Optional[Context]
        self.primary_refs = 0

    def label(self) -> str:
        return "{} sm{}{}".format(self.flavour.name, self.flavour.major, self.flavour.minor)


class Context:
    _next = 0x7F0000000000

    def __init__(self, device: Device, primary: bool) -> None:
        Context._next += 0x1000
        self.handle = Context._next
        self.device = device
        self.primary = primary
        self.alive = True


class Stream:
    def __init__(self, context: Context) -> None:
        self.context = context
        self.clock_ms = 0.0
        self.alive = True
        self.handle = id(self)


class Event:
    def __init__(self, context: Context) -> None:
        self.context = context
        self.time_ms = None  # type: Optional[float]
        self.alive = True
        self.handle = id(self)


class Allocation:
    def __init__(self, nbytes: int, context: Optional[Context], device_memory: bool) -> None:
        self.buffer = ctypes.create_string_buffer(max(1, nbytes))
        self.address = ctypes.addressof(self.buffer)
        self.nbytes = nbytes
        self.context = context
        self.device_memory = device_memory


class Driver:
    """The process's one simulated driver (``DRIVER``)."""

    def __init__(self) -> None:
        flavour_name = os.environ.get("FAKE_CUDA_DEVICE", "orin")
        if flavour_name not in FLAVOURS:
            raise ValueError("FAKE_CUDA_DEVICE={!r}: one of {}".format(flavour_name, ", ".join(FLAVOURS)))
        count = int(os.environ.get("FAKE_CUDA_DEVICE_COUNT", "1"))
        self.devices = [Device(i, FLAVOURS[flavour_name]) for i in range(count)]
        self.allocations: Dict[int, Allocation] = {}
        self.streams: Dict[int, Stream] = {}  # by handle, for callers that pass the int (TensorRT)
        self.lock = threading.RLock()
        self.local = threading.local()
        self.initialized = False
        self.driver_version = int(os.environ.get("FAKE_CUDA_DRIVER_VERSION", "10020"))

    # ------------------------------------------------------------ per-thread state
    def stack(self) -> List[Context]:
        if not hasattr(self.local, "stack"):
            self.local.stack = []
        return self.local.stack

    def current(self) -> Optional[Context]:
        stack = self.stack()
        return stack[-1] if stack else None

    def require_current(self) -> Context:
        """Driver-API rule: the call needs a current context on this thread."""
        context = self.current()
        if context is None:
            raise CudaError(CUDA_ERROR_INVALID_CONTEXT, "no current context on thread {}".format(
                threading.current_thread().name))
        if not context.alive:
            raise CudaError(CUDA_ERROR_INVALID_CONTEXT, "the current context was destroyed")
        return context

    def stream_ordered_context(self, stream: Optional["Stream"]) -> Context:
        """The context a stream-ordered driver call runs in: the current one, else (driver 580 and
        later, measured) the stream's own."""
        if self.current() is None and stream is not None and self.driver_version >= STREAM_CONTEXT_SINCE:
            return stream.context
        return self.require_current()

    def device(self, ordinal: int) -> Device:
        if not 0 <= ordinal < len(self.devices):
            raise CudaError(CUDA_ERROR_INVALID_DEVICE, "device {} of {}".format(ordinal, len(self.devices)))
        return self.devices[ordinal]

    # ------------------------------------------------------------ driver API
    def init(self) -> None:
        self.initialized = True

    def require_init(self) -> None:
        if not self.initialized:
            raise CudaError(CUDA_ERROR_NOT_INITIALIZED)

    def primary_retain(self, ordinal: int) -> Context:
        device = self.device(ordinal)
        with self.lock:
            if device.primary is None or not device.primary.alive:
                device.primary = Context(device, primary=True)
            device.primary_refs += 1
            return device.primary

    def primary_release(self, ordinal: int) -> None:
        device = self.device(ordinal)
        with self.lock:
            device.primary_refs = max(0, device.primary_refs - 1)

    def ctx_create(self, ordinal: int) -> Context:
        context = Context(self.device(ordinal), primary=False)
        self.stack().append(context)
        return context

    def ctx_push(self, context: Context) -> None:
        if not context.alive:
            raise CudaError(CUDA_ERROR_INVALID_CONTEXT, "pushing a destroyed context")
        self.stack().append(context)

    def ctx_pop(self) -> Context:
        stack = self.stack()
        if not stack:
            raise CudaError(CUDA_ERROR_INVALID_CONTEXT, "popping an empty context stack")
        return stack.pop()

    def ctx_set_current(self, context: Context) -> None:
        """cuCtxSetCurrent / what the runtime does: replace the top of this thread's stack."""
        stack = self.stack()
        if stack:
            stack[-1] = context
        else:
            stack.append(context)

    def ctx_destroy(self, context: Context) -> None:
        context.alive = False
        stack = self.stack()
        if context in stack:
            stack.remove(context)

    def check_stream(self, stream: Optional[Stream], context: Context) -> None:
        """Work enqueued on a stream of another context (or a destroyed stream) is refused."""
        if stream is None:
            return
        if not stream.alive:
            raise CudaError(CUDA_ERROR_INVALID_HANDLE, "stream was destroyed")
        if stream.context is not context:
            raise CudaError(CUDA_ERROR_INVALID_HANDLE, "stream of context {:#x} (device {}) used from context {:#x} "
                            "(device {})".format(stream.context.handle, stream.context.device.ordinal,
                                                 context.handle, context.device.ordinal))

    def mem_alloc(self, nbytes: int, device_memory: bool = True) -> Allocation:
        context = self.require_current()
        allocation = Allocation(int(nbytes), context, device_memory)
        with self.lock:
            self.allocations[allocation.address] = allocation
        return allocation

    def mem_free(self, address: int) -> None:
        with self.lock:
            if address not in self.allocations:
                raise CudaError(CUDA_ERROR_INVALID_VALUE, "freeing {:#x}, which is not an allocation".format(address))
            del self.allocations[address]

    def find(self, address: int, nbytes: int, device_memory: bool) -> Allocation:
        """The live allocation holding ``[address, address + nbytes)``."""
        with self.lock:
            for allocation in self.allocations.values():
                if allocation.device_memory == device_memory and \
                        allocation.address <= address and address + nbytes <= allocation.address + allocation.nbytes:
                    return allocation
        raise CudaError(CUDA_ERROR_INVALID_VALUE, "{:#x}+{} is not inside a live {} allocation".format(
            address, nbytes, "device" if device_memory else "host"))

    def copy(self, dst: int, src: int, nbytes: int, context: Context, stream: Optional[Stream],
             to_device: bool, runtime: bool = False) -> None:
        """A host<->device copy enqueued from ``context`` (done at once; the stream clock advances).

        The driver API wants the stream and the memory in the calling context.  The runtime does not:
        "A memory copy will succeed even if it is issued to a stream that is not associated to the
        current device" (CUDA C++ Programming Guide, Multi-Device System, "Stream and Event Behavior";
        unified addressing finds the memory's device)."""
        device_side = self.find(dst if to_device else src, nbytes, device_memory=True)
        if not runtime:
            self.check_stream(stream, context)
            if device_side.context.device is not context.device:
                raise CudaError(CUDA_ERROR_INVALID_VALUE, "device memory of device {} copied from device {}".format(
                    device_side.context.device.ordinal, context.device.ordinal))
        elif stream is not None and not stream.alive:
            raise CudaError(CUDA_ERROR_INVALID_HANDLE, "stream was destroyed")
        ctypes.memmove(dst, src, nbytes)
        self.advance(stream, nbytes / 1e7)

    @staticmethod
    def advance(stream: Optional[Stream], ms: float) -> None:
        if stream is not None:
            stream.clock_ms += ms

    def stream_create(self) -> Stream:
        stream = Stream(self.require_current())
        with self.lock:
            self.streams[stream.handle] = stream
        return stream

    def stream_destroy(self, stream: Stream) -> None:
        stream.alive = False
        with self.lock:
            self.streams.pop(stream.handle, None)

    def stream_by_handle(self, handle: int) -> Optional[Stream]:
        """The stream behind an integer handle; 0 is the legacy default stream (None here)."""
        if int(handle) == 0:
            return None
        with self.lock:
            stream = self.streams.get(int(handle))
        if stream is None:
            raise CudaError(CUDA_ERROR_INVALID_HANDLE, "no stream has handle {:#x}".format(int(handle)))
        return stream

    def event_create(self) -> Event:
        return Event(self.require_current())

    def event_record(self, event: Event, stream: Optional[Stream], runtime: bool = False) -> None:
        """Driver API: event and stream of the calling context.  Runtime: "cudaEventRecord() will fail if
        the input event and input stream are associated to different devices" (Programming Guide, as
        above), whatever the current device."""
        if runtime:
            context = self.runtime_context() if stream is None else stream.context
        else:
            context = self.stream_ordered_context(stream)
            self.check_stream(stream, context)
        if event.context.device is not context.device or (not runtime and event.context is not context):
            raise CudaError(CUDA_ERROR_INVALID_HANDLE, "event of another context")
        event.time_ms = stream.clock_ms if stream is not None else 0.0

    @staticmethod
    def elapsed(start: Event, end: Event) -> float:
        if start.time_ms is None or end.time_ms is None:
            raise CudaError(CUDA_ERROR_INVALID_HANDLE, "event not recorded")
        return end.time_ms - start.time_ms

    # ------------------------------------------------------------ runtime API
    def runtime_device(self) -> int:
        return getattr(self.local, "device", 0)

    def runtime_set_device(self, ordinal: int) -> None:
        self.device(ordinal)
        self.local.device = ordinal
        self.ctx_set_current(self.primary_retain(ordinal))

    def runtime_context(self) -> Context:
        """The context a runtime call uses: the current one, else the current device's primary context
        made current on this thread (the runtime's implicit initialisation)."""
        self.initialized = True
        context = self.current()
        if context is None or not context.alive:
            context = self.primary_retain(self.runtime_device())
            self.ctx_set_current(context)
        return context

    def device_access(self, address: int, nbytes: int, context: Context) -> Allocation:
        """A kernel of ``context`` touching device memory: it must be live and on the same device."""
        allocation = self.find(address, nbytes, device_memory=True)
        if allocation.context.device is not context.device:
            raise CudaError(CUDA_ERROR_ILLEGAL_ADDRESS, "memory of device {} used by a kernel on device {}".format(
                allocation.context.device.ordinal, context.device.ordinal))
        return allocation


DRIVER = Driver()
