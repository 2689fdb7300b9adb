"""The live pipeline's FPS against the bare network's, measured in alternating pairs in one run.

Bare: ``runner.infer`` in a loop on one preprocessed frame.  Pipeline: ``dfseg-run``'s threaded
pipeline (decode, preprocess, inference, class map to frame size, LUT colouring + blend + legend +
status line, output ``none``) over a looping video.  Both use the same runner (one session, the same
model file, the argmax inside the graph: output ``classmap``), in segments of equal length, the
order alternating (bare first, then pipeline first, ...), so slow drift of a shared machine moves
both members of a pair alike.

The bare network is timed with every core kept awake by a SCHED_IDLE busy loop.  On a VM an idle
vCPU halts, and waking it costs the runtime's threads time at every operator; the pipeline's
idle-class stages keep the cores awake, so without the loops the bare network would be handicapped
and a ratio above 1 would say nothing about the pipeline.  A third, plain bare segment per pair
(cores free to sleep) shows the size of that effect.

Reported: the median of the paired ratios with its 95% distribution-free interval and their range,
the spread of the bare segments, a verdict from the interval (met, missed, or not decided: a run
too noisy for its number of pairs), and where the pipeline's time goes (per stage:
thread CPU, work, waits).  Goal: >= 0.95 idle, >= 0.90 under ``stress-ng --cpu 1``.

    python benchmarks/bench_pipeline.py [--stress] [--pairs N] [--seconds 4] [--helper-priority idle|nice] [--goal R] [--out FILE]

``--budget-minutes M`` (both modes): after the ``--pairs`` / ``--rounds`` asked for, go on adding
them (two pairs, or four rounds so that every order comes round again) while a verdict is "not
decided" and less than M minutes have passed since the start; the JSON says why it stopped.  A noisy
machine then gives a decided verdict where more pairs can bound the median, and an honest "not
decided" where the budget ends first.

``--latency``: capture -> class map latency and FPS on a live-paced source (the clip played at its
own frame rate, ``--source-fps``, above the network's, each read giving the newest frame as a camera
does, stamped with the time the "camera" delivered it), interleaved in rounds (the order rotating):
the default pipeline, the low-latency policy (``--latency low``), a plain sequential loop as in
jetson-inference's segnet.py (capture the newest frame, segment, render, write; one at a time) and the
bare network.  Per subject: FPS and p50/p95/p99 over the frames after each segment's warm-up, each
with the distribution-free 95% interval of its median over rounds.  Goals: the low policy's p99 <=
1.5 x bare network latency + one frame interval; its FPS >= 0.9 x the default policy's; its FPS > the
sequential loop's (both as per-round ratios).  Writes results/pipeline_latency.json.

    python benchmarks/bench_pipeline.py --latency [--rounds 10] [--seconds 3.5] [--source-fps 30]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from background import Stress

from dfseg.backends.onnxrt import MAX_THREADS
from dfseg.cli.common import number, whole_number
from dfseg.live.scheduling import IDLE, POLICIES
from dfseg.live.sources import Frame, Source

HERE = os.path.dirname(os.path.abspath(__file__))
WARM_S = 1.0  # each segment starts with this much unmeasured running
GOAL_IDLE = 0.95
GOAL_STRESS = 0.90
# Under load single pairs swing by +-15% (the stages share stress-ng's core unevenly), so the median
# needs more pairs to be bounded within the goal's margin.
PAIRS_IDLE = 15
PAIRS_STRESS = 40
CONFIDENCE = 0.95


def stop_reason(done: int, unit: str, undecided: List[str], budget_minutes: float, deadline: float) -> Optional[str]:
    """Why to stop adding pairs/rounds now, or None to go on (see --budget-minutes)."""
    if not undecided:
        return "every verdict decided after {} {}".format(done, unit)
    if time.monotonic() < deadline:
        return None
    if not budget_minutes:
        return "{} {} done, not decided: {}".format(done, unit, "; ".join(undecided))
    return "budget of {:g} min over after {} {}, not decided: {}".format(budget_minutes, done, unit, "; ".join(undecided))


def median_interval(values: List[float], confidence: float = CONFIDENCE) -> Tuple[float, float]:
    """A distribution-free confidence interval of the median: the k-th smallest and k-th largest of
    ``values``, with k the largest rank at which Binomial(n, 1/2) leaves at most (1 - confidence) / 2
    in each tail.  Needs no assumption about how the machine's noise is distributed."""
    ordered = sorted(values)
    n = len(ordered)
    tail, k = (1.0 - confidence) / 2.0, 0
    probability = 0.5 ** n  # P(X = k), stepped by the ratio of binomial coefficients
    cumulative = probability  # P(X <= k)
    while cumulative <= tail:
        probability *= (n - k) / (k + 1)
        k += 1
        cumulative += probability
    if k == 0:
        return ordered[0], ordered[-1]  # too few pairs for this confidence: the whole range
    return ordered[k - 1], ordered[n - k]


