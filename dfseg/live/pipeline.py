"""The live pipeline: capture -> preprocess -> inference -> postprocess -> render -> outputs.

Each step runs in its own thread, linked by bounded queues, so while the network works on frame
n the next frames are being captured and preprocessed and the previous ones drawn and written
(OpenCV, numpy and the inference runtimes release the GIL in their heavy calls).  Outputs are
written from the calling thread, because GUI toolkits want that: ``frames()`` is that loop, yielding
each frame once written (the Python API's ``Model.stream`` iterates it; ``run()`` drains it).

* Live sources (cameras, streams): when the first queue is full the oldest frame is dropped, so the
  output shows the newest picture instead of an ever older backlog.
* Live sources with the low-latency policy (``latency=LOW``): the network works on the newest frame
  whenever it is free, so a frame waits at most one frame interval before its inference starts.
  Capture (at normal priority: a camera's frames must be read as they come, and that work is the
  same under any policy) keeps only the newest frame in a one-item slot, replacing an untaken one.
  One thread takes it, preprocesses, infers and makes the class map (no hand-over to an idle-class
  thread on the way from capture to class map), and hands the class map to the render stage through
  a one-item queue, waiting while the one before is still untaken: a finished class map is never
  thrown away, and when the drawing falls behind (the CPU is busy) inference pauses and leaves it the
  cores instead of computing class maps nobody would see; the frame it takes next is still the newest.  The render stage replaces a drawn frame the outputs have
  not taken yet with its newer one.  Every queue holds one item; drops are counted against the
  stage whose output was replaced (capture and render); frames still leave in capture order.
* Files and folders: every queue blocks, so no frame is ever lost; the latency policy does not apply.
* Ctrl-C (SIGINT), SIGTERM (``docker stop``, systemd) and the end of the input stop capture; the
  frames in flight still reach the outputs, which are then finalised.  A second signal abandons the
  frames in flight but still finalises the outputs.  An error in any stage stops every stage and is raised from ``frames``/``run``.

Device side: Python 3.6, no torch.
"""

import queue
import signal
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence

import numpy as np

from ..clocks import thread_cpu_s
from ..errors import Terminated, UserError
from ..uri import redact
from .counters import STAGES, LiveCounters, StageClock
from .render import Renderer
from .scheduling import HELPER_NICENESS, IDLE, NICE, HelperThreads, StarvationGuard
from .segmenter import Segmenter
from .sinks import Sink, VideoFileSink
from .sources import CaptureSource, Frame, Source

_END = object()  # end-of-stream marker passed down the queues
INTERRUPTED = "interrupted"  # end reasons of a run stopped by SIGINT or SIGTERM
TERMINATED = "terminated"
CLOSED = "closed by the caller"  # the end reason when the caller stops iterating Pipeline.frames()
_POLL_S = 0.05
DEFAULT, LOW = "default", "low"  # latency policies (dfseg-run --latency, Model.stream(latency=...))
LATENCY_POLICIES = (DEFAULT, LOW)
MIN_QUEUE_SIZE = 1  # queue_size (--queue-size): 0 would be an unbounded queue.Queue, a live source's backlog
# Each queue between the stages holds up to this many frames (a 1080p frame is 6 MB): a larger queue is only
# memory and latency, and an absurd one is a backlog that could fill the memory.
MAX_QUEUE_SIZE = 64
QUEUES = STAGES[:-1]  # each stage but the output writes one queue; a drop is counted against its writer
# The threads of each policy: the stages each runs, in order; the first reads the queue of the capture or of
# the thread before it.  Under LOW, frame -> class map is one thread at the inference's priority.
THREADS = {DEFAULT: (("preprocess",), ("inference",), ("postprocess",), ("render",)),
           LOW: (("preprocess", "inference", "postprocess"), ("render",))}


class RunResult(NamedTuple):
    frames_captured: int
    frames_written: int
    frames_dropped: int
    elapsed_s: float
    pipeline_fps: float  # frames out / wall time, whole run
    network_fps: Optional[float]  # 1000 / mean inference ms
    end_reason: str
    profile: Dict[str, Dict[str, float]]  # per stage, per frame: see StageClock.summary
    process_cpu_ms_per_frame: Optional[float]  # every thread of the process, the runtime's pool included
    helper_policy: str  # how the stages other than inference ran at the end: scheduling.IDLE or NICE
    latency_ms: Dict[str, Optional[Dict[str, float]]]  # per span (counters.LATENCY_SPANS): p50, p95, p99, mean
    drops: Dict[str, int]  # frames dropped per stage whose output was replaced by a newer one (QUEUES)
    latency_policy: str  # the policy in effect: LOW only for a live source run with latency=LOW


