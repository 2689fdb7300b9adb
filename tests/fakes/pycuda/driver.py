"""The part of ``pycuda.driver`` that dfseg uses, with pycuda's semantics (inducer/pycuda at
19bed90, the ``fetch`` mirror; the C++ core is the same since 2017):

* Errors: ``CUDAPP_CALL_GUARDED(NAME, ...)`` throws ``pycuda::error(#NAME, code)`` whose text is
  ``"NAME failed: " + cuGetErrorString(code)`` plus ``" - detail"`` when one is given
  (src/cpp/cuda.hpp, ``class error::make_message``).  ``translate_cuda_error`` (src/wrapper/
  wrap_cudadrv.cpp) maps the codes to ``LaunchError``, ``MemoryError``, ``RuntimeError``, ``Error``
  (CUDA_ERROR_UNKNOWN) and ``LogicError`` (everything else, e.g. CUDA_ERROR_INVALID_CONTEXT).
* pycuda keeps its own context stack **per thread** (``boost::thread_specific_ptr<context_stack>``,
  src/cpp/cuda.hpp) beside the driver's; ``prepare_context_switch`` pops the driver's top before a
  push, ``context::pop`` with an empty stack raises "cannot pop non-current context",
  ``retain_primary_context`` returns a context that is NOT made current (the caller pushes it).
* ``Stream``, ``Event``, ``mem_alloc`` and host allocations are ``context_dependent``: created with no
  current context they raise ``explicit_context_dependent failed: invalid device context - no
  currently active context?``.
* ``memcpy_htod_async`` / ``memcpy_dtoh_async`` (src/wrapper/wrap_cudadrv.cpp) call
  ``cuMemcpyHtoDAsync`` / ``cuMemcpyDtoHAsync`` directly: on a thread with no current context they
  fail with "cuMemcpyHtoDAsync failed: invalid device context" (inducer/pycuda#242).
* ``DeviceAllocation.free`` activates the allocation's context (``scoped_context_activation``); from
  another thread that raises ``cannot_activate_out_of_thread_context``, which
  ``CUDAPP_CATCH_CLEANUP_ON_DEAD_CONTEXT`` turns into the UserWarning "device_allocation in
  out-of-thread context could not be cleaned up" (the memory stays allocated).
* A thread (or, for the main thread, the process) that ends with a non-empty pycuda context stack
  prints "PyCUDA ERROR: The context stack was not empty upon module cleanup." and aborts
  (``context_stack::~context_stack``).
"""

import atexit
import os
import sys
import threading
import warnings
from typing import Any, List, Optional

import fake_cuda
import numpy as np
from fake_cuda import DRIVER, CudaError


class Error(Exception):
    pass


class LogicError(Error):
    pass


class LaunchError(Error):
    pass


class MemoryError(Error):  # noqa: A001  (pycuda's name)
    pass


class RuntimeError(Error):  # noqa: A001  (pycuda's name)
    pass


def _error(routine: str, code: int, detail: str = "") -> Error:
    text = "{} failed: {}".format(routine, fake_cuda.ERROR_STRINGS.get(code, "unknown error"))
    if detail:
        text += " - " + detail
    if code == fake_cuda.CUDA_ERROR_OUT_OF_MEMORY:
        return MemoryError(text)
    return LogicError(text)


def _guarded(routine: str, call, *args):
    """CUDAPP_CALL_GUARDED: run a driver call, turn its failure into pycuda's exception."""
    try:
        return call(*args)
    except CudaError as exc:
        raise _error(routine, exc.code) from None


# ---------------------------------------------------------------- the per-thread pycuda stack
ABORT_MESSAGE = (
    "-------------------------------------------------------------------\n"
    "PyCUDA ERROR: The context stack was not empty upon module cleanup.\n"
    "-------------------------------------------------------------------\n"
    "A context was still active when the context stack was being\n"
    "cleaned up. At this point in our execution, CUDA may already\n"
    "have been deinitialized, so there is no way we can finish\n"
    "cleanly. The program will be aborted now.\n"
    "Use Context.pop() to avoid this problem.\n"
    "-------------------------------------------------------------------\n")


class _ContextStack:
    """One thread's stack; like boost's thread_specific_ptr cleanup, it aborts when the thread ends
    with contexts still on it."""

    def __init__(self) -> None:
        self.items = []  # type: List[Context]

    def __del__(self) -> None:
        if self.items:
            sys.stderr.write(ABORT_MESSAGE)
            sys.stderr.flush()
            os.abort()


_local = threading.local()


