"""dfseg's CUDA buffers on a real driver, used from a thread other than the one that opened them: the
live pipeline activates a runner on the main thread and infers on its inference thread.

The driver's rule (a current context is per thread; pycuda's driver calls fail with "invalid device
context" on a thread where none is current) is checked here too, since the stand-ins in tests/fakes
are written to it.  Needs an NVIDIA GPU and pycuda or cuda-python; TensorRT is not needed:

    pytest -m gpu tests/gpu/test_cuda_threads.py
"""

import importlib.util
import threading

import numpy as np
import pytest

from dfseg.backends.tensorrt.cuda_memory import open_cuda

pytestmark = pytest.mark.gpu
LIBRARIES = [name for name, module in (("pycuda", "pycuda"), ("cuda-python", "cuda"))
             if importlib.util.find_spec(module) is not None]


def in_thread(work):
    """``work()``'s result (or its exception) from a new thread."""
    box = {}

    def run():
        try:
            box["result"] = work()
        except BaseException as exc:  # handed back to the test's thread
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


@pytest.fixture(params=LIBRARIES or ["none"])
def memory(request):
    if request.param == "none":
        pytest.skip("neither pycuda nor cuda-python is installed")
    try:
        opened = open_cuda(request.param)
    except Exception as exc:  # no driver or no device: nothing to test here
        pytest.skip("{} cannot open a device: {}".format(request.param, exc))
    yield opened
    opened.close()


def round_trip(memory):
    """What the runner does per inference: H2D, two events, D2H, one synchronize.  The page-locked
    buffers are freed inside the block, as the runner's deactivate does: pycuda frees them in their
    context and warns ("out-of-thread context") where it is not current."""
    with memory.current():
        source = memory.host((4, 256), np.float32)
        target = memory.host((4, 256), np.float32)
        source[...] = np.arange(source.size, dtype=np.float32).reshape(source.shape)
        device = memory.device(source.nbytes)
        memory.htod(device, source)
        memory.record(0)
        memory.record(1)
        memory.dtoh(target, device)
        memory.synchronize()
        same, elapsed = np.array_equal(source, target), memory.elapsed_ms()
        del source, target
    return same, elapsed


def test_buffers_work_on_the_thread_that_opened_them_and_on_another(memory):
    assert round_trip(memory)[0]
    same, elapsed = in_thread(lambda: round_trip(memory))
    assert same and elapsed >= 0.0
    assert in_thread(lambda: round_trip(memory))[0]  # and again on a third thread


def test_the_driver_refuses_pycuda_calls_on_a_thread_without_a_context():
    """The rule that broke dfseg-run (inducer/pycuda#242), seen on a real driver: page-locked memory
    asked for on a thread with no current context.  (Driver 580 accepts a copy on a stream of another
    thread's context; the stand-in in tests/fakes is stricter, as older drivers are.)"""
    if "pycuda" not in LIBRARIES:
        pytest.skip("pycuda is not installed")
    memory = open_cuda("pycuda")
    try:
        with pytest.raises(Exception, match="invalid device context"):
            in_thread(lambda: memory.host((16,), np.float32))
        assert in_thread(lambda: round_trip(memory))[0]
    finally:
        memory.close()
