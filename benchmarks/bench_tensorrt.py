"""DF1-Seg at 2048x1024 with TensorRT FP16, next to the paper's 106.1 FPS on a GTX 1080Ti (Table 4).

Writes benchmarks/results/tensorrt_df1-seg_2048x1024.json (GPU, driver, TensorRT version, timings)
and prints a short table.  Needs an NVIDIA GPU with ``pip install tensorrt pycuda`` (or cuda-python);
without TensorRT it says so and exits 0.

    python benchmarks/bench_tensorrt.py [--precision fp16] [--runs 300]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

PAPER_FPS = 106.1  # DF1-Seg, 1024x2048 input, TensorRT, GTX 1080Ti (paper, Table 4)


def driver_version():
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    done = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], stdout=subprocess.PIPE,
                          text=True)
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="fp16", choices=("fp32", "fp16"))
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--engines", default="engines")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args(argv)
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        print("bench_tensorrt: TensorRT is not installed here (pip install tensorrt pycuda on a GPU machine); "
              "nothing measured")
        return 0
    from dfseg.backends.tensorrt.runner import TensorRTRunner
    from dfseg.bench.protocol import median
    from dfseg.build_config import BuildConfig
    from dfseg.export import export_onnx
    from dfseg.fileio import write_json_atomic

    with tempfile.TemporaryDirectory() as work:
        onnx = export_onnx("df1-seg", "2048x1024", os.path.join(work, "df1-seg-2048x1024.onnx"))
        with TensorRTRunner(onnx, config=BuildConfig(precision=args.precision, cache_dir=args.engines)) as runner:
            feed = runner.make_feed()
            timing = runner.time_inference(feed, warmup_s=args.warmup_s, runs=args.runs)
            gpu = runner.memory.device_name()
            cuda_library = runner.memory.library
            cache_hit = runner.cache_hit
    e2e, compute = median(timing.e2e_ms), median(timing.compute_ms or [float("nan")])
    result = {
        "benchmark": "tensorrt_df1-seg_2048x1024",
        "model": "df1-seg", "input": "2048x1024", "precision": args.precision, "batch": 1,
        "gpu": gpu, "driver": driver_version(), "tensorrt": tensorrt.__version__, "cuda_library": cuda_library,
        "engine_cache_hit": cache_hit, "runs": args.runs, "warmup_runs": timing.warmup_runs,
        "median_e2e_ms": e2e, "median_compute_ms": compute,
        "fps_e2e": 1000.0 / e2e, "fps_compute": 1000.0 / compute,
        "paper": {"fps": PAPER_FPS, "gpu": "GTX 1080Ti", "source": "Partial Order Pruning, CVPR 2019, Table 4"},
        "e2e_ms": timing.e2e_ms, "compute_ms": timing.compute_ms,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": sys.version.split()[0],
    }
    path = os.path.join(args.out, "tensorrt_df1-seg_2048x1024_{}.json".format(args.precision))
    write_json_atomic(path, result)
    print("{:<28} {:>10} {:>12} {:>8}".format("setup", "median ms", "FPS", "vs paper"))
    print("{:<28} {:>10.2f} {:>12.1f} {:>7.2f}x".format(gpu[:28] + " e2e", e2e, 1000 / e2e, 1000 / e2e / PAPER_FPS))
    print("{:<28} {:>10.2f} {:>12.1f} {:>7.2f}x".format("  compute only", compute, 1000 / compute,
                                                      1000 / compute / PAPER_FPS))
    print("{:<28} {:>10.2f} {:>12.1f} {:>8}".format("paper, GTX 1080Ti", 1000 / PAPER_FPS, PAPER_FPS, "1.00x"))
    print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