class Output(NamedTuple):
    """One frame as written to the outputs."""

    frame: Frame
    classmap: np.ndarray  # uint8 trainIds at the frame's size
    classified: float  # time.monotonic() when the class map was ready
    image: Optional[np.ndarray]  # what the outputs got (None without a renderer)


class Pipeline:
    """Runs ``source`` through ``segmenter`` and ``renderer`` into every sink in ``sinks``."""

    def __init__(
        self,
        source: Source,
        segmenter: Segmenter,
        renderer: Optional[Renderer],
        sinks: List[Sink],
        queue_size: int = 2,
        max_frames: Optional[int] = None,
        status_line: bool = True,
        log: Optional[Callable[[str], None]] = None,
        helper_policy: str = IDLE,
        keep_frames: bool = False,
        latency: str = DEFAULT,
    ) -> None:
        check_latency(latency)
        self.source = source
        self.segmenter = segmenter
        self.renderer = renderer
        self.sinks = sinks
        # Files keep every frame, so the low-latency policy (which drops) applies to live sources only.
        self.latency = LOW if latency == LOW and source.live else DEFAULT
        self.queue_size = 1 if self.latency == LOW else max(1, queue_size)
        self.drops = {name: 0 for name in QUEUES}
        self.queues = []  # type: List[queue.Queue]  # set by frames(), in QUEUES order
        self.max_frames = max_frames
        self.show_status = status_line
        self.log = log or _log
        # Draw on a copy, so that the captured frame reaches frames()' caller unchanged (the blend
        # overlay draws into the frame itself, which dfseg-run can allow).
        self.keep_frames = keep_frames
        self.stats = LiveCounters()
        self.stop_event = threading.Event()  # stop capturing; frames in flight still finish
        self.abort_event = threading.Event()  # drop everything (error or second Ctrl-C)
        self.errors = []  # type: List[BaseException]
        self.end_reason = "end of input"
        self.clocks = {name: StageClock() for name in STAGES}
        self._start = self._elapsed = self._cpu_start = self._cpu = 0.0
        # The light stages yield the cores to inference (see scheduling); the guard undoes it if they starve.
        self.helpers = HelperThreads(helper_policy)
        self.guard = StarvationGuard()

    # ---------------------------------------------------------------- public
    def request_stop(self, reason: str) -> None:
        if not self.stop_event.is_set():
            self.end_reason = reason
            self.stop_event.set()

    def run(self) -> RunResult:
        """Process until the input ends, ``max_frames``, a window's quit key, or Ctrl-C."""
        for _ in self.frames():
            pass
        return self.result()

    def frames(self, handle_signals: bool = True) -> Iterator[Output]:
        """Run the stages and write every output, yielding each frame once it has been written.

        The coordinating loop (outputs included) runs in the caller's thread.  With ``handle_signals``
        (and in the main thread) SIGINT and SIGTERM stop capture and end the iteration; without, a
        KeyboardInterrupt propagates to the caller after the threads stopped and the outputs were
        finalised.  Closing the generator early (``break``) does the same.
        """
        groups = THREADS[self.latency]
        queues = self.queues = [queue.Queue(maxsize=self.queue_size) for _ in range(len(groups) + 1)]
        threads = [threading.Thread(target=self._capture, args=(queues[0],), name="capture", daemon=True)]
        threads += [self._stage(steps, queues[i], queues[i + 1]) for i, steps in enumerate(groups)]
        previous_handlers = self._install_signal_handlers() if handle_signals else {}
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()
        try:
            for sink in self.sinks:
                sink.open()
            self.stats.state = "running"
            for thread in threads:
                thread.start()
            yield from self._write_outputs(queues[-1])
        except GeneratorExit:  # the caller stopped iterating: stop and finalise; close() ends the generator
            self.request_stop(CLOSED)
            self.abort_event.set()
        except BaseException as exc:  # KeyboardInterrupt included: outputs are still finalised
            self.abort_event.set()
            self.stop_event.set()
            if isinstance(exc, Terminated):
                self.end_reason = TERMINATED
            elif isinstance(exc, KeyboardInterrupt):
                self.end_reason = INTERRUPTED
            if not handle_signals or not isinstance(exc, (Terminated, KeyboardInterrupt)):
                self.errors.append(exc)
        finally:
            self.stats.state = "stopping"
            self.stop_event.set()
            for thread in threads:
                if thread.is_alive():
                    thread.join(timeout=5.0)
            self._restore_signal_handlers(previous_handlers)
            for sink in reversed(self.sinks):  # last opened first, so that the folders they made can go
                try:
                    sink.close()
                except Exception as exc:  # finalise the others before reporting
                    self.errors.append(exc)
            self.source.close()
            self._elapsed = time.perf_counter() - self._start
            self._cpu = time.process_time() - self._cpu_start
            self.stats.state = "stopped"
        if self.errors:  # also on close(): a video that could not be finalised must not pass unnoticed
            raise self.errors[0]

    def result(self) -> RunResult:
        """The run's summary, once ``frames()`` has ended."""
        elapsed, written = self._elapsed, self.stats.written
        return RunResult(
            frames_captured=self.stats.captured,
            frames_written=written,
            frames_dropped=self.stats.dropped,
            elapsed_s=elapsed,
            pipeline_fps=written / elapsed if elapsed > 0 else 0.0,
            network_fps=self.stats.network_fps(),
            end_reason=self.end_reason,
            profile={name: clock.summary() for name, clock in self.clocks.items() if clock.items},
            process_cpu_ms_per_frame=1000.0 * self._cpu / written if written else None,
            helper_policy=self.helpers.policy,
            latency_ms=self.stats.latency(),
            drops=dict(self.drops),
            latency_policy=self.latency,
        )

    # ---------------------------------------------------------------- stages
    def _capture(self, out: "queue.Queue[Any]") -> None:
        clock = self.clocks["capture"]
        if self.latency != LOW:
            self.helpers.enter()
        try:
            self.source.open()
            while not self.stop_event.is_set():
                if self.max_frames is not None and self.stats.captured >= self.max_frames:
                    self.request_stop("reached --max-frames {}".format(self.max_frames))
                    break
                cpu, wall = thread_cpu_s(), time.perf_counter()
                frame = self.source.read()
                clock.cpu_s += thread_cpu_s() - cpu
                clock.work_s += time.perf_counter() - wall
                if frame is None:
                    reason = getattr(self.source, "end_reason", None)
                    self.request_stop(reason or "end of input")
                    break
                self.stats.captured += 1
                clock.items += 1
                if self.source.live:
                    self._put_latest(out, frame, "capture")
                else:
                    self._put(out, frame, clock)
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._put_end(out)

    def _preprocess(self, frame: Frame) -> Any:
        return frame, self.segmenter.prepare(frame.image)

    def _inference(self, item: Any) -> Any:
        frame, tensor = item
        started = time.perf_counter()
        outputs = self.segmenter.infer(tensor)
        self.stats.add_inference((time.perf_counter() - started) * 1000.0)
        return frame, outputs

    def _postprocess(self, item: Any) -> Any:
        frame, outputs = item
        classes = self.segmenter.classmap(outputs)
        height, width = frame.image.shape[:2]
        classes = self.segmenter.to_frame_size(classes, height, width)
        classified = time.monotonic()
        self.stats.add_classmap(frame.captured, classified)
        return frame, classes, classified

    def _render(self, item: Any) -> Any:
        frame, classes, classified = item
        if self.renderer is None:  # no output draws anything (the Python API without outputs)
            return Output(frame, classes, classified, None)
        status = self.stats.status_line() if self.show_status else None
        image = frame.image.copy() if self.keep_frames else frame.image
        return Output(frame, classes, classified, self.renderer.render(image, classes, status))

    def _write_outputs(self, inbox: "queue.Queue[Any]") -> Iterator[Output]:
        clock = self.clocks["output"]
        for item in self._items(inbox, clock):
            cpu, wall = thread_cpu_s(), time.perf_counter()
            frame, classes = item.frame, item.classmap
            for sink in self.sinks:
                sink.write(item.image, frame.name, classes)
                if sink.quit_requested:
                    self.request_stop("closed by the user")
            clock.cpu_s += thread_cpu_s() - cpu
            clock.work_s += time.perf_counter() - wall
            clock.items += 1
            self.stats.add_output(frame.captured)
            yield item

    def _guard_helpers(self) -> None:
        if self.helpers.policy != IDLE:
            return
        if self.latency == LOW:
            # Frame -> class map runs at the inference's priority; what it can wait for is the drawing.
            waited, helper, what = self.clocks["postprocess"].wait_out_s, self.clocks["render"], "the drawing"
        else:
            waited, helper, what = self.clocks["inference"].wait_in_s, self.clocks["preprocess"], "frames"
        if self.guard.observe(waited, self.clocks["inference"].work_s, helper.cpu_s, helper.work_s):
            self.helpers.move_to(NICE)
            self.log("inference was waiting for {} that the low-priority stages could not keep up with (the CPU "
                     "is busy): they now run at normal priority, nice +{}".format(what, HELPER_NICENESS))

    # ---------------------------------------------------------------- plumbing
    def _stage(self, steps: Sequence[str], inbox: "queue.Queue[Any]", outbox: "queue.Queue[Any]") -> threading.Thread:
        """A thread that runs ``steps`` (stage names, each a method ``_<name>``) on every item of ``inbox``."""
        clocks = [self.clocks[name] for name in steps]
        runs_inference = "inference" in steps

        def loop() -> None:
            if not runs_inference:
                self.helpers.enter()
            try:
                for item in self._items(inbox, clocks[0]):
                    if self.abort_event.is_set():
                        continue  # drain without working
                    for name, clock in zip(steps, clocks):
                        cpu, wall = thread_cpu_s(), time.perf_counter()
                        item = getattr(self, "_" + name)(item)
                        clock.cpu_s += thread_cpu_s() - cpu
                        clock.work_s += time.perf_counter() - wall
                        clock.items += 1
                    if runs_inference:
                        self._guard_helpers()
                    if self.latency != LOW or runs_inference:
                        # Under LOW too a class map waits (at most one) for the drawing rather than be
                        # replaced: the next frame is taken only after, so it is still the newest.
                        self._put(outbox, item, clocks[-1])
                    else:
                        self._put_latest(outbox, item, steps[-1])
            except BaseException as exc:
                self._fail(exc)
            finally:
                self._put_end(outbox)

        return threading.Thread(target=loop, name="+".join(steps), daemon=True)

    def _items(self, inbox: "queue.Queue[Any]", clock: Optional[StageClock] = None) -> Iterator[Any]:
        """Items from ``inbox`` until the end marker, or until the run is aborted and nothing is left."""
        while True:
            waited = time.perf_counter()
            try:
                item = inbox.get(timeout=_POLL_S)
            except queue.Empty:
                if clock is not None:
                    clock.wait_in_s += time.perf_counter() - waited
                if self.abort_event.is_set():
                    return
                continue
            if clock is not None:
                clock.wait_in_s += time.perf_counter() - waited
            if item is _END:
                return
            yield item

    def _put(self, out: "queue.Queue[Any]", item: Any, clock: Optional[StageClock] = None) -> None:
        """Blocking put that gives up when the run is aborted (nobody would read it)."""
        waited = time.perf_counter()
        try:
            while not self.abort_event.is_set():
                try:
                    out.put(item, timeout=_POLL_S)
                    return
                except queue.Full:
                    continue
        finally:
            if clock is not None:
                clock.wait_out_s += time.perf_counter() - waited

    def _put_latest(self, out: "queue.Queue[Any]", item: Any, stage: str) -> None:
        """Put ``item``, dropping the oldest queued item when full (live sources only).  Only ``stage``
        writes ``out`` and the end marker comes after its last item, so the marker is never dropped."""
        while True:
            try:
                out.put_nowait(item)
                return
            except queue.Full:
                try:
                    out.get_nowait()
                    self.stats.dropped += 1
                    self.drops[stage] += 1
                except queue.Empty:
                    pass

    def _put_end(self, out: "queue.Queue[Any]") -> None:
        """The end marker must arrive even when aborting: make room by discarding if necessary."""
        while True:
            try:
                out.put(_END, timeout=_POLL_S)
                return
            except queue.Full:
                if self.abort_event.is_set():
                    try:
                        out.get_nowait()
                    except queue.Empty:
                        pass

    def _fail(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self.abort_event.set()
        self.stop_event.set()

    def _install_signal_handlers(self) -> Dict[int, Any]:
        """SIGINT and SIGTERM stop capture (the frames in flight still finish); a second one of either
        raises, which abandons them.  Both finalise the outputs."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        reasons = {signal.SIGINT: INTERRUPTED, signal.SIGTERM: TERMINATED}

        def on_signal(signum: int, frame: Any) -> None:
            if self.stop_event.is_set():
                raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
            self.log("stopping ({} again to abandon the frames in flight)".format(
                "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"))
            self.request_stop(reasons[signum])

        return {signum: signal.signal(signum, on_signal) for signum in reasons}

    @staticmethod
    def _restore_signal_handlers(previous: Dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def check_latency(policy: str) -> None:
    """A latency policy other than LATENCY_POLICIES is a one-line UserError."""
    if policy not in LATENCY_POLICIES:
        raise UserError("latency: expected one of {}, got {!r}".format(", ".join(LATENCY_POLICIES), policy))


def follow_source_fps(source: Source, sinks: List[Sink]) -> None:
    """Video outputs play at a video input's frame rate, known once the source is open (it is opened
    now; the pipeline's own open() keeps that capture)."""
    video_sinks = [s for s in sinks if isinstance(s, VideoFileSink)]
    if video_sinks and isinstance(source, CaptureSource) and not source.live:
        try:
            source.open()  # idempotent
        except UserError:
            return  # the pipeline's own open() reports it, as for any other source
        if source.fps:
            for sink in video_sinks:
                sink.fps = source.fps


def _log(message: str) -> None:
    print(redact(message), file=sys.stderr, flush=True)

