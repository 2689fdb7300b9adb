"""The live pipeline's helper threads as the kernel sees them (SCHED_IDLE, nice), and the guard that
gives starved helpers their share back."""

import os
import sys
import threading
import time

import pytest
from test_live_pipeline import tiny_onnx, write_video

from dfseg.live import scheduling
from dfseg.live.scheduling import IDLE, NICE, HelperThreads, StarvationGuard, policy_of

linux_idle = pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(os, "SCHED_IDLE"),
                                reason="SCHED_IDLE is Linux's")
# A process already near the nicest value cannot make a thread 5 nicer (nice stops at 19).
room_to_be_nicer = pytest.mark.skipif(
    hasattr(os, "getpriority") and os.getpriority(os.PRIO_PROCESS, 0) > 19 - scheduling.HELPER_NICENESS,
    reason="this process runs at nice > 14: a helper cannot be 5 nicer")


def in_thread(work):
    """Run ``work`` in a fresh thread that stays alive until the caller has looked at it."""
    seen, release = {}, threading.Event()

    def body():
        seen["tid"] = scheduling.native_thread_id()
        seen["result"] = work()
        seen["policy"] = policy_of(seen["tid"])
        release.wait(10)

    thread = threading.Thread(target=body)
    thread.start()
    return thread, seen, release


@linux_idle
def test_pipeline_helpers_are_sched_idle_while_inference_and_outputs_are_not(tmp_path):
    from dfseg.backends import get_runner
    from dfseg.live.pipeline import Pipeline
    from dfseg.live.render import Renderer
    from dfseg.live.segmenter import Segmenter
    from dfseg.live.sinks import NullSink
    from dfseg.live.sources import open_source

    seen = {}

    class LookingSink(NullSink):
        def write(self, image, name, classes):
            if not seen:  # every helper has started once a frame reaches the outputs
                seen["helpers"] = [policy_of(tid) for tid in pipeline.helpers.tids()]
                seen["output"] = policy_of(scheduling.native_thread_id())
            super().write(image, name, classes)

    model = tiny_onnx(str(tmp_path / "tiny.onnx"))
    video = write_video(str(tmp_path / "clip.avi"))
    with get_runner("onnxruntime", model, threads=1) as runner:
        pipeline = Pipeline(open_source(video), Segmenter(runner), Renderer(), [LookingSink()])
        result = pipeline.run()
    # capture, preprocess, postprocess and render; inference and the outputs keep the normal class
    assert seen["helpers"] == [IDLE] * 4
    assert seen["output"] is None
    assert result.helper_policy == IDLE


@linux_idle
def test_low_latency_only_the_drawing_is_sched_idle(tmp_path):
    """Under the low-latency policy a live source is read at normal priority (a camera's frames must be
    taken as they come) and frame -> class map is one normal thread; only the drawing yields."""
    from test_live_pipeline import BurstCamera

    from dfseg.backends import get_runner
    from dfseg.live.pipeline import Pipeline
    from dfseg.live.render import Renderer
    from dfseg.live.segmenter import Segmenter
    from dfseg.live.sinks import NullSink

    seen = {}

    class LookingCamera(BurstCamera):
        def read(self):
            seen.setdefault("capture", policy_of(scheduling.native_thread_id()))
            return super().read()

    class LookingSink(NullSink):
        def write(self, image, name, classes):
            seen.setdefault("helpers", [policy_of(tid) for tid in pipeline.helpers.tids()])
            seen.setdefault("output", policy_of(scheduling.native_thread_id()))
            super().write(image, name, classes)

    with get_runner("onnxruntime", tiny_onnx(str(tmp_path / "tiny.onnx")), threads=1) as runner:
        pipeline = Pipeline(LookingCamera(20), Segmenter(runner), Renderer(), [LookingSink()], latency="low")
        result = pipeline.run()
    assert result.latency_policy == "low" and result.helper_policy == IDLE
    assert seen == {"capture": None, "helpers": [IDLE], "output": None}