def verdict_of(interval: Tuple[float, float], goal: float) -> str:
    """Whether the pairs show the goal met, missed, or neither (the run was too noisy to tell)."""
    low, high = interval
    if low >= goal:
        return "meets the goal"
    if high < goal:
        return "below the goal: the pipeline is slower (the pairs agree)"
    return "not decided: the interval straddles the goal, the machine's noise is larger than the margin; rerun with more --pairs"


def make_video(path: str, width: int, height: int, frames: int) -> str:
    import cv2

    from dfseg.synthetic import street_frames

    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (width, height))
    for image, _ in street_frames(frames, (width, height), seed=7):
        writer.write(image)
    writer.release()
    return path


# One busy loop in Linux's idle class: it runs only on a core that nothing else wants.
SPINNER = "import os\nos.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\nwhile True:\n    pass\n"


def start_spinners(count: int) -> List[subprocess.Popen]:
    """``count`` SCHED_IDLE busy loops (processes, so that they hold no GIL of ours)."""
    return [subprocess.Popen([sys.executable, "-c", SPINNER]) for _ in range(count)]


def stop_spinners(spinners: List[subprocess.Popen]) -> None:
    for spinner in spinners:
        spinner.kill()
    for spinner in spinners:
        spinner.wait()


def bare_segment(runner: Any, feed: Dict[str, np.ndarray], seconds: float, spinners: int = 0) -> float:
    """Inferences per second of ``runner`` on ``feed``; with ``spinners`` SCHED_IDLE busy loops beside it,
    which keep every core awake as the pipeline's idle-class stages do (see the module's docstring)."""
    running = start_spinners(spinners)
    try:
        end_warm = time.perf_counter() + WARM_S
        while time.perf_counter() < end_warm:
            runner.infer(feed, check_inputs=False)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            runner.infer(feed, check_inputs=False)
            count += 1
        return count / (time.perf_counter() - start)
    finally:
        stop_spinners(running)


def pipeline_segment(runner: Any, video: str, size: Any, seconds: float, helper_policy: str):
    from dfseg.live.pipeline import Pipeline
    from dfseg.live.render import Renderer
    from dfseg.live.segmenter import Segmenter
    from dfseg.live.sinks import NullSink
    from dfseg.live.sources import open_source

    class StampSink(NullSink):
        """Notes when each frame is written (the pipeline itself keeps no per-frame history)."""

        def write(self, *args: Any) -> None:
            times.append(time.perf_counter())

    times: List[float] = []
    pipeline = Pipeline(open_source(video, loops=-1), Segmenter(runner, size), Renderer(), [StampSink()],
                        status_line=True, log=lambda message: None, helper_policy=helper_policy)
    holder: Dict[str, Any] = {}
    worker = threading.Thread(target=lambda: holder.update(result=pipeline.run()), daemon=True)
    worker.start()
    time.sleep(WARM_S + seconds)
    stop = time.perf_counter()
    pipeline.request_stop("segment over")
    worker.join()
    times = [t for t in times if t <= stop]
    first = next((i for i, t in enumerate(times) if t >= times[0] + WARM_S), None) if times else None
    if first is None or len(times) - first < 3:
        raise RuntimeError("the pipeline wrote too few frames in {:.0f} s to measure".format(seconds))
    fps = (len(times) - 1 - first) / (times[-1] - times[first])
    return fps, holder["result"]


