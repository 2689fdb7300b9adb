"""Which thread gets a core first: the live pipeline's light stages yield to inference.

On a small CPU the runtime's intra-op threads and the pipeline's own threads (decoding,
preprocessing, drawing) want the same cores.  An inference runtime splits every operator across its
threads and waits for the slowest, so a helper that preempts one of them for a millisecond stalls
all of them: measured on 2 cores, helpers at nice +5 cost DF1-Seg about 6% of its FPS, as Linux's
SCHED_IDLE class about 0-1%.  SCHED_IDLE threads run only on a core that nothing else wants, which
the runtime leaves free between operators and between frames.

Against a process that keeps every core busy SCHED_IDLE helpers would starve, so ``StarvationGuard``
watches the inference stage: when it keeps waiting for a helper (for its input, or under the
low-latency policy for the drawing to take its class map) while the helpers are runnable but not
running, they are moved to nice +5 (a fair share), once and for all.

Device side: Python 3.6, Linux first; elsewhere every call is a no-op.
"""

import os
import platform
import threading
from typing import List, Optional

IDLE = "idle"  # Linux SCHED_IDLE
NICE = "nice"  # normal class, HELPER_NICENESS nicer
POLICIES = (IDLE, NICE)
HELPER_NICENESS = 5
_GETTID = {"x86_64": 186, "aarch64": 178}  # the gettid system call (no threading.get_native_id before 3.8)


def native_thread_id() -> Optional[int]:
    """The kernel's id of the calling thread, or None where it cannot be known."""
    native_id = getattr(threading, "get_native_id", None)
    if native_id is not None:
        return native_id()
    number = _GETTID.get(platform.machine())
    if number is None:
        return None
    try:
        import ctypes

        return int(ctypes.CDLL(None, use_errno=True).syscall(number))
    except (AttributeError, OSError):
        return None


def set_policy(tid: int, policy: str) -> bool:
    """Put thread ``tid`` in ``policy`` (IDLE or NICE); False where the system refuses or lacks it."""
    try:
        if policy == IDLE:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            return True
        if getattr(os, "SCHED_IDLE", None) is not None and os.sched_getscheduler(tid) == os.SCHED_IDLE:
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        base = os.getpriority(os.PRIO_PROCESS, os.getpid())
        os.setpriority(os.PRIO_PROCESS, tid, base + HELPER_NICENESS)
        return True
    except (AttributeError, OSError, ValueError):
        return False


def policy_of(tid: int) -> Optional[str]:
    """IDLE or NICE as the kernel sees thread ``tid`` now (NICE: nicer than the process), else None."""
    try:
        if getattr(os, "SCHED_IDLE", None) is not None and os.sched_getscheduler(tid) == os.SCHED_IDLE:
            return IDLE
        if os.getpriority(os.PRIO_PROCESS, tid) > os.getpriority(os.PRIO_PROCESS, os.getpid()):
            return NICE
    except (AttributeError, OSError):
        pass
    return None


class HelperThreads:
    """The pipeline's helper threads: each registers itself when it starts; all can be moved together."""

    def __init__(self, policy: str = IDLE) -> None:
        self._lock = threading.Lock()
        self._tids: List[int] = []
        self.policy = policy

    def enter(self) -> None:
        """Called by a helper thread as it starts: it joins the current policy (IDLE falls back to NICE)."""
        tid = native_thread_id()
        if tid is None:
            return
        with self._lock:
            self._tids.append(tid)
            policy = self.policy
        if not set_policy(tid, policy) and policy == IDLE and set_policy(tid, NICE):
            with self._lock:
                self.policy = NICE  # no SCHED_IDLE here: say what the helpers really run as

    def tids(self) -> List[int]:
        with self._lock:
            return list(self._tids)

    def move_to(self, policy: str) -> None:
        with self._lock:
            self.policy = policy
            tids = list(self._tids)
        for tid in tids:
            set_policy(tid, policy)


class StarvationGuard:
    """Tells, window by window, whether the inference stage is starved by its own helpers' low priority.

    Starved: over ``window`` frames, inference waited for the helper stage it depends on (preprocessing
    for its input; the drawing under the low-latency policy) for more than ``wait_fraction`` of its
    time, and that stage (pure CPU work) took more than ``stretch`` times its CPU time in wall time,
    that is, it was runnable but not running.  A camera slower than the network makes inference wait
    too, but then preprocessing runs at once.  The first window (start-up) is not judged.
    """

    def __init__(self, window: int = 16, wait_fraction: float = 0.2, stretch: float = 3.0) -> None:
        self.window = window
        self.wait_fraction = wait_fraction
        self.stretch = stretch
        self._frames = 0
        self._windows = 0
        self._last = (0.0, 0.0, 0.0, 0.0)

    def observe(self, wait_s: float, busy_s: float, helper_cpu_s: float, helper_wall_s: float) -> bool:
        """One more frame through inference, given the running totals of inference's wait for the helper
        stage and its work, and of that stage's CPU and wall time; True when the window it ends shows
        starvation."""
        self._frames += 1
        if self._frames < self.window:
            return False
        now = (wait_s, busy_s, helper_cpu_s, helper_wall_s)
        wait, busy, helper_cpu, helper_wall = (a - b for a, b in zip(now, self._last))
        self._last, self._frames = now, 0
        self._windows += 1
        total = wait + busy
        return (self._windows > 1 and total > 0 and wait / total > self.wait_fraction
                and helper_wall > self.stretch * helper_cpu)