def test_low_latency_guard_gives_a_starved_drawing_its_share(tmp_path):
    """Under the low-latency policy inference waits for the drawing to take each class map; a drawing
    that keeps it waiting while runnable but not running (here: it sleeps, as a thread the busy cores
    never get to) moves the helpers to nice, as a starved preprocessing does under the default policy."""
    from test_live_pipeline import BurstCamera

    from dfseg.backends import get_runner
    from dfseg.live.pipeline import Pipeline
    from dfseg.live.render import Renderer
    from dfseg.live.segmenter import Segmenter
    from dfseg.live.sinks import NullSink

    class Camera(BurstCamera):  # a camera's read waits for the next frame (it does not hold the GIL)
        def read(self):
            time.sleep(0.002)
            return super().read()

    class StarvedPipeline(Pipeline):
        def _render(self, item):
            time.sleep(0.03)  # wall time without CPU time, as for a thread that is not running
            return super()._render(item)

    messages = []
    with get_runner("onnxruntime", tiny_onnx(str(tmp_path / "tiny.onnx")), threads=1) as runner:
        pipeline = StarvedPipeline(Camera(100000), Segmenter(runner), Renderer(), [NullSink()], latency="low",
                                   log=messages.append)

        def stop_once_moved():
            for _ in pipeline.frames(handle_signals=False):
                if pipeline.helpers.policy == NICE or pipeline.stats.written >= 200:
                    pipeline.request_stop("test over")

        stop_once_moved()
    assert pipeline.result().helper_policy == NICE
    assert messages == ["inference was waiting for the drawing that the low-priority stages could not keep up "
                        "with (the CPU is busy): they now run at normal priority, nice +{}".format(
                            scheduling.HELPER_NICENESS)]


@linux_idle
@room_to_be_nicer
def test_nice_policy_is_nicer_than_the_process_and_not_idle():
    thread, seen, release = in_thread(lambda: HelperThreads(NICE).enter())
    try:
        while "policy" not in seen:
            thread.join(0.01)
        assert seen["policy"] == NICE
        assert os.getpriority(os.PRIO_PROCESS, seen["tid"]) == os.getpriority(os.PRIO_PROCESS, 0) + \
            scheduling.HELPER_NICENESS
    finally:
        release.set()
        thread.join()


@linux_idle
@room_to_be_nicer
def test_moving_idle_helpers_to_nice_takes_them_out_of_sched_idle():
    helpers = HelperThreads(IDLE)
    thread, seen, release = in_thread(helpers.enter)
    try:
        while "policy" not in seen:
            thread.join(0.01)
        assert seen["policy"] == IDLE
        if not scheduling.set_policy(seen["tid"], NICE):
            pytest.skip("this system does not let an unprivileged thread leave SCHED_IDLE (RLIMIT_NICE)")
        helpers.move_to(NICE)
        assert helpers.policy == NICE
        assert policy_of(seen["tid"]) == NICE
        assert os.sched_getscheduler(seen["tid"]) == os.SCHED_OTHER
    finally:
        release.set()
        thread.join()


def feed(guard, windows, wait_ms, busy_ms, pre_cpu_ms, pre_wall_ms):
    """Running totals of ``windows`` windows of identical frames: the guard's answer at every frame."""
    answers, totals = [], [0.0, 0.0, 0.0, 0.0]
    for _ in range(windows * guard.window):
        for i, value in enumerate((wait_ms, busy_ms, pre_cpu_ms, pre_wall_ms)):
            totals[i] += value / 1000.0
        answers.append(guard.observe(*totals))
    return [answers[(w + 1) * guard.window - 1] for w in range(windows)], answers


@pytest.mark.parametrize("case, wait_ms, pre_cpu_ms, pre_wall_ms, starved", [
    ("helpers starved: inference waits, preprocessing runnable but not running", 30.0, 1.0, 25.0, True),
    ("camera slower than the network: inference waits, preprocessing runs at once", 30.0, 1.0, 1.2, False),
    ("inference busy: preprocessing delayed but always ready in time", 0.1, 1.0, 25.0, False),
])
def test_starvation_guard(case, wait_ms, pre_cpu_ms, pre_wall_ms, starved):
    guard = StarvationGuard(window=8)
    at_window_end, every_frame = feed(guard, 3, wait_ms, 60.0, pre_cpu_ms, pre_wall_ms)
    assert at_window_end[0] is False, "the start-up window is never judged"
    assert at_window_end[1:] == [starved, starved], case
    assert sum(every_frame) == (2 if starved else 0), "answers come only at the end of a window"