class PacedVideo(Source):
    """A live source playing decoded frames at ``fps`` from ``open()``, as a camera delivers them: each
    read returns the newest frame already delivered (waiting for the next one if the reader is ahead),
    stamped with its delivery time, a fresh buffer each time."""

    live = True
    description = "paced video"

    def __init__(self, images: List[np.ndarray], fps: float) -> None:
        super().__init__()
        self.images, self.fps = images, fps
        self.start = 0.0
        self.next_index = 0
        self.end_reason = None

    def open(self) -> None:
        if not self.start:
            self.start = time.monotonic()

    def read(self) -> Frame:
        self.open()
        due = int((time.monotonic() - self.start) * self.fps)
        if due < self.next_index:  # the reader is ahead of the camera: wait for the next frame
            due = self.next_index
            time.sleep(max(0.0, self.start + due / self.fps - time.monotonic()))
        self.next_index = due + 1
        self.frames_read += 1
        image = self.images[due % len(self.images)].copy()
        return Frame(due, image, "{:06d}".format(due), self.start + due / self.fps)

def _after_warm(records: List[Tuple[float, float]], stop: float) -> Tuple[float, List[float]]:
    """FPS and capture -> class map latencies (ms) of ``records`` (output time, latency ms) from WARM_S
    after the first output to ``stop``."""
    records = [r for r in records if r[0] <= stop]
    if not records:
        raise RuntimeError("no frame came out")
    kept = [r for r in records if r[0] >= records[0][0] + WARM_S]
    if len(kept) < 3:
        raise RuntimeError("too few frames after the warm-up to measure")
    return (len(kept) - 1) / (kept[-1][0] - kept[0][0]), [r[1] for r in kept]


def paced_pipeline(runner: Any, images: List[np.ndarray], fps: float, size: Any, seconds: float, latency: str):
    from dfseg.live.pipeline import Pipeline
    from dfseg.live.render import Renderer
    from dfseg.live.segmenter import Segmenter
    from dfseg.live.sinks import NullSink

    pipeline = Pipeline(PacedVideo(images, fps), Segmenter(runner, size), Renderer(), [NullSink()],
                        status_line=True, log=lambda message: None, latency=latency)
    records: List[Tuple[float, float]] = []

    def consume() -> None:
        for output in pipeline.frames(handle_signals=False):
            records.append((time.monotonic(), (output.classified - output.frame.captured) * 1000.0))

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    time.sleep(WARM_S + seconds)
    stop = time.monotonic()
    pipeline.request_stop("segment over")
    worker.join()
    fps_out, latencies = _after_warm(records, stop)
    return fps_out, latencies, pipeline.result()


def paced_sequential(runner: Any, images: List[np.ndarray], fps: float, size: Any, seconds: float):
    """jetson-inference's segnet.py loop: capture the newest frame, segment, render, write; one at a time."""
    from dfseg.live.render import Renderer
    from dfseg.live.segmenter import Segmenter
    from dfseg.live.sinks import NullSink

    source, segmenter, renderer, sink = PacedVideo(images, fps), Segmenter(runner, size), Renderer(), NullSink()
    source.open()
    records: List[Tuple[float, float]] = []
    end = time.monotonic() + WARM_S + seconds
    while time.monotonic() < end:
        frame = source.read()
        classes = segmenter.segment(frame.image)
        classified = time.monotonic()
        sink.write(renderer.render(frame.image, classes, "FPS"), frame.name, classes)
        records.append((time.monotonic(), (classified - frame.captured) * 1000.0))
    return _after_warm(records, end)


