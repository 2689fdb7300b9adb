"""trtexec backend: parsers on recorded TensorRT 8.2 / 10.x outputs (tests/data/trtexec, see its README)
and the command driver run for real against a stand-in executable.

The stand-in (written below) is a TEST DOUBLE of trtexec's *outputs*: it accepts trtexec's flags,
prints a recorded console log and writes the recorded --exportTimes / --exportProfile files and a
--exportOutput in trtexec's format (output = 2 x input).  trtexec needs an NVIDIA GPU and cannot run
here; what is tested for real is the argv we build, the subprocess handling, the file plumbing and
the parsing.
"""

import os
import stat
import sys
import textwrap

import numpy as np
import pytest

from dfseg.backends import get_runner
from dfseg.backends.tensorrt.trtexec import (
    TrtexecError,
    TrtexecRunner,
    build_command,
    find_trtexec,
    parse_console,
    parse_output,
    parse_profile,
    parse_times,
    run_trtexec,
    time_command,
    version_from_tag,
)
from dfseg.build_config import BuildConfig
from dfseg.errors import UserError
from dfseg.precision import graph_precision

DATA = os.path.join(os.path.dirname(__file__), "data", "trtexec")


def data(name):
    return os.path.join(DATA, name)


# ------------------------------------------------------------------------------------------ parsers
def test_console_8_2():
    with open(data("trt8.2_console.log")) as handle:
        summary = parse_console(handle.read())
    assert summary.tensorrt_version == "8.2.1" and summary.passed
    assert summary.throughput_qps == pytest.approx(11.0613)
    compute = summary.metrics["GPU Compute Time"]
    assert (compute.min, compute.max, compute.mean, compute.median) == (89.0273, 91.2045, 90.1061, 90.0183)
    assert compute.percentiles == {99.0: 91.2045}
    assert summary.metrics["End-to-End Host Latency"].median == pytest.approx(90.3167)
    assert summary.metrics["Latency"].median == pytest.approx(90.3035)
    assert (summary.warmup_queries, summary.timed_queries) == (2, 35)
    assert summary.device == "NVIDIA Tegra X1" and summary.compute_capability == "5.3"
    assert summary.bindings == {"input": (True, (1, 3, 288, 800)), "output": (False, (1, 201, 18, 4))}


def test_console_10_3():
    with open(data("trt10.3_console.log")) as handle:
        summary = parse_console(handle.read())
    assert summary.tensorrt_version == "10.3.0" and summary.passed
    compute = summary.metrics["GPU Compute Time"]
    assert compute.median == pytest.approx(3.14062)
    assert compute.percentiles == {90.0: 3.14587, 95.0: 3.14771, 99.0: 3.15039}
    assert "End-to-End Host Latency" not in summary.metrics
    assert set(summary.metrics) == {"Latency", "Enqueue Time", "H2D Latency", "GPU Compute Time", "D2H Latency"}


def test_version_tags():
    assert version_from_tag("8201") == "8.2.1"
    assert version_from_tag("8601") == "8.6.1"
    assert version_from_tag("100300") == "10.3.0"
    assert version_from_tag("100001") == "10.0.1"


def test_times_8_2_drops_warmup_queries():
    times = parse_times(data("trt8.2_times.json"), warmup_ms=200.0)
    assert times.format == "8.2" and times.warmup_queries == 2
    assert times.compute_ms == pytest.approx([89.03, 90.02, 91.2, 90.11])
    assert times.end_to_end_ms is not None and len(times.end_to_end_ms) == 4
    for latency, h2d, compute, d2h in zip(times.latency_ms, times.h2d_ms, times.compute_ms, times.d2h_ms):
        assert latency == pytest.approx(h2d + compute + d2h, abs=1e-3)


