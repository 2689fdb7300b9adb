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

Reported: the median of the paired ratios and their range, the spread of the bare segments, a
verdict that tells a noisy run from a slow pipeline, and where the pipeline's time goes (per stage:
thread CPU, work, waits).  Goal: >= 0.95 idle, >= 0.90 under ``stress-ng --cpu 1``.

    python benchmarks/bench_pipeline.py [--pairs 15] [--seconds 4] [--helper-priority idle|nice] [--goal 0.95] [--out FILE]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List

import numpy as np

from dfseg.live.scheduling import IDLE, POLICIES

HERE = os.path.dirname(os.path.abspath(__file__))
WARM_S = 1.0  # each segment starts with this much unmeasured running
NOISY_RANGE = 0.08  # paired ratios spread wider than this: the machine, not the pipeline, moved them
NOISY_BARE = 0.10


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

    pipeline = Pipeline(open_source(video, loops=-1), Segmenter(runner, size), Renderer(), [NullSink()],
                        status_line=True, log=lambda message: None, helper_policy=helper_policy)
    holder: Dict[str, Any] = {}
    worker = threading.Thread(target=lambda: holder.update(result=pipeline.run()), daemon=True)
    worker.start()
    time.sleep(WARM_S + seconds)
    stop = time.perf_counter()
    pipeline.request_stop("segment over")
    worker.join()
    times = [t for t in pipeline.output_times if t <= stop]
    first = next((i for i, t in enumerate(times) if t >= times[0] + WARM_S), None) if times else None
    if first is None or len(times) - first < 3:
        raise RuntimeError("the pipeline wrote too few frames in {:.0f} s to measure".format(seconds))
    fps = (len(times) - 1 - first) / (times[-1] - times[first])
    return fps, holder["result"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="ONNX file with a classmap output (default: DF1-Seg exported at --size)")
    parser.add_argument("--arch", default="df1-seg")
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the runtime's)")
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of every segment")
    parser.add_argument("--goal", type=float, default=0.95)
    parser.add_argument("--helper-priority", choices=POLICIES, default=IDLE,
                        help="how the pipeline's stages other than inference are scheduled (dfseg-run's option)")
    parser.add_argument("--label", default="idle", help="what ran beside (idle, stress-ng --cpu 1, ...)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "pipeline.json"))
    args = parser.parse_args()
    if args.pairs < 5:
        parser.error("--pairs: at least 5")

    from dfseg.backends import get_runner
    from dfseg.bench.machine import describe_machine
    from dfseg.fileio import write_json_atomic
    from dfseg.live.pipeline import format_profile
    from dfseg.live.segmenter import Segmenter
    from dfseg.sizes import parse_size

    size = parse_size(args.size)
    before = describe_machine()
    pairs: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as work:
        model = args.model
        if model is None:
            import torch

            from dfseg.export import export_onnx
            from dfseg.models import create_model
            from dfseg.models.layers import randomize_batchnorm

            torch.manual_seed(0)
            model = export_onnx(randomize_batchnorm(create_model(args.arch), seed=0), size,
                                os.path.join(work, "model.onnx"), output="classmap")
        video = make_video(os.path.join(work, "street.avi"), size.width, size.height, 240)
        with get_runner("onnxruntime", model, threads=args.threads) as runner:
            import cv2

            capture = cv2.VideoCapture(video)
            _, frame = capture.read()
            capture.release()
            segmenter = Segmenter(runner, size)
            feed = {segmenter.input_name: segmenter.prepare(frame)}
            cores = os.cpu_count() or 1
            for index in range(args.pairs):
                bare_first = index % 2 == 0
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
                    index + 1, bare, piped, piped / bare, plain), flush=True)
    ratios = [p["ratio"] for p in pairs]
    bares = [p["bare_fps"] for p in pairs]
    median_ratio = statistics.median(ratios)
    median_to_plain = statistics.median(p["ratio_to_plain"] for p in pairs)
    awake_gain = statistics.median(p["bare_fps"] / p["plain_bare_fps"] for p in pairs)
    bare_spread = (max(bares) - min(bares)) / statistics.median(bares)
    # A noisy run is told apart by the spread of what should be constant: the bare FPS, and the ratios.
    noisy = max(ratios) - min(ratios) > NOISY_RANGE or bare_spread > NOISY_BARE
    if median_ratio >= args.goal:
        verdict = "meets the goal" + (" (a noisy run: the pairs disagree; rerun to confirm)" if noisy else "")
    elif noisy:
        verdict = "below the goal in a noisy run: the machine's speed moved during the pairs; rerun before concluding"
    else:
        verdict = "the pipeline is slower than the goal (the pairs agree)"
    last = pairs[-1]
    record = {
        "benchmark": "bench_pipeline", "model": args.model or args.arch, "size": str(size), "backend": "onnxruntime",
        "threads": args.threads, "helper_priority": args.helper_priority, "label": args.label, "segment_s": args.seconds, "goal_ratio": args.goal,
        "median_ratio": round(median_ratio, 4), "ratio_range": [min(ratios), max(ratios)],
        "bare_fps_spread": round(bare_spread, 4),
        "median_ratio_to_plain_bare": round(median_to_plain, 4), "awake_bare_gain": round(awake_gain, 4), "noisy": noisy, "verdict": verdict, "pairs": pairs,
        "machine_before": before, "machine_after": describe_machine(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json_atomic(args.out, record)
    print("\n{} pairs of {:.0f} s segments ({})".format(args.pairs, args.seconds, args.label))
    print("pipeline / bare: median {:.3f}, range {:.3f}-{:.3f}; bare FPS spread {:.1%}".format(
        median_ratio, min(ratios), max(ratios), bare_spread))
    print("verdict: {} (goal >= {})".format(verdict, args.goal))
    print("plain bare (cores free to sleep): {:.1%} slower than bare with awake cores; pipeline / plain bare {:.3f}".format(
        1.0 - 1.0 / awake_gain, median_to_plain))
    print("\nwhere the pipeline's time goes (last pair, per frame):")
    print(format_profile(last["profile"], last["process_cpu_ms_per_frame"], last["helper_policy"]))
    print("wrote {}".format(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