def _stack() -> List["Context"]:
    if not hasattr(_local, "stack"):
        _local.stack = _ContextStack()
        if threading.current_thread() is threading.main_thread():
            _MAIN.append(_local.stack)
    return _local.stack.items


_MAIN = []  # type: List[_ContextStack]


@atexit.register
def _module_cleanup() -> None:
    for stack in _MAIN:
        stack.__del__()


def _current() -> Optional["Context"]:
    stack = _stack()
    while stack:
        if stack[-1].valid:
            return stack[-1]
        stack.pop()
    return None


def _acquire_context() -> "Context":
    context = _current()
    if context is None:
        raise _error("explicit_context_dependent", fake_cuda.CUDA_ERROR_INVALID_CONTEXT, "no currently active context?")
    return context


def _prepare_context_switch() -> None:
    if _stack():
        _guarded("cuCtxPopCurrent", DRIVER.ctx_pop)


# ---------------------------------------------------------------- module functions
def init(flags: int = 0) -> None:
    DRIVER.init()


def get_driver_version() -> int:
    """``cuDriverGetVersion``: 1000 x major + 10 x minor of the CUDA the driver supports."""
    return DRIVER.driver_version


class Device:
    def __init__(self, ordinal: int) -> None:
        _guarded("cuDeviceGet", DRIVER.require_init)
        self._device = _guarded("cuDeviceGet", DRIVER.device, int(ordinal))

    @staticmethod
    def count() -> int:
        _guarded("cuDeviceGetCount", DRIVER.require_init)
        return len(DRIVER.devices)

    def name(self) -> str:
        return self._device.flavour.name

    def compute_capability(self):
        return (self._device.flavour.major, self._device.flavour.minor)

    def pci_bus_id(self) -> str:
        return "0000:{:02x}:00.0".format(self._device.ordinal)

    def make_context(self, flags: int = 0) -> "Context":
        _prepare_context_switch()
        raw = _guarded("cuCtxCreate", DRIVER.ctx_create, self._device.ordinal)
        context = Context(raw, self._device, primary=False)
        _stack().append(context)
        return context

    def retain_primary_context(self) -> "Context":
        raw = _guarded("cuDevicePrimaryCtxRetain", DRIVER.primary_retain, self._device.ordinal)
        return Context(raw, self._device, primary=True)

    def __int__(self) -> int:
        return self._device.ordinal

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Device) and other._device is self._device

    def __hash__(self) -> int:
        return hash(self._device.ordinal)


class Context:
    def __init__(self, raw: fake_cuda.Context, device: fake_cuda.Device, primary: bool) -> None:
        self._raw = raw
        self._device = device
        self._primary = primary
        self.valid = True
        self._thread = threading.get_ident()

    @property
    def handle(self) -> int:
        return self._raw.handle

    def push(self) -> None:
        _prepare_context_switch()
        _guarded("cuCtxPushCurrent", DRIVER.ctx_push, self._raw)
        _stack().append(self)

    @staticmethod
    def pop() -> None:
        _prepare_context_switch()
        stack = _stack()
        if not stack:
            raise _error("context::pop", fake_cuda.CUDA_ERROR_INVALID_CONTEXT, "cannot pop non-current context")
        stack.pop()
        current = _current()
        if current is not None:
            _guarded("cuCtxPushCurrent", DRIVER.ctx_push, current._raw)

    @staticmethod
    def get_current() -> Optional["Context"]:
        return _current()

    @staticmethod
    def get_device() -> Device:
        context = DRIVER.current()
        if context is None:
            raise _error("cuCtxGetDevice", fake_cuda.CUDA_ERROR_INVALID_CONTEXT)
        return Device(context.device.ordinal)

    @staticmethod
    def synchronize() -> None:
        _guarded("cuCtxSynchronize", DRIVER.require_current)

    def detach(self) -> None:
        if not self.valid:
            raise _error("context::detach", fake_cuda.CUDA_ERROR_INVALID_CONTEXT, "cannot detach from invalid context")
        was_active = _current() is self
        if was_active or self._thread == threading.get_ident():
            if not was_active:
                DRIVER.ctx_push(self._raw)
            if self._primary:
                # cuDevicePrimaryCtxRelease does not pop: a primary context pushed here for the release
                # stays on the driver's stack (pycuda's "pop is implicit in detach" holds for cuCtxDetach only).
                DRIVER.primary_release(self._device.ordinal)
            else:
                DRIVER.ctx_destroy(self._raw)
        self.valid = False
        if was_active:
            _stack().pop()
            new_active = _current()
            if new_active is not None:
                _guarded("cuCtxPushCurrent", DRIVER.ctx_push, new_active._raw)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Context) and other._raw is self._raw

    def __hash__(self) -> int:
        return hash(self._raw.handle)


