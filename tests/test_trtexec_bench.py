"""trtexec as a dfseg-bench backend, against the stand-in trtexec of each release (``tests/fakes/trtexec``):
one trtexec process per subject per round (its own timing loop), figures equal to the per-query times the
stand-in reports, and the commands that run frames refusing trtexec with one line (issue 24, items 5, 6).
Nothing here times anything: the stand-in's times are simulated and fixed by FAKE_TRTEXEC_COMPUTE_MS."""

import json
import os

import numpy as np
import pytest
import trtexec_stand_in
from trtexec_stand_in import invocations

from dfseg.bench.protocol import COMPUTE, E2E, Protocol
from dfseg.bench.subjects import measure_models
from dfseg.build_config import BuildConfig

COMPUTE_MS = [2.5, 3.5, 3.0, 3.0]
H2D_MS, D2H_MS = 0.25, 0.05
RELEASES = ["8.2.1", "8.5.2", "8.6.1", "10.3.0", "11.0.0"]


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    log = str(tmp_path / "trtexec-calls.jsonl")
    monkeypatch.delenv("TRTEXEC", raising=False)
    monkeypatch.setenv("FAKE_TRTEXEC_COMPUTE_MS", ",".join(str(v) for v in COMPUTE_MS))
    monkeypatch.setenv("FAKE_TRTEXEC_H2D_MS", str(H2D_MS))
    monkeypatch.setenv("FAKE_TRTEXEC_D2H_MS", str(D2H_MS))

    def install(version):
        path = trtexec_stand_in.install(str(tmp_path / "bin"), version, log)
        monkeypatch.setenv("PATH", os.path.dirname(path) + os.pathsep + os.environ.get("PATH", ""))
        return log

    return install


def conv_model(path, channels):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((channels, 3, 3, 3), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["output"], pads=[1, 1, 1, 1], name="/conv/Conv")], "conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, channels, 8, 8])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return str(path)


def timing_runs(log):
    return [argv for argv in invocations(log) if any(a.startswith("--exportTimes=") for a in argv)]


@pytest.mark.parametrize("version", RELEASES)
def test_trtexec_subjects_time_a_round_per_process(stand_in, tmp_path, version):
    log = stand_in(version)
    models = [("a", conv_model(tmp_path / "a.onnx", 4)), ("b", conv_model(tmp_path / "b.onnx", 8))]
    reference = conv_model(tmp_path / "reference.onnx", 2)
    protocol = Protocol(warmup_s=0.02, round_warmup_s=0.0, rounds=3, runs_per_round=6, max_remeasures=0)
    results = measure_models(models, protocol, backend="trtexec", reference=reference,
                             config=BuildConfig(cache_dir=str(tmp_path / "engines")))
    # Per round: one timing process per subject, and the reference before the first subject and after each.
    runs = timing_runs(log)
    assert len(runs) == protocol.rounds * (len(models) + len(models) + 1)
    assert all("--warmUp=20" in argv and "--iterations=6" in argv for argv in runs)
    # Start-up processes: the version banner, the build and the binding probe of each of the three models.
    assert len(invocations(log)) - len(runs) <= 3 * 3
    for name, _ in models:
        measurement = results[name]
        compute, e2e = measurement.modes[COMPUTE], measurement.modes[E2E]
        assert compute.rounds == e2e.rounds == protocol.rounds
        # Every figure is one the stand-in reported: its compute times, and compute + transfers as latency.
        assert compute.min_ms in COMPUTE_MS and compute.p99_ms in COMPUTE_MS
        assert all(median in (2.5, 3.0, 3.25, 3.5, 2.75) for median in compute.round_medians_ms)
        assert e2e.median_ms == pytest.approx(compute.median_ms + H2D_MS + D2H_MS)
        assert compute.count >= protocol.rounds * (protocol.runs_per_round - 1)
        assert measurement.warmup_runs > 0


def test_trtexec_round_figures_are_the_stand_ins(stand_in, tmp_path, monkeypatch):
    """With one compute time per query, the medians are exactly that time (and latency adds the transfers)."""
    monkeypatch.setenv("FAKE_TRTEXEC_COMPUTE_MS", "3.0")
    stand_in("10.3.0")
    protocol = Protocol(warmup_s=0.01, round_warmup_s=0.0, rounds=2, runs_per_round=4, max_remeasures=0)
    result = measure_models([("a", conv_model(tmp_path / "a.onnx", 4))], protocol, backend="trtexec",
                            config=BuildConfig(cache_dir=str(tmp_path / "engines")))["a"]
    assert result.modes[COMPUTE].median_ms == 3.0 and result.modes[COMPUTE].round_medians_ms == [3.0, 3.0]
    assert result.modes[E2E].median_ms == pytest.approx(3.0 + H2D_MS + D2H_MS)


@pytest.mark.parametrize("version", RELEASES)
def test_dfseg_bench_with_trtexec(stand_in, tmp_path, monkeypatch, version):
    """dfseg-bench --backend trtexec end to end: records the stand-in's figures and its release."""
    pytest.importorskip("torch")
    from dfseg.cli.bench import main

    monkeypatch.setenv("FAKE_TRTEXEC_COMPUTE_MS", "3.0")
    log = stand_in(version)
    out = str(tmp_path / "b.json")
    argv = ["--backend", "trtexec", "--models", "64x1_64x1_64x1-wc19.19.19", "--sizes", "64x64", "--json", out,
            "--work-dir", str(tmp_path / "onnx"), "--engine-cache", str(tmp_path / "engines"), "--rounds", "2",
            "--runs-per-round", "3", "--warmup", "0.01", "--no-progress"]
    assert main(argv) == 0
    with open(out) as handle:
        data = json.load(handle)
    record = data["records"][0]
    assert record["backend"] == "trtexec" and record["compute_median_ms"] == 3.0
    assert record["median_ms"] == pytest.approx(3.0 + H2D_MS + D2H_MS)
    assert data["environment"]["backend_version"] == version
    # two rounds of (model, reference before, reference after), plus start-up: a handful, not one per query
    assert len(timing_runs(log)) == 2 * 3 and len(invocations(log)) <= 2 * 3 + 2 * 3 + 1


@pytest.mark.parametrize("command", ["run", "eval"])
def test_frame_commands_refuse_trtexec_in_one_line(command, tmp_path, capsys):
    if command == "run":
        from dfseg.cli.run import main

        argv = [str(tmp_path / "clip.mp4"), "none", "--model", str(tmp_path / "m.onnx"), "--backend", "trtexec"]
    else:
        from dfseg.cli.eval import main

        argv = ["--data", str(tmp_path), "--model", str(tmp_path / "m.onnx"), "--backend", "trtexec"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("dfseg-{}: error: --backend trtexec".format(command))
    assert "--backend tensorrt" in err and "onnxruntime" in err
