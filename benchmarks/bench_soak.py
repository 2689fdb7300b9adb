"""Soak: ``dfseg-run`` on a looping clip for a long time, its memory, threads, descriptors and FPS sampled.

``dfseg-run`` (DF1-Seg at 640x360, ONNX Runtime CPU, ``--threads 1``) plays a generated street clip in a
loop (``--input-loop -1``) to an ``http://127.0.0.1`` output, the headless deployment: every frame is
decoded, segmented, coloured, blended, JPEG-encoded and published.  Beside it, at the same time, a bare
reference process runs ``runner.infer`` of the same model on one preprocessed frame with its own thread
budget (``--reference-threads 1``), so both see the same machine: the reference's FPS is the machine's
own drift (other work on shared cores, clocks), the pipeline's FPS relative to it is the pipeline's.

Every ``--sample-seconds`` (default 60) the benchmark reads ``/proc/PID`` of ``dfseg-run`` (RSS, PSS,
threads, open descriptors, CPU time) and then its ``/status.json`` (frames written); the reference counts
its inferences in shared memory.  FPS per sample = frames in the interval / its length.

Goals, decided on the samples after ``--warmup-minutes`` (default 5):

* RSS grows by less than 5% from the end of the warm-up: met when no later sample is 5% above it, missed
  when the last one is, not decided when only a peak between was.
* Threads and open descriptors stay flat: met when every sample after the warm-up equals the warm-up's
  value, missed when the last one is higher, not decided otherwise.
* FPS drifts by less than the machine's own drift: the later third of the intervals after the warm-up
  against the earlier third, as the Hodges-Lehmann shift of the log FPS with its distribution-free 95%
  interval (Mann-Whitney order statistics), for the pipeline, the reference and the pipeline/reference
  ratio per interval (the pipeline's drift beyond the machine's).  Met when the ratio's interval lies
  within +-tolerance, missed when wholly outside it, else not decided; tolerance = the larger of the
  reference's own drift and the reference's median interval-to-interval change (the noise seen).

Writes results/soak.json and results/soak.png (the curves) and prints a short table.

    flock /tmp/bench.lock python benchmarks/bench_soak.py [--minutes 30] [--warmup-minutes 5] [--sample-seconds 60]
"""

import argparse
import math
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
RSS_GROWTH_GOAL = 0.05
CONFIDENCE = 0.95
Z_95 = 1.959964
STARTUP_S = 300.0  # how long dfseg-run may take to load the model and write its first frame


def proc_sample(pid: int) -> Dict[str, Any]:
    """RSS, PSS (kB), threads, open descriptors and CPU seconds of process ``pid``, from /proc."""
    fields: Dict[str, str] = {}
    with open("/proc/{}/status".format(pid)) as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    pss: Optional[int] = None
    try:
        with open("/proc/{}/smaps_rollup".format(pid)) as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
    except OSError:
        pass  # kernels before 4.14 have no smaps_rollup
    with open("/proc/{}/stat".format(pid)) as stat:
        ticks = stat.read().rpartition(")")[2].split()
    clock = os.sysconf("SC_CLK_TCK")
    return {
        "rss_kb": int(fields["VmRSS"].split()[0]),
        "pss_kb": pss,
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir("/proc/{}/fd".format(pid))),
        "cpu_s": (int(ticks[11]) + int(ticks[12])) / clock,  # utime + stime
    }


def fetch_status(port: int) -> Dict[str, Any]:
    import json

    with urllib.request.urlopen("http://127.0.0.1:{}/status.json".format(port), timeout=30) as response:
        return json.loads(response.read().decode("utf-8"))


def reference_loop(model: str, video: str, size_text: str, threads: int, counter: Any, ready: Any) -> None:
    """The bare reference (a process of its own): ``runner.infer`` on one preprocessed frame, forever,
    counting inferences in ``counter``."""
    import cv2

    from dfseg.backends import get_runner
    from dfseg.live.segmenter import Segmenter
    from dfseg.sizes import parse_size

    capture = cv2.VideoCapture(video)
    _, frame = capture.read()
    capture.release()
    with get_runner("onnxruntime", model, threads=threads) as runner:
        segmenter = Segmenter(runner, parse_size(size_text))
        feed = {segmenter.input_name: segmenter.prepare(frame)}
        runner.infer(feed, check_inputs=False)
        ready.set()
        while True:
            runner.infer(feed, check_inputs=False)
            counter.value += 1