def test_times_10_has_timed_queries_only():
    with open(data("trt10_times.json")) as handle:
        times = parse_times(handle.read(), warmup_ms=1e9)  # the warm-up rule must not apply to 10.x files
    assert times.format == "10" and times.warmup_queries == 0 and times.end_to_end_ms is None
    assert times.compute_ms == pytest.approx([3.1267, 3.1406, 3.1548, 3.1402, 3.1411])
    assert times.enqueue_ms == pytest.approx([0.87] * 5, abs=1e-3)


def test_profile_8_has_no_median():
    profile = parse_profile(data("trt8_profile.json"))
    assert profile.format == "8.2" and profile.iterations == 625 and len(profile.layers) == 10
    assert all(layer.median_ms is None for layer in profile.layers)
    per_layer = profile.per_layer_ms()
    assert per_layer["Conv_0 + PWN(Clip_3)"] == pytest.approx(0.0662771)  # falls back to the mean
    parallel = [name for name in per_layer if " || " in name]
    assert per_layer[parallel[0]] == pytest.approx(1.61478)


def test_profile_10_uses_median():
    profile = parse_profile(data("trt10_profile.json"))
    assert profile.format == "10" and profile.iterations == 41400
    assert profile.per_layer_ms() == {"/conv1/Conv + /act1/Relu": pytest.approx(0.027872)}
    assert profile.per_layer_ms(use_median=False)["/conv1/Conv + /act1/Relu"] == pytest.approx(0.0280382)


def test_bad_json_is_a_user_error(tmp_path):
    broken = tmp_path / "times.json"
    broken.write_text('[\n  { "startEnqMs" : 1')
    with pytest.raises(UserError, match="not valid JSON"):
        parse_times(str(broken))
    with pytest.raises(UserError, match="cannot read"):
        parse_profile(str(tmp_path / "missing.json"))


def test_output_parser():
    text = '[\n  { "name" : "output"\n  , "dimensions" : "1x2x2"\n  , "values" : [ 1, 2, 3, 4 ]\n  }\n]\n'
    out = parse_output(text)
    assert out["output"].shape == (1, 2, 2) and out["output"].dtype == np.float32


# ------------------------------------------------------------------------------------------ argv
def test_build_command_per_version():
    config = BuildConfig(precision="fp16", workspace_mb=512)
    cache = "engines/t.cache"
    v10 = build_command("trtexec", "m.onnx", "m.engine", config, (10, 3), cache)
    old = build_command("trtexec", "m.onnx", "m.engine", config, (8, 2), cache)
    v11 = build_command("trtexec", "m.onnx", "m.engine", config, (11, 4), cache)
    assert "--memPoolSize=workspace:512" in v10 and "--workspace=512" in old
    for argv in (v10, old, v11):
        assert argv[:3] == ["trtexec", "--onnx=m.onnx", "--saveEngine=m.engine"]
        assert "--timingCacheFile=engines/t.cache" in argv
    assert "--buildOnly" in old and "--skipInference" not in old  # 8.2's name for it
    assert "--skipInference" in v10 and "--skipInference" in v11
    # 8.x: weak typing flags; 10.x: the FP16 graph, strongly typed; 11.x: no precision flag exists.
    assert "--fp16" in old and "--stronglyTyped" not in old
    assert "--stronglyTyped" in v10 and "--fp16" not in v10
    assert not [a for a in v11 if a in ("--fp16", "--int8", "--stronglyTyped") or a.startswith(("--calib",
                                                                                                "--precisionC"))]
    weak10 = build_command("trtexec", "m.onnx", "m.engine", config._replace(network_typing="weak"), (10, 3))
    assert "--fp16" in weak10 and "--stronglyTyped" not in weak10
    with pytest.raises(UserError, match="no weak typing"):
        build_command("trtexec", "m.onnx", "m.engine", config._replace(network_typing="weak"), (11, 4))
    pinned = build_command("trtexec", "m.onnx", "m.engine", config._replace(fp32_layers=("/head/conv/Conv",)),
                           (8, 6))
    assert "--layerPrecisions=/head/conv/Conv:fp32" in pinned and "--precisionConstraints=obey" in pinned
    with pytest.raises(UserError, match="8.4"):
        build_command("trtexec", "m.onnx", "m.engine", config._replace(fp32_layers=("x",)), (8, 2))
    with pytest.raises(UserError, match="calibration cache"):
        build_command("trtexec", "m.onnx", "m.engine", config._replace(precision="int8", calibration_cache=None,
                                                                         calibration=DATA), (8, 2))
    int8 = build_command("trtexec", "m.onnx", "m.engine", config._replace(precision="int8", calibration_cache="c"),
                         (8, 2))
    assert "--int8" in int8 and "--calib=c" in int8
    with pytest.raises(UserError, match="trtexec matches exact layer names"):
        build_command("trtexec", "m.onnx", "m.engine", config._replace(fp32_layers=("/head/",)), (8, 6))
    with pytest.raises(UserError, match="12.0 is newer"):
        build_command("trtexec", "m.onnx", "m.engine", config, (12, 0))
    with pytest.raises(UserError, match="implicit calibrator is for 8.x"):
        build_command("trtexec", "m.onnx", "m.engine", config._replace(precision="int8", network_typing="weak",
                                                                         calibration_cache="c"), (10, 3))
    timed = time_command("trtexec", "m.engine", 500, 30, "t.json", "p.json")
    assert "--iterations=30" in timed and "--warmUp=500" in timed and "--separateProfileRun" in timed