def interval_verdict(interval: Tuple[float, float], at_most: Optional[float] = None,
                     at_least: Optional[float] = None, above: Optional[float] = None) -> str:
    low, high = interval
    if at_most is not None:
        return "met" if high <= at_most else ("missed" if low > at_most else "not decided")
    if at_least is not None:
        return "met" if low >= at_least else ("missed" if high < at_least else "not decided")
    assert above is not None
    return "met" if low > above else ("missed" if high <= above else "not decided")


LATENCY_SUBJECTS = ["default", "low", "sequential", "bare"]


def latency_goals(rounds: List[Dict[str, Any]], source_fps: float) -> Tuple[Dict[str, Any], Dict[str, Tuple]]:
    """Each subject's medians with their intervals, and each goal as (median, interval, verdict)."""
    subjects = LATENCY_SUBJECTS
    frame_ms = 1000.0 / source_fps
    summary: Dict[str, Any] = {}
    for name in subjects:
        keys = ["fps", "ms"] if name == "bare" else ["fps", "p50", "p95", "p99"]
        summary[name] = {key: {"median": round(statistics.median(r[name][key] for r in rounds), 3),
                               "interval": list(median_interval([r[name][key] for r in rounds]))} for key in keys}
    bare_ms = summary["bare"]["ms"]["median"]
    bound = 1.5 * bare_ms + frame_ms
    low_vs_default = [r["low"]["fps"] / r["default"]["fps"] for r in rounds]
    low_vs_sequential = [r["low"]["fps"] / r["sequential"]["fps"] for r in rounds]
    goals = {
        "low p99 <= 1.5 x bare latency + one frame interval ({:.1f} ms)".format(bound):
            (summary["low"]["p99"]["median"], summary["low"]["p99"]["interval"],
             interval_verdict(tuple(summary["low"]["p99"]["interval"]), at_most=bound)),
        "low FPS / default FPS >= 0.9":
            (round(statistics.median(low_vs_default), 4), list(median_interval(low_vs_default)),
             interval_verdict(median_interval(low_vs_default), at_least=0.9)),
        "low FPS / sequential FPS > 1":
            (round(statistics.median(low_vs_sequential), 4), list(median_interval(low_vs_sequential)),
             interval_verdict(median_interval(low_vs_sequential), above=1.0)),
    }
    return summary, goals


