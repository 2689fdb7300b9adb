"""Pipeline FPS versus the bare engine's FPS on the same machine, in one run.

The bare engine number is ``runner.infer`` in a loop on one preprocessed frame (what the network
alone can do); the pipeline number is ``dfseg-run``'s threaded pipeline on a video file (every
frame: decode, preprocess, inference, argmax/upsampling, blend + legend + status, JPEG-free
output ``none``).  Goal: pipeline >= 90% of bare.  Writes JSON to benchmarks/results/ and prints a
short table.

    python benchmarks/bench_pipeline.py --model model.onnx            # any ONNX / engine
    python benchmarks/bench_pipeline.py --arch df1-seg --size 640x360   # host: exports first
"""

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def make_video(path: str, width: int, height: int, frames: int) -> str:
    import cv2

    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (width, height))
    rng = np.random.RandomState(0)
    base = cv2.GaussianBlur((rng.rand(height, width, 3) * 255).astype(np.uint8), (0, 0), 8)
    for i in range(frames):
        writer.write(np.roll(base, i * 3, axis=1))
    writer.release()
    return path


def bare_fps(runner, segmenter, frame: np.ndarray, seconds: float) -> float:
    tensor = segmenter.prepare(frame)
    feed = {segmenter.input_name: tensor}
    timing = runner.time_inference(feed, warmup_s=1.0, runs=max(10, int(seconds * 20)))
    return 1000.0 / float(np.median(timing.e2e_ms))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="ONNX file or engine")
    parser.add_argument("--arch", default="df1-seg", help="model to export when --model is not given (host)")
    parser.add_argument("--size", default="640x360", help="network and video size")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--queue-size", type=int, default=2)
    parser.add_argument("--output", default=os.path.join(HERE, "results", "pipeline.json"))
    args = parser.parse_args()

    sys.path.insert(0, os.path.dirname(HERE))
    from dfseg.backends import backend_for, get_runner
    from dfseg.fileio import write_json_atomic
    from dfseg.live.pipeline import Pipeline
    from dfseg.live.render import Renderer
    from dfseg.live.segmenter import Segmenter
    from dfseg.live.sinks import NullSink
    from dfseg.live.sources import open_source
    from dfseg.sizes import parse_size

    size = parse_size(args.size)
    with tempfile.TemporaryDirectory() as scratch:
        model = args.model
        if model is None:
            from dfseg.export import export_onnx

            model = export_onnx(args.arch, size, os.path.join(scratch, "model.onnx"), output="classmap")
        backend = backend_for(args.backend, model)
        video = make_video(os.path.join(scratch, "clip.avi"), size.width, size.height, args.frames)
        with get_runner(backend, model) as runner:
            segmenter = Segmenter(runner, size)
            import cv2

            capture = cv2.VideoCapture(video)
            ok, frame = capture.read()
            capture.release()
            engine = bare_fps(runner, segmenter, frame, seconds=3.0)
            start = time.perf_counter()
            result = Pipeline(open_source(video), segmenter, Renderer(), [NullSink()], args.queue_size).run()
            wall = time.perf_counter() - start
            engine_after = bare_fps(runner, segmenter, frame, seconds=3.0)  # drift check
    bare = (engine + engine_after) / 2.0
    record = {
        "model": args.model or args.arch,
        "size": str(size),
        "backend": backend,
        "machine": platform.node(),
        "processor": platform.processor() or platform.machine(),
        "frames": result.frames_written,
        "bare_engine_fps": round(bare, 2),
        "bare_engine_fps_before_after": [round(engine, 2), round(engine_after, 2)],
        "pipeline_fps": round(result.pipeline_fps, 2),
        "pipeline_network_fps": None if result.network_fps is None else round(result.network_fps, 2),
        "ratio": round(result.pipeline_fps / bare, 3),
        "goal_ratio": 0.9,
        "wall_s": round(wall, 2),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json_atomic(args.output, record)
    print("{:<24}{:>10}".format("measure", "FPS"))
    print("{:<24}{:>10.1f}".format("bare engine", bare))
    print("{:<24}{:>10.1f}".format("pipeline (all stages)", result.pipeline_fps))
    print("{:<24}{:>10.3f}  (goal >= 0.9)".format("ratio", record["ratio"]))
    print("wrote {}".format(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