# ------------------------------------------------------------------------------------------ stand-in
STAND_IN = textwrap.dedent('''\
    #!{python}
    # Stand-in for trtexec (test double of its outputs): see tests/test_trtexec.py's docstring.
    import json, os, shutil, sys
    import numpy as np
    DATA = {data!r}
    version = os.environ.get("STANDIN_TRT", "10")
    console = os.path.join(DATA, "trt8.2_console.log" if version == "8.2" else "trt10.3_console.log")
    banner = "[TensorRT v8201]" if version == "8.2" else "[TensorRT v100300]"
    args = dict(a[2:].partition("=")[::2] for a in sys.argv[1:])
    with open(os.environ["STANDIN_LOG"], "a") as log:
        log.write(json.dumps(sys.argv[1:]) + "\\n")
    print("&&&& RUNNING TensorRT.trtexec " + banner + " # trtexec " + " ".join(sys.argv[1:]))
    if "help" in args:
        sys.exit(0)
    if os.environ.get("STANDIN_FAIL"):
        print("[E] Error[4]: [network.cpp::validate::2633] Error Code 4: Internal Error")
        print("&&&& FAILED TensorRT.trtexec " + banner)
        sys.exit(1)
    if "saveEngine" in args:
        with open(args["onnx"], "rb") as src, open(args["saveEngine"], "wb") as dst:
            dst.write(b"STAND-IN ENGINE " + src.read())
    if "loadEngine" in args:
        print("[I] Created input binding for input with dimensions 1x3x4x4")
        print("[I] Created output binding for output with dimensions 1x3x4x4")
    if "exportOutput" in args:
        values = np.zeros(48, dtype=np.float32)
        if "loadInputs" in args:
            values = np.fromfile(args["loadInputs"].partition(":")[2], dtype=np.float32)
        with open(args["exportOutput"], "w") as out:
            out.write('[\\n  {{ "name" : "output"\\n  , "dimensions" : "1x3x4x4"\\n  , "values" : [ '
                      + ", ".join("%g" % v for v in values * 2) + " ]\\n  }}\\n]\\n")
    if "exportTimes" in args:
        shutil.copy(os.path.join(DATA, "trt8.2_times.json" if version == "8.2" else "trt10_times.json"),
                    args["exportTimes"])
    if "exportProfile" in args:
        shutil.copy(os.path.join(DATA, "trt8_profile.json" if version == "8.2" else "trt10_profile.json"),
                    args["exportProfile"])
    with open(console) as handle:
        # The recorded run's own binding lines describe its model, not this one: the stand-in's replace them.
        sys.stdout.write("".join(line for line in handle if " binding for " not in line))
''')


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    path = tmp_path / "bin" / "trtexec"
    path.parent.mkdir()
    path.write_text(STAND_IN.format(python=sys.executable, data=DATA))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("STANDIN_LOG", str(log))
    monkeypatch.setenv("PATH", str(path.parent) + os.pathsep + os.environ.get("PATH", ""))
    return str(path), log