class Stream:
    def __init__(self, flags: int = 0) -> None:
        self._context = _acquire_context()
        self._raw = _guarded("cuStreamCreate", DRIVER.stream_create)

    @property
    def handle(self) -> int:
        return self._raw.handle

    def synchronize(self) -> None:
        if not self._raw.alive:
            raise _error("cuStreamSynchronize", fake_cuda.CUDA_ERROR_INVALID_HANDLE)

    def is_done(self) -> bool:
        return True


class Event:
    def __init__(self, flags: int = 0) -> None:
        self._context = _acquire_context()
        self._raw = _guarded("cuEventCreate", DRIVER.event_create)

    def record(self, stream: Optional[Stream] = None) -> "Event":
        _guarded("cuEventRecord", DRIVER.event_record, self._raw, stream._raw if stream is not None else None)
        return self

    def synchronize(self) -> "Event":
        return self

    def query(self) -> bool:
        return True

    def time_since(self, start: "Event") -> float:
        return _guarded("cuEventElapsedTime", DRIVER.elapsed, start._raw, self._raw)

    def time_till(self, end: "Event") -> float:
        return _guarded("cuEventElapsedTime", DRIVER.elapsed, self._raw, end._raw)


class DeviceAllocation:
    def __init__(self, nbytes: int) -> None:
        # pycuda calls cuMemAlloc before the context_dependent base is built: with no current context the
        # error names cuMemAlloc (as on driver 580, tests/data/cuda), not explicit_context_dependent.
        self._raw = _guarded("cuMemAlloc", DRIVER.mem_alloc, nbytes, True)
        self._context = _acquire_context()
        self._valid = True

    def __int__(self) -> int:
        return self._raw.address

    __index__ = __int__

    def free(self) -> None:
        if not self._valid:
            raise _error("device_allocation::free", fake_cuda.CUDA_ERROR_INVALID_HANDLE)
        if _current() is not self._context and self._context._thread != threading.get_ident():
            warnings.warn("device_allocation in out-of-thread context could not be cleaned up", UserWarning, stacklevel=2)
        else:
            _guarded("cuMemFree", DRIVER.mem_free, self._raw.address)
        self._valid = False


def mem_alloc(nbytes: int) -> DeviceAllocation:
    return DeviceAllocation(int(nbytes))


class _HostAllocation:
    def __init__(self, nbytes: int) -> None:
        self._raw = _guarded("cuMemHostAlloc", DRIVER.mem_alloc, nbytes, False)  # first, as cuMemAlloc above
        self._context = _acquire_context()


def pagelocked_empty(shape, dtype, order: str = "C", mem_flags: int = 0) -> np.ndarray:
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    count = int(np.prod(shape))
    allocation = _HostAllocation(count * dtype.itemsize)
    array = np.frombuffer(allocation._raw.buffer, dtype=dtype, count=count).reshape(shape, order=order)
    return array  # its base keeps the buffer alive; the driver keeps the allocation registered


def _address(array: np.ndarray, writable: bool) -> int:
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        raise TypeError("expected a contiguous buffer")
    if writable and not array.flags.writeable:
        raise TypeError("expected a writable buffer")
    return array.ctypes.data


def _copy(routine: str, dst: int, src: int, nbytes: int, stream: Optional[Stream], to_device: bool) -> None:
    try:
        raw = stream._raw if stream is not None else None
        context = DRIVER.stream_ordered_context(raw) if raw is not None else DRIVER.require_current()
        DRIVER.copy(dst, src, nbytes, context, raw, to_device)
    except CudaError as exc:
        raise _error(routine, exc.code) from None


def memcpy_htod(dest, src: np.ndarray) -> None:
    _copy("cuMemcpyHtoD", int(dest), _address(src, False), src.nbytes, None, True)


def memcpy_dtoh(dest: np.ndarray, src) -> None:
    _copy("cuMemcpyDtoH", _address(dest, True), int(src), dest.nbytes, None, False)


def memcpy_htod_async(dest, src: np.ndarray, stream: Optional[Stream] = None) -> None:
    _copy("cuMemcpyHtoDAsync", int(dest), _address(src, False), src.nbytes, stream, True)


def memcpy_dtoh_async(dest: np.ndarray, src, stream: Optional[Stream] = None) -> None:
    _copy("cuMemcpyDtoHAsync", _address(dest, True), int(src), dest.nbytes, stream, False)


