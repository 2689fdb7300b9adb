"""The soak benchmark end to end in seconds, so that it cannot rot: real dfseg-run, real reference
process, real /proc and /status.json samples.  Nothing here is timed; only what the run wrote is checked."""

import json
import os
import struct
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from bench_soak import drift_goal, flat_verdict, rss_verdict  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERDICTS = ("met", "missed", "not decided")


@pytest.mark.slow
def test_a_short_soak_samples_the_process_and_writes_json_png_and_a_table(tmp_path):
    out = tmp_path / "soak.json"
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_soak.py"), "--minutes", "0.1",
                           "--warmup-minutes", "0.04", "--sample-seconds", "1.2", "--size", "128x64", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    record = json.loads(out.read_text())
    samples = record["samples"]
    assert len(samples) == 6  # t = 0, 1.2, ... 6 s; the warm-up ends at the third (2.4 s)
    assert [s["t_s"] for s in samples] == sorted(s["t_s"] for s in samples)
    for sample in samples:
        assert sample["rss_kb"] > 0 and sample["threads"] > 1 and sample["fds"] > 0
    assert samples[-1]["frames"] > samples[0]["frames"]  # dfseg-run kept writing frames on its looped input
    assert samples[-1]["reference_inferences"] > samples[0]["reference_inferences"]
    assert len(record["intervals"]) == 5
    goals = record["goals"]
    assert goals["rss"]["at_warmup_kb"] == samples[2]["rss_kb"] and goals["rss"]["last_kb"] == samples[-1]["rss_kb"]
    for key in ("rss", "threads", "fds"):
        assert goals[key]["verdict"] in VERDICTS
    # One interval in each third after the warm-up bounds no drift, whatever the FPS were.
    assert goals["fps_drift"]["intervals_compared"] == 1
    assert goals["fps_drift"]["verdict"].startswith("not decided")
    assert "interrupted" in record["dfseg_run_report"]  # stopped with SIGINT, as Ctrl-C would, and reported
    png = out.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24])[0] > 100
    assert "RSS growth" in proc.stdout and "reference FPS drift" in proc.stdout


def _intervals(pipeline, reference):
    return [{"t_s": 60.0 * (i + 1), "pipeline_fps": p, "reference_fps": r, "ratio": p / r}
            for i, (p, r) in enumerate(zip(pipeline, reference))]


# Small wobbles so that no two intervals are alike, as on a real machine.
WOBBLE = [1.0, 1.01, 0.99, 1.02, 0.98, 1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.01]


def test_a_pipeline_that_slows_with_the_machine_meets_the_drift_goal():
    machine = [w * (1.0 - 0.02 * i) for i, w in enumerate(WOBBLE)]  # the machine slows by a fifth
    drift = drift_goal(_intervals([10.0 * m for m in machine], [12.0 * m for m in machine]))
    assert drift["reference"]["shift"] < -0.1 and drift["pipeline"]["shift"] < -0.1
    assert drift["verdict"] == "met"


def test_a_pipeline_that_slows_on_a_steady_machine_misses_the_drift_goal():
    pipeline = [10.0 * w * (1.0 - 0.03 * i) for i, w in enumerate(WOBBLE)]
    drift = drift_goal(_intervals(pipeline, [12.0 * w for w in reversed(WOBBLE)]))
    assert drift["ratio"]["interval"][1] < -drift["tolerance"]
    assert drift["verdict"] == "missed"


def test_memory_and_count_verdicts_judge_from_the_end_of_the_warm_up():
    assert rss_verdict([100, 101, 103, 102])[2] == "met"
    assert rss_verdict([100, 103, 106, 108])[2] == "missed"
    assert rss_verdict([100, 106, 101])[2] == "not decided"  # a peak that did not last
    assert flat_verdict([12, 12, 12]) == "met"
    assert flat_verdict([12, 12, 13]) == "missed"
    assert flat_verdict([12, 13, 12]) == "not decided"