def wait_for_port(log_path: str, process: subprocess.Popen) -> int:
    """The port dfseg-run's HTTP output listens on, from its "streaming on http://..." line."""
    import re

    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("dfseg-run ended (exit {}) before streaming:\n{}".format(process.returncode, tail(log_path)))
        with open(log_path, errors="replace") as log:
            match = re.search(r"streaming on http://127\.0\.0\.1:(\d+)", log.read())
        if match:
            return int(match.group(1))
        time.sleep(0.2)
    raise RuntimeError("dfseg-run did not start streaming within {:.0f} s:\n{}".format(STARTUP_S, tail(log_path)))


def wait_for_frames(port: int, process: subprocess.Popen, log_path: str) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("dfseg-run ended (exit {}):\n{}".format(process.returncode, tail(log_path)))
        if fetch_status(port).get("frames", 0) > 0:
            return
        time.sleep(0.2)
    raise RuntimeError("dfseg-run wrote no frame within {:.0f} s".format(STARTUP_S))


def tail(path: str, lines: int = 30) -> str:
    with open(path, errors="replace") as log:
        return "".join(log.readlines()[-lines:])


def hodges_lehmann(before: List[float], after: List[float]) -> Optional[Dict[str, Any]]:
    """The relative shift from ``before`` to ``after`` (positive values): the Hodges-Lehmann estimate of
    the shift of their logs with its distribution-free 95% interval (Mann-Whitney order statistics,
    normal approximation), as ratios - 1.  None with too few values to bound it."""
    differences = sorted(math.log(b) - math.log(a) for a in before for b in after)
    n1, n2 = len(before), len(after)
    total = n1 * n2
    if not total:
        return None
    rank = int(math.floor(total / 2.0 - Z_95 * math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12.0)))
    estimate = math.expm1(statistics.median(differences))
    if rank < 1:
        return {"shift": round(estimate, 4), "interval": None, "n": [n1, n2]}
    return {"shift": round(estimate, 4),
            "interval": [round(math.expm1(differences[rank - 1]), 4), round(math.expm1(differences[total - rank]), 4)],
            "n": [n1, n2]}


def flat_verdict(values: List[int]) -> str:
    """``values``: the warm-up's last sample, then every later one."""
    if len(set(values)) == 1:
        return "met"
    if values[-1] > values[0]:
        return "missed"
    return "not decided"


def rss_verdict(values: List[int]) -> Tuple[float, float, str]:
    base = values[0]
    last_growth = values[-1] / base - 1.0
    peak_growth = max(values) / base - 1.0
    if peak_growth < RSS_GROWTH_GOAL:
        verdict = "met"
    elif last_growth >= RSS_GROWTH_GOAL:
        verdict = "missed"
    else:
        verdict = "not decided"
    return last_growth, peak_growth, verdict