@pytest.fixture
def onnx_file(tmp_path):
    """A real 1x3x4x4 -> 1x3x4x4 convolution (the stand-in only copies it; the FP16 graph is derived from it)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1) * 2, "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["output"], name="/head/conv/Conv")], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 4, 4])], [weight])
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return str(path)


def calls(log):
    import json

    with open(str(log)) as handle:
        return [json.loads(line) for line in handle]


@pytest.mark.parametrize("version", ["8.2", "10"])
def test_runner_builds_caches_infers_and_times(stand_in, onnx_file, tmp_path, monkeypatch, version):
    trtexec, log = stand_in
    monkeypatch.setenv("STANDIN_TRT", version)
    assert find_trtexec() == trtexec
    cache = str(tmp_path / "engines")
    runner = get_runner("trtexec", onnx_file, config=BuildConfig(precision="fp16", cache_dir=cache),
                        device="stand-in GPU")
    with runner:
        assert not runner.cache_hit
        assert runner.input_metadata()["input"].shape == (1, 3, 4, 4)
        build = [c for c in calls(log) if any(a.startswith("--saveEngine") for a in c)][0]
        built_from = [a.partition("=")[2] for a in build if a.startswith("--onnx=")][0]
        if version == "8.2":  # weak typing: the FP32 graph and the builder flag
            assert "--fp16" in build and built_from == onnx_file
        else:  # strong typing: the FP16 graph, read back from the file trtexec was given
            assert "--stronglyTyped" in build and "--fp16" not in build
            assert built_from == runner.built_model != onnx_file and graph_precision(built_from) == "fp16"
        assert ("--workspace=1024" if version == "8.2" else "--memPoolSize=workspace:1024") in build
        feed = {"input": np.arange(48, dtype=np.float32).reshape(1, 3, 4, 4)}
        out = runner.infer(feed)
        np.testing.assert_allclose(out["output"], feed["input"] * 2)
        timing = runner.time_inference(feed, warmup_s=0.2, runs=4)
        assert len(timing.e2e_ms) == (4 if version == "8.2" else 5)
        assert timing.compute_ms is not None and len(timing.compute_ms) == len(timing.e2e_ms)
        _, profile = runner.measure(0.2, 4, profile=True)
        assert profile is not None and profile.format == ("8.2" if version == "8.2" else "10")
    with open(runner.engine_path, "rb") as handle:
        assert handle.read().startswith(b"STAND-IN ENGINE")
    again = TrtexecRunner(onnx_file, config=BuildConfig(precision="fp16", cache_dir=cache), device="stand-in GPU")
    with again:
        assert again.cache_hit
    assert sum(any(a.startswith("--saveEngine") for a in c) for c in calls(log)) == 1


def test_failure_surfaces_trtexec_output(stand_in, onnx_file, tmp_path, monkeypatch):
    trtexec, _ = stand_in
    monkeypatch.setenv("STANDIN_FAIL", "1")
    with pytest.raises(TrtexecError, match="Error Code 4"):
        run_trtexec([trtexec, "--onnx=" + onnx_file])
    with pytest.raises(TrtexecError, match="cannot run"):
        run_trtexec([str(tmp_path / "no-such-trtexec")])


def test_missing_binary_and_model_are_user_errors(tmp_path, monkeypatch, onnx_file):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("TRTEXEC", raising=False)
    if any(os.path.exists(p) for p in ("/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec")):
        pytest.skip("a real trtexec is installed here")
    with pytest.raises(UserError, match="trtexec not found"):
        find_trtexec()
    with pytest.raises(UserError, match="model file not found"):
        TrtexecRunner(str(tmp_path / "absent.onnx"))
