"""What a live run measures: the counters and sliding windows that the status line and the web page
read while it runs, each stage's clock (its thread's CPU time, its work and its waits), and how both
are printed.  ``dfseg.live.pipeline`` runs the stages.  Device side: Python 3.6.
"""

import collections
import math
import threading
import time
from typing import Deque, Dict, Optional, Sequence

from .scheduling import HELPER_NICENESS, IDLE

STAGES = ("capture", "preprocess", "inference", "postprocess", "render", "output")
LATENCY_WINDOW = 100000  # frames whose latencies the percentiles cover (a day of 30 FPS would be 2.6 M)
LATENCY_SPANS = ("classmap", "output")  # capture -> class map, capture -> written to every output


def percentiles(values: Sequence[float]) -> Optional[Dict[str, float]]:
    """p50, p95, p99 (nearest rank) and the mean of ``values``, rounded to microseconds; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    count = len(ordered)

    def rank(p: float) -> float:
        return ordered[max(0, min(count - 1, int(math.ceil(p / 100.0 * count)) - 1))]

    return {"p50": round(rank(50), 3), "p95": round(rank(95), 3), "p99": round(rank(99), 3),
            "mean": round(sum(ordered) / count, 3), "frames": count}


def format_latency(latency: Dict[str, Optional[Dict[str, float]]]) -> str:
    """Latency percentiles per span as lines for people (``dfseg-run --profile``)."""
    lines = []
    for span in LATENCY_SPANS:
        row = latency.get(span)
        if row:
            lines.append("latency capture -> {:<8} p50 {p50:.2f} ms, p95 {p95:.2f} ms, p99 {p99:.2f} ms, mean "
                         "{mean:.2f} ms ({frames} frames)".format(span, **row))
    return "\n".join(lines)


class StageClock:
    """Where one stage's time goes: its thread's CPU time, the wall time of its work, and the time it
    waits for input (upstream too slow) or to hand its output on (downstream too slow)."""

    def __init__(self) -> None:
        self.items = 0
        self.cpu_s = 0.0
        self.work_s = 0.0
        self.wait_in_s = 0.0
        self.wait_out_s = 0.0

    def summary(self) -> Dict[str, float]:
        per = 1000.0 / self.items if self.items else 0.0
        return {"frames": self.items, "cpu_ms": round(self.cpu_s * per, 3), "work_ms": round(self.work_s * per, 3),
                "wait_in_ms": round(self.wait_in_s * per, 3), "wait_out_ms": round(self.wait_out_s * per, 3)}


def format_profile(profile: Dict[str, Dict[str, float]], process_cpu_ms: Optional[float],
                   helper_policy: Optional[str] = None) -> str:
    """The per-stage profile as a small table (``dfseg-run --profile``)."""
    lines = ["{:<12} {:>8} {:>8} {:>11} {:>12}".format("stage", "cpu ms", "work ms", "wait in ms", "wait out ms")]
    for name in STAGES:
        row = profile.get(name)
        if row:
            lines.append("{:<12} {cpu_ms:>8.2f} {work_ms:>8.2f} {wait_in_ms:>11.2f} {wait_out_ms:>12.2f}".format(
                name, **row))
    if process_cpu_ms is not None:
        lines.append("process CPU {:.2f} ms per frame (all threads; the inference stage's cpu ms leaves out the "
                     "runtime's own threads)".format(process_cpu_ms))
    if helper_policy is not None:
        lines.append("stages other than inference ran {}".format(
            "as SCHED_IDLE (on cores that inference leaves free)" if helper_policy == IDLE
            else "at nice +{}".format(HELPER_NICENESS)))
    return "\n".join(lines)


class LiveCounters:
    """Counters and sliding windows shared by the stages; read by the status line and the web page."""

    def __init__(self, window: int = 30) -> None:
        self._lock = threading.Lock()
        self.captured = 0
        self.dropped = 0
        self.written = 0
        self._infer_ms: Deque[float] = collections.deque(maxlen=window)
        self._out_times: Deque[float] = collections.deque(maxlen=window)
        self._latency_ms: Deque[float] = collections.deque(maxlen=window)
        # Every frame's latency (the last LATENCY_WINDOW of them), per span, for the percentiles.
        self._spans_ms = {span: collections.deque(maxlen=LATENCY_WINDOW) for span in LATENCY_SPANS}  # type: Dict[str, Deque[float]]
        self.state = "starting"

    def add_inference(self, ms: float) -> None:
        with self._lock:
            self._infer_ms.append(ms)

    def add_classmap(self, captured: float, classified: float) -> None:
        """A frame's class map is ready: ``captured`` and ``classified`` are time.monotonic() values."""
        with self._lock:
            self._spans_ms["classmap"].append((classified - captured) * 1000.0)

    def add_output(self, captured: float) -> None:
        now = time.monotonic()
        with self._lock:
            self.written += 1
            self._out_times.append(now)
            self._latency_ms.append((now - captured) * 1000.0)
            self._spans_ms["output"].append((now - captured) * 1000.0)

    def latency(self) -> Dict[str, Optional[Dict[str, float]]]:
        """Per span (capture -> class map, capture -> outputs): p50, p95, p99 and mean in ms, or None."""
        with self._lock:
            samples = {span: list(values) for span, values in self._spans_ms.items()}
        return {span: percentiles(values) for span, values in samples.items()}

    def network_fps(self) -> Optional[float]:
        with self._lock:
            return 1000.0 / (sum(self._infer_ms) / len(self._infer_ms)) if self._infer_ms else None

    def pipeline_fps(self) -> Optional[float]:
        with self._lock:
            if len(self._out_times) < 2:
                return None
            span = self._out_times[-1] - self._out_times[0]
            return (len(self._out_times) - 1) / span if span > 0 else None

    def latency_ms(self) -> Optional[float]:
        with self._lock:
            return sum(self._latency_ms) / len(self._latency_ms) if self._latency_ms else None

    def status_line(self) -> str:
        return "net {} FPS | pipeline {} FPS".format(format_fps(self.network_fps()), format_fps(self.pipeline_fps()))


def format_fps(value: Optional[float]) -> str:
    """An FPS figure for people: one decimal, or "-" when not known yet."""
    return "-" if value is None else "{:.1f}".format(value)