def run_latency(args: argparse.Namespace) -> int:
    import cv2

    from dfseg.backends import get_runner
    from dfseg.backends.versions import backend_version
    from dfseg.bench.machine import describe_machine, machine_identity
    from dfseg.fileio import write_json_atomic
    from dfseg.live.counters import percentiles
    from dfseg.live.segmenter import Segmenter
    from dfseg.sizes import parse_size

    size = parse_size(args.size)
    out = args.out or os.path.join(HERE, "results", "pipeline_latency.json")
    before = describe_machine()
    deadline = time.monotonic() + 60.0 * args.budget_minutes
    subjects = LATENCY_SUBJECTS
    rounds: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as work:
        model = args.model or export_model(args.arch, size, work)
        video = make_video(os.path.join(work, "street.avi"), size.width, size.height, 120)
        capture = cv2.VideoCapture(video)
        images = []
        while True:
            ok, image = capture.read()
            if not ok:
                break
            images.append(image)
        capture.release()
        cores = os.cpu_count() or 1
        with get_runner("onnxruntime", model, threads=args.threads) as runner:
            feed = {Segmenter(runner, size).input_name: Segmenter(runner, size).prepare(images[0])}
            index = 0
            while True:
                if index >= args.rounds and (index - args.rounds) % 4 == 0:
                    undecided = [name for name, goal in latency_goals(rounds, args.source_fps)[1].items()
                                 if goal[2] == "not decided"]
                    stopped_because = stop_reason(index, "rounds", undecided, args.budget_minutes, deadline)
                    if stopped_because:
                        break
                order = subjects[index % 4:] + subjects[:index % 4]
                index += 1
                row: Dict[str, Any] = {"order": order}
                for subject in order:
                    if subject == "bare":
                        bare_fps = bare_segment(runner, feed, args.seconds, spinners=cores)
                        row["bare"] = {"fps": round(bare_fps, 3), "ms": round(1000.0 / bare_fps, 3)}
                        continue
                    if subject == "sequential":
                        fps, latencies = paced_sequential(runner, images, args.source_fps, size, args.seconds)
                        row[subject] = {"fps": round(fps, 3)}
                    else:
                        fps, latencies, result = paced_pipeline(runner, images, args.source_fps, size, args.seconds,
                                                                subject)
                        row[subject] = {"fps": round(fps, 3), "drops": result.drops}
                    row[subject].update(percentiles(latencies) or {})
                rounds.append(row)
                print("round {}: ".format(index) + "; ".join(
                    "{} {:.1f} FPS{}".format(name, row[name]["fps"], "" if name == "bare" else
                                             ", p99 {:.0f} ms".format(row[name]["p99"])) for name in subjects), flush=True)
    frame_ms = 1000.0 / args.source_fps
    summary, goals = latency_goals(rounds, args.source_fps)
    record = {
        "benchmark": "bench_pipeline --latency", "model": args.model or args.arch, "size": str(size),
        "backend": "onnxruntime", "threads": args.threads, "source_fps": args.source_fps, "segment_s": args.seconds,
        "rounds_asked": args.rounds, "rounds_n": len(rounds), "budget_minutes": args.budget_minutes,
        "stopped_because": stopped_because, "interval_confidence": CONFIDENCE, "summary": summary,
        "goals": {name: {"median": g[0], "interval": g[1], "verdict": g[2]} for name, g in goals.items()},
        "rounds": rounds,
        "identity": machine_identity("onnxruntime", backend_version("onnxruntime"), args.threads, "fp32"),
        "machine_before": before, "machine_after": describe_machine(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json_atomic(out, record)
    print("\n{} rounds of {:.1f} s segments ({}), source {:.0f} FPS (frame interval {:.1f} ms); median "
          "[95% interval]".format(len(rounds), args.seconds, stopped_because, args.source_fps, frame_ms))
    print("{:<11} {:>20} {:>20} {:>20} {:>20}".format("subject", "FPS", "p50 ms", "p95 ms", "p99 ms"))
    for name in subjects:
        cells = []
        for key in ["fps", "p50", "p95", "p99"] if name != "bare" else ["fps", "ms"]:
            item = summary[name][key]
            cells.append("{:.1f} [{:.1f}-{:.1f}]".format(item["median"], *item["interval"]))
        if name == "bare":
            cells = [cells[0], "per inference " + cells[1], "", ""]
        print("{:<11} {:>20} {:>20} {:>20} {:>20}".format(name, *cells))
    for name, (median, interval, verdict) in goals.items():
        print("goal {}: {:.3f} [{:.3f}-{:.3f}]: {}".format(name, median, interval[0], interval[1], verdict))
    print("wrote {}".format(out))
    return 0


def export_model(arch: str, size: Any, work: str) -> str:
    import torch

    from dfseg.export import export_onnx
    from dfseg.models import create_model
    from dfseg.models.layers import randomize_batchnorm

    torch.manual_seed(0)
    return export_onnx(randomize_batchnorm(create_model(arch), seed=0), size, os.path.join(work, "model.onnx"),
                       output="classmap")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="ONNX file with a classmap output (default: DF1-Seg exported at --size)")
    parser.add_argument("--arch", default="df1-seg")
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--threads", type=whole_number(1, MAX_THREADS), default=None, help="intra-op threads (default: the runtime's)")
    parser.add_argument("--pairs", type=int, default=None,
                        help="bare/pipeline pairs (default: {} idle, {} with --stress)".format(PAIRS_IDLE, PAIRS_STRESS))
    parser.add_argument("--seconds", type=number(0.0, above=True), default=None, help="length of every segment (default 4, 3.5 with --latency)")
    parser.add_argument("--goal", type=number(0.0, above=True), default=None,
                        help="least median pipeline/bare ratio (default: {} idle, {} with --stress)".format(GOAL_IDLE, GOAL_STRESS))
    parser.add_argument("--stress", action="store_true", help="run stress-ng --cpu 1 beside the whole benchmark")
    parser.add_argument("--helper-priority", choices=POLICIES, default=IDLE,
                        help="how the pipeline's stages other than inference are scheduled (dfseg-run's option)")
    parser.add_argument("--label", default=None, help="what ran beside (default: idle, or stress-ng --cpu 1)")
    parser.add_argument("--out", default=None, help="default: results/pipeline.json, or pipeline_stress.json")
    parser.add_argument("--budget-minutes", type=number(0.0), default=0.0,
                        help="go on adding pairs/rounds while a verdict is not decided, up to this many minutes "
                             "from the start (default 0: exactly --pairs/--rounds)")
    parser.add_argument("--latency", action="store_true",
                        help="measure capture -> class map latency on a live-paced source (see the docstring)")
    parser.add_argument("--rounds", type=int, default=10, help="--latency: rounds of the four subjects (default 10)")
    parser.add_argument("--source-fps", type=number(0.0, above=True), default=30.0,
                        help="--latency: the live source's frame rate, above the network's (default 30)")
    args = parser.parse_args()
    if args.latency:
        if args.rounds < 6:
            parser.error("--rounds: at least 6 (fewer cannot bound the median with {:.0%} confidence)".format(CONFIDENCE))
        args.seconds = args.seconds or 3.5
        return run_latency(args)
    args.seconds = args.seconds or 4.0
    if args.pairs is None:
        args.pairs = PAIRS_STRESS if args.stress else PAIRS_IDLE
    if args.pairs < 6:
        parser.error("--pairs: at least 6 (fewer cannot bound the median with {:.0%} confidence)".format(CONFIDENCE))
    goal = args.goal if args.goal is not None else (GOAL_STRESS if args.stress else GOAL_IDLE)
    out = args.out or os.path.join(HERE, "results", "pipeline_stress.json" if args.stress else "pipeline.json")
    if not args.stress:
        return run(args, goal, out, None)
    with Stress(1) as stress:
        return run(args, goal, out, stress)


def run(args: argparse.Namespace, goal: float, out: str, stress: Optional[Stress]) -> int:
    label = args.label or (stress.describe() if stress is not None else "idle")

    from dfseg.backends import get_runner
    from dfseg.backends.versions import backend_version
    from dfseg.bench.machine import describe_machine, machine_identity
    from dfseg.fileio import write_json_atomic
    from dfseg.live.counters import format_profile
    from dfseg.live.segmenter import Segmenter
    from dfseg.sizes import parse_size

    size = parse_size(args.size)
    before = describe_machine()
    deadline = time.monotonic() + 60.0 * args.budget_minutes
    pairs: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as work:
        model = args.model or export_model(args.arch, size, work)
        video = make_video(os.path.join(work, "street.avi"), size.width, size.height, 240)
        with get_runner("onnxruntime", model, threads=args.threads) as runner:
            import cv2

            capture = cv2.VideoCapture(video)
            _, frame = capture.read()
            capture.release()
            segmenter = Segmenter(runner, size)
            feed = {segmenter.input_name: segmenter.prepare(frame)}
            cores = os.cpu_count() or 1
            index = 0
            while True:
                if index >= args.pairs and (index - args.pairs) % 2 == 0:
                    undecided = [] if verdict_of(median_interval([p["ratio"] for p in pairs]), goal) != "not decided" \
                        else ["pipeline / bare >= {}".format(goal)]
                    stopped_because = stop_reason(index, "pairs", undecided, args.budget_minutes, deadline)
                    if stopped_because:
                        break
                bare_first = index % 2 == 0
                index += 1
                if bare_first:
                    bare = bare_segment(runner, feed, args.seconds, spinners=cores)
                piped, result = pipeline_segment(runner, video, size, args.seconds, args.helper_priority)
                if not bare_first:
                    bare = bare_segment(runner, feed, args.seconds, spinners=cores)
                plain = bare_segment(runner, feed, args.seconds)
                pairs.append({"order": "bare, pipeline, plain bare" if bare_first else "pipeline, bare, plain bare",
                              "bare_fps": round(bare, 3), "pipeline_fps": round(piped, 3),
                              "ratio": round(piped / bare, 4), "plain_bare_fps": round(plain, 3),
                              "ratio_to_plain": round(piped / plain, 4), "profile": result.profile,
                              "process_cpu_ms_per_frame": result.process_cpu_ms_per_frame,
                              "helper_policy": result.helper_policy})
                print("pair {}: bare {:.2f} FPS, pipeline {:.2f} FPS, ratio {:.3f} (plain bare {:.2f} FPS)".format(
                    index, bare, piped, piped / bare, plain), flush=True)
    ratios = [p["ratio"] for p in pairs]
    bares = [p["bare_fps"] for p in pairs]
    median_ratio = statistics.median(ratios)
    median_to_plain = statistics.median(p["ratio_to_plain"] for p in pairs)
    awake_gain = statistics.median(p["bare_fps"] / p["plain_bare_fps"] for p in pairs)
    bare_spread = (max(bares) - min(bares)) / statistics.median(bares)
    # The median's interval, not the spread alone, tells a noisy run from a slow pipeline: a run whose
    # pairs disagree can still decide, given enough of them, and one that cannot says so.
    interval = median_interval(ratios)
    verdict = verdict_of(interval, goal)
    last = pairs[-1]
    record = {
        "benchmark": "bench_pipeline", "model": args.model or args.arch, "size": str(size), "backend": "onnxruntime",
        "threads": args.threads, "helper_priority": args.helper_priority, "label": label, "segment_s": args.seconds, "goal_ratio": goal,
        "pairs_asked": args.pairs, "pairs_n": len(pairs), "budget_minutes": args.budget_minutes,
        "stopped_because": stopped_because,
        "median_ratio": round(median_ratio, 4), "median_ratio_interval": [interval[0], interval[1]],
        "interval_confidence": CONFIDENCE, "ratio_range": [min(ratios), max(ratios)],
        "bare_fps_spread": round(bare_spread, 4),
        "median_ratio_to_plain_bare": round(median_to_plain, 4), "awake_bare_gain": round(awake_gain, 4), "verdict": verdict, "pairs": pairs,
        "identity": machine_identity("onnxruntime", backend_version("onnxruntime"), args.threads, "fp32"),
        "machine_before": before, "machine_after": describe_machine(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json_atomic(out, record)
    print("\n{} pairs of {:.0f} s segments ({}; {})".format(len(pairs), args.seconds, label, stopped_because))
    print("pipeline / bare: median {:.3f} ({:.0%} interval {:.3f}-{:.3f}), range {:.3f}-{:.3f}; bare FPS spread {:.1%}".format(
        median_ratio, CONFIDENCE, interval[0], interval[1], min(ratios), max(ratios), bare_spread))
    print("verdict: {} (goal >= {})".format(verdict, goal))
    print("plain bare (cores free to sleep): {:.1%} slower than bare with awake cores; pipeline / plain bare {:.3f}".format(
        1.0 - 1.0 / awake_gain, median_to_plain))
    print("\nwhere the pipeline's time goes (last pair, per frame):")
    print(format_profile(last["profile"], last["process_cpu_ms_per_frame"], last["helper_policy"]))
    print("wrote {}".format(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
