"""The thread-CPU clock that both the benchmarks (``--clock thread``) and the live pipeline's stage
profile read.  Device side: Python 3.6.
"""

import time


def thread_cpu_s() -> float:
    """CPU seconds of the calling thread (Linux; elsewhere the process clock).

    With one intra-op thread, ONNX Runtime on CPU computes in the calling thread, so this clock
    counts the work of a run and not the time other processes held the core: on a shared machine
    it is the latency the same run would have on a quiet one.  Wall time it is not, so results say
    which clock they used.
    """
    clock_id = getattr(time, "CLOCK_THREAD_CPUTIME_ID", None)
    return time.clock_gettime(clock_id) if clock_id is not None else time.process_time()