def drift_goal(intervals: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Pipeline, reference and pipeline/reference drift from the earlier to the later third of the
    intervals after the warm-up, and the verdict (see the module's docstring)."""
    third = len(intervals) // 3
    first, last = intervals[:third], intervals[len(intervals) - third:]

    def series(key: str, rows: List[Dict[str, Any]]) -> List[float]:
        return [r[key] for r in rows]

    out: Dict[str, Any] = {"intervals_compared": third}
    if third < 1 or any(r["pipeline_fps"] <= 0 or r["reference_fps"] <= 0 for r in intervals):
        out["verdict"] = "not decided: too few intervals after the warm-up"
        return out
    for key in ("pipeline_fps", "reference_fps", "ratio"):
        out[key.replace("_fps", "")] = hodges_lehmann(series(key, first), series(key, last))
    references = [r["reference_fps"] for r in intervals]
    noise = statistics.median(abs(math.log(b / a)) for a, b in zip(references, references[1:])) if len(references) > 1 else 0.0
    machine = abs(out["reference"]["shift"])
    tolerance = max(machine, math.expm1(noise))
    out["reference_noise"] = round(math.expm1(noise), 4)
    out["tolerance"] = round(tolerance, 4)
    interval = out["ratio"]["interval"]
    if interval is None:
        out["verdict"] = "not decided: too few intervals after the warm-up to bound the drift"
    elif -tolerance <= interval[0] and interval[1] <= tolerance:
        out["verdict"] = "met"
    elif interval[1] < -tolerance or interval[0] > tolerance:
        out["verdict"] = "missed"
    else:
        out["verdict"] = "not decided: the interval straddles the tolerance"
    return out


def plot(record: Dict[str, Any], path: str) -> None:
    from dfseg.plots import pyplot, save_png

    plt = pyplot()
    samples, intervals = record["samples"], record["intervals"]
    warm = record["warmup_minutes"]
    minutes = [s["t_s"] / 60.0 for s in samples]
    figure, axes = plt.subplots(4, 1, figsize=(8, 11), sharex=True)
    axes[0].plot(minutes, [s["rss_kb"] / 1024.0 for s in samples], marker=".", label="RSS")
    if all(s["pss_kb"] is not None for s in samples):
        axes[0].plot(minutes, [s["pss_kb"] / 1024.0 for s in samples], marker=".", label="PSS")
    axes[0].set_ylabel("MB")
    axes[1].plot(minutes, [s["threads"] for s in samples], marker=".", label="threads")
    axes[1].plot(minutes, [s["fds"] for s in samples], marker=".", label="open descriptors")
    axes[1].set_ylabel("count")
    ends = [r["t_s"] / 60.0 for r in intervals]
    axes[2].plot(ends, [r["pipeline_fps"] for r in intervals], marker=".", label="dfseg-run")
    axes[2].plot(ends, [r["reference_fps"] for r in intervals], marker=".", label="bare reference")
    axes[2].set_ylabel("FPS per interval")
    axes[3].plot(ends, [r["ratio"] for r in intervals], marker=".", label="dfseg-run / reference")
    axes[3].set_ylabel("FPS ratio")
    axes[3].set_xlabel("minutes since the first frame")
    for axis in axes:
        axis.axvspan(0, warm, color="0.9", label=None)
        axis.legend(loc="best", fontsize=8)
        axis.grid(alpha=0.3)
    axes[0].set_title("dfseg-run soak ({}; warm-up shaded)".format(record["time"]))
    save_png(figure, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the soak after the first frame (default 30)")
    parser.add_argument("--warmup-minutes", type=float, default=5.0, help="samples before this are not judged (default 5)")
    parser.add_argument("--sample-seconds", type=float, default=60.0, help="one sample every this many seconds (default 60)")
    parser.add_argument("--arch", default="df1-seg")
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--threads", type=int, default=1, help="dfseg-run's intra-op threads (default 1)")
    parser.add_argument("--reference-threads", type=int, default=1, help="the bare reference's intra-op threads (default 1)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "soak.json"),
                        help="JSON result; the PNG goes beside it (default results/soak.json)")
    args = parser.parse_args()
    if args.sample_seconds <= 0 or args.warmup_minutes < 0 or args.minutes <= 0:
        parser.error("--minutes and --sample-seconds must be above 0, --warmup-minutes at least 0")
    samples_n = int(round(args.minutes * 60.0 / args.sample_seconds))
    warm_index = int(round(args.warmup_minutes * 60.0 / args.sample_seconds))
    if samples_n - warm_index < 1:
        parser.error("--minutes must leave at least one sample after --warmup-minutes")
    if args.threads < 1 or args.reference_threads < 1:
        parser.error("--threads and --reference-threads: at least 1")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        parser.error("--out {}: no folder {}".format(args.out, out_dir))
    return run(args, samples_n, warm_index)


def run(args: argparse.Namespace, samples_n: int, warm_index: int) -> int:
    from tqdm import tqdm

    sys.path.insert(0, HERE)
    from bench_pipeline import export_model, make_video

    from dfseg.backends.versions import backend_version
    from dfseg.bench.machine import describe_machine, machine_identity
    from dfseg.fileio import write_json_atomic
    from dfseg.sizes import parse_size

    size = parse_size(args.size)
    before = describe_machine()
    samples: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as work:
        model = export_model(args.arch, size, work)
        video = make_video(os.path.join(work, "street.avi"), size.width, size.height, 240)
        context = multiprocessing.get_context("spawn")
        counter, ready = context.Value("q", 0, lock=False), context.Event()
        reference = context.Process(target=reference_loop, args=(model, video, str(size), args.reference_threads,
                                                                 counter, ready), daemon=True)
        log_path = os.path.join(work, "dfseg-run.log")
        command = [sys.executable, "-m", "dfseg.cli.run", "--model", model, "--threads", str(args.threads),
                   "--input-loop", "-1", "--profile", video, "http://127.0.0.1:0"]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(HERE), os.environ.get("PYTHONPATH")])))
        with open(log_path, "w") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        reference.start()
        try:
            port = wait_for_port(log_path, process)
            wait_for_frames(port, process, log_path)
            if not ready.wait(STARTUP_S):
                raise RuntimeError("the reference process did not start")
            start = time.monotonic()
            progress = tqdm(total=samples_n + 1, desc="soak samples", unit="sample")
            for index in range(samples_n + 1):
                time.sleep(max(0.0, start + index * args.sample_seconds - time.monotonic()))
                if process.poll() is not None:
                    raise RuntimeError("dfseg-run ended (exit {}) during the soak:\n{}".format(process.returncode, tail(log_path)))
                now = time.monotonic()
                sample = proc_sample(process.pid)
                references = counter.value
                status = fetch_status(port)
                sample.update(t_s=round(now - start, 3), frames=status["frames"], dropped=status["dropped"],
                              reference_inferences=references, state=status["state"])
                samples.append(sample)
                progress.update(1)
                progress.set_postfix_str("RSS {:.0f} MB, {} threads, {} fds".format(
                    sample["rss_kb"] / 1024.0, sample["threads"], sample["fds"]))
            progress.close()
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # dfseg-run finishes its frames and prints its report
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if reference.is_alive():
                reference.terminate()
            reference.join()
        report = tail(log_path, 20)
    intervals = []
    for a, b in zip(samples, samples[1:]):
        span = b["t_s"] - a["t_s"]
        pipeline_fps = (b["frames"] - a["frames"]) / span
        reference_fps = (b["reference_inferences"] - a["reference_inferences"]) / span
        intervals.append({"t_s": b["t_s"], "pipeline_fps": round(pipeline_fps, 3), "reference_fps": round(reference_fps, 3),
                          "ratio": round(pipeline_fps / reference_fps, 4) if reference_fps else 0.0})
    judged = samples[warm_index:]
    rss_growth, rss_peak, rss_result = rss_verdict([s["rss_kb"] for s in judged])
    drift = drift_goal(intervals[warm_index:])
    goals = {
        "rss": {"at_warmup_kb": judged[0]["rss_kb"], "last_kb": judged[-1]["rss_kb"], "growth": round(rss_growth, 4),
                "peak_growth": round(rss_peak, 4), "goal": "< {:.0%}".format(RSS_GROWTH_GOAL), "verdict": rss_result},
        "threads": {"values": sorted(set(s["threads"] for s in judged)), "verdict": flat_verdict([s["threads"] for s in judged])},
        "fds": {"values": sorted(set(s["fds"] for s in judged)), "verdict": flat_verdict([s["fds"] for s in judged])},
        "fps_drift": drift,
    }
    base = os.path.splitext(args.out)[0]
    record = {
        "benchmark": "bench_soak", "model": args.arch, "size": str(size), "backend": "onnxruntime",
        "threads": args.threads, "reference_threads": args.reference_threads, "output": "http://127.0.0.1 (JPEG per frame)",
        "minutes": args.minutes, "warmup_minutes": args.warmup_minutes, "sample_seconds": args.sample_seconds,
        "command": " ".join(["python", "benchmarks/bench_soak.py"] + sys.argv[1:]), "goals": goals,
        "samples": samples, "intervals": intervals, "dfseg_run_report": report,
        "commit": commit(),
        "identity": machine_identity("onnxruntime", backend_version("onnxruntime"), args.threads, "fp32"),
        "machine_before": before, "machine_after": describe_machine(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json_atomic(args.out, record)
    plot(record, base + ".png")
    print_table(record)
    print("wrote {} and {}".format(args.out, base + ".png"))
    return 0


def commit() -> Optional[str]:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                              timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def print_table(record: Dict[str, Any]) -> None:
    goals = record["goals"]
    rss, drift = goals["rss"], goals["fps_drift"]

    def shift(item: Optional[Dict[str, Any]]) -> str:
        if not item:
            return "-"
        bounds = "[{:+.1%} to {:+.1%}]".format(*item["interval"]) if item["interval"] else "[unbounded]"
        return "{:+.1%} {}".format(item["shift"], bounds)

    print("\nsoak: {:g} min, judged after {:g} min, a sample every {:g} s".format(
        record["minutes"], record["warmup_minutes"], record["sample_seconds"]))
    print("{:<46} {:<40} {}".format("measure", "result", "verdict"))
    print("{:<46} {:<40} {}".format("RSS growth after warm-up (< 5%)", "{:.0f} -> {:.0f} MB: {:+.1%} (peak {:+.1%})".format(
        rss["at_warmup_kb"] / 1024.0, rss["last_kb"] / 1024.0, rss["growth"], rss["peak_growth"]), rss["verdict"]))
    for key, name in (("threads", "threads"), ("fds", "open descriptors")):
        print("{:<46} {:<40} {}".format(name + " after warm-up (flat)", ", ".join(str(v) for v in goals[key]["values"]),
                                        goals[key]["verdict"]))
    print("{:<46} {:<40}".format("dfseg-run FPS drift", shift(drift.get("pipeline"))))
    print("{:<46} {:<40}".format("reference FPS drift (machine)", shift(drift.get("reference"))))
    tolerance = "(within +-{:.1%})".format(drift["tolerance"]) if "tolerance" in drift else ""
    print("{:<46} {:<40} {}".format("dfseg-run / reference drift " + tolerance, shift(drift.get("ratio")), drift["verdict"]))


if __name__ == "__main__":
    sys.exit(main())
