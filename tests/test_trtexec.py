"""trtexec backend: parsers on recorded TensorRT 8.2 / 10.x outputs (tests/data/trtexec, see its README),
the argv we build checked against what each trtexec release accepts, and the runner driven for real
against the stand-in trtexec of ``tests/fakes/trtexec`` -- one per release (8.2.1, 8.4.3, 8.5.2, 8.6.1,
10.3.0, 10.16.0, 11.0.0), whose options, console lines and export formats come from NVIDIA's source
(``tests/fakes/trtexec/facts.py`` cites each) and which runs the model with ONNX Runtime.  trtexec needs
an NVIDIA GPU and cannot run here.
"""

import json
import os

import numpy as np
import pytest
import trtexec_stand_in
from trtexec_stand_in import VERSIONS, facts, invocations

from dfseg.backends import get_runner
from dfseg.backends.tensorrt.trtexec import (
    TrtexecError,
    TrtexecRunner,
    build_command,
    find_trtexec,
    infer_command,
    probe_command,
    run_trtexec,
    time_command,
    trtexec_version,
)
from dfseg.backends.tensorrt.trtexec_output import (
    Binding,
    parse_console,
    parse_output,
    parse_profile,
    parse_times,
    trace_has_warmups,
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
    assert summary.bindings == {"input": Binding(True, (1, 3, 288, 800), None),
                                "output": Binding(False, (1, 201, 18, 4), None)}


def test_console_10_3():
    with open(data("trt10.3_console.log")) as handle:
        summary = parse_console(handle.read())
    assert summary.tensorrt_version == "10.3.0" and summary.passed
    compute = summary.metrics["GPU Compute Time"]
    assert compute.median == pytest.approx(3.14062)
    assert compute.percentiles == {90.0: 3.14587, 95.0: 3.14771, 99.0: 3.15039}
    assert "End-to-End Host Latency" not in summary.metrics
    assert set(summary.metrics) == {"Latency", "Enqueue Time", "H2D Latency", "GPU Compute Time", "D2H Latency"}


@pytest.mark.parametrize("line, expected", [
    ("[I] Created input binding for input with dimensions 1x3x4x4", ("input", True, (1, 3, 4, 4), None)),
    ("[I] Created output binding for out:0 with dimensions 1x19x8x8", ("out:0", False, (1, 19, 8, 8), None)),
    ("[I] Input binding for input with dimensions 1x3x4x4 is created.", ("input", True, (1, 3, 4, 4), None)),
    ("[I] Output binding for output with dimensions 1x4x4 and type int32 is created.",
     ("output", False, (1, 4, 4), "int32")),
    ("Input binding for x with dimensions 2x3 and type fp16 is created.", ("x", True, (2, 3), "fp16")),
])
def test_binding_lines_of_every_release(line, expected):
    """8.2-8.5, 8.6/10.3 and 10.16/11 word the binding line differently (sampleInference.cpp per tag, item 2)."""
    name, is_input, shape, dtype = expected
    assert parse_console("[12/04/2026-18:00:00] " + line + "\n").bindings == {name: Binding(is_input, shape, dtype)}


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
    assert times.format == "8.4+" and times.warmup_queries == 0 and times.end_to_end_ms is None
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
def test_build_command_per_version(tmp_path):
    config = BuildConfig(precision="fp16", workspace_mb=512)
    cache = "engines/t.cache"
    v10 = build_command("trtexec", "m.onnx", "m.engine", config, (10, 3), cache)
    old = build_command("trtexec", "m.onnx", "m.engine", config, (8, 2), cache)
    v11 = build_command("trtexec", "m.onnx", "m.engine", config, (11, 4), cache)
    assert "--memPoolSize=workspace:512" in v10 and "--workspace=512" in old
    for argv in (v10, old, v11):
        assert argv[:3] == ["trtexec", "--onnx=m.onnx", "--saveEngine=m.engine"]
        assert "--timingCacheFile=engines/t.cache" in argv
    assert "--buildOnly" in old and "--skipInference" not in old  # 8.2-8.5 know only --buildOnly
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
    images = tmp_path / "images"
    images.mkdir()
    import cv2

    # A decodable image: the build configuration checks that calibration could read it.
    cv2.imwrite(str(images / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(UserError, match="calibration cache"):
        build_command("trtexec", "m.onnx", "m.engine", config._replace(precision="int8", calibration_cache=None,
                                                                         calibration=str(images)), (8, 2))
    with pytest.raises(UserError, match="no images"):
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


def release(version):
    """(major, minor) of a stand-in release key such as '8.5.2'."""
    return tuple(int(part) for part in version.split(".")[:2])


def options_of(argv):
    return [arg.partition("=")[0] for arg in argv[1:]]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_command_uses_only_options_the_release_accepts(version):
    """Each argv we build for trtexec ``version`` uses only options its sampleOptions.cpp parses (an unknown
    option fails the whole run); 8.4 and 8.5 know only --buildOnly (issue 24, item 3)."""
    accepted = facts.OPTIONS[version]
    config = BuildConfig(precision="fp16", workspace_mb=512)
    if release(version) >= (10, 0):
        config = config._replace(network_typing="strong")
    commands = [build_command("trtexec", "m.onnx", "m.engine", config, release(version), "t.cache"),
                time_command("trtexec", "m.engine", 500, 30, "t.json", "p.json", release(version)),
                time_command("trtexec", "m.engine", 500, 30, "t.json", None, release(version)),
                probe_command("trtexec", "m.engine"),
                infer_command("trtexec", "m.engine", {"input": "i.bin"}, "o.json")]
    for argv in commands:
        assert set(options_of(argv)) <= accepted, (version, sorted(set(options_of(argv)) - accepted))


def test_timing_states_transfers_and_graphs_on_11():
    """11.0 turns data transfers off and CUDA graphs on by default (v11.0 InferenceOptions::parse): the timing
    command asks for transfers and no graphs, so its latency is H2D + compute + D2H as on 8.x-10.x (item 7)."""
    v11 = time_command("trtexec", "m.engine", 500, 30, "t.json", "p.json", (11, 0))
    assert "--includeDataTransfers" in v11 and "--noCudaGraph" in v11
    assert not {"--useSpinWait", "--separateProfileRun", "--noDataTransfers"} & set(options_of(v11))  # deprecated


# ------------------------------------------------------------------------------------------ stand-in
@pytest.fixture
def trtexec_release(tmp_path, monkeypatch):
    """Installs the stand-in trtexec of a release on PATH; returns (path, log of its invocations)."""
    log = str(tmp_path / "trtexec-calls.jsonl")
    monkeypatch.delenv("TRTEXEC", raising=False)
    for name in ("FAKE_TRTEXEC_COMPUTE_MS", "FAKE_TRTEXEC_H2D_MS", "FAKE_TRTEXEC_D2H_MS"):
        monkeypatch.delenv(name, raising=False)

    def install(version):
        path = trtexec_stand_in.install(str(tmp_path / ("bin-" + version)), version, log)
        monkeypatch.setenv("PATH", os.path.dirname(path) + os.pathsep + os.environ.get("PATH", ""))
        return path, log

    return install


@pytest.fixture
def onnx_file(tmp_path):
    """A real 1x3x4x4 -> 1x3x4x4 convolution (output = 2 x input) that the stand-in runs with ONNX Runtime."""
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


@pytest.mark.parametrize("version", VERSIONS)
def test_runner_activates_builds_infers_and_times_on_every_release(trtexec_release, onnx_file, tmp_path, monkeypatch,
                                                                   version):
    """Activation learns the bindings from each release's own binding lines (item 2: 8.6 and newer print
    another sentence), the build passes each release's build-only option (item 3), and the timed queries
    are the ones trtexec timed, warm-ups dropped where the release exports them (item 7)."""
    trtexec, log = trtexec_release(version)
    monkeypatch.setenv("FAKE_TRTEXEC_COMPUTE_MS", "2.5,3.5,3.0")
    assert find_trtexec() == trtexec
    assert trtexec_version(trtexec)[2] == version
    cache = str(tmp_path / "engines")
    config = BuildConfig(precision="fp16", cache_dir=cache)
    runner = get_runner("trtexec", onnx_file, config=config, device="stand-in GPU")
    with runner:
        assert not runner.cache_hit
        assert runner.input_metadata()["input"].shape == (1, 3, 4, 4)
        assert runner.output_metadata()["output"].shape == (1, 3, 4, 4)
        build = [c for c in invocations(log) if any(a.startswith("--saveEngine") for a in c)][0]
        assert ("--skipInference" if release(version) >= (8, 6) else "--buildOnly") in build
        built_from = [a.partition("=")[2] for a in build if a.startswith("--onnx=")][0]
        if release(version) < (10, 0):  # weak typing: the FP32 graph and the builder flag
            assert "--fp16" in build and built_from == onnx_file
        else:  # strong typing (a flag on 10.x, always on 11): the FP16 graph, read back from the file trtexec got
            assert "--fp16" not in build and ("--stronglyTyped" in build) == (release(version) < (11, 0))
            assert built_from == runner.built_model != onnx_file and graph_precision(built_from) == "fp16"
        feed = {"input": np.arange(48, dtype=np.float32).reshape(1, 3, 4, 4) / 10}
        out = runner.infer(feed)
        np.testing.assert_allclose(out["output"], feed["input"] * 2, rtol=1e-5)
        times, profile = runner.measure(0.05, 9, profile=True)
        console = runner.console
        # trtexec's warm-up ends on a query boundary: one query more or less than asked is its own doing.
        assert len(times.compute_ms) == console.timed_queries >= 8
        assert times.warmup_queries == console.warmup_queries > 0
        assert set(times.compute_ms) <= {2.5, 3.5, 3.0}
        assert float(np.median(times.compute_ms)) == pytest.approx(console.metrics["GPU Compute Time"].median)
        # Data transfers are part of the latency on every release (11.0 only with --includeDataTransfers).
        assert all(latency > compute for latency, compute in zip(times.latency_ms, times.compute_ms))
        assert profile is not None and profile.iterations > 0
    assert sum(any(a.startswith("--saveEngine") for a in c) for c in invocations(log)) == 1
    again = TrtexecRunner(onnx_file, config=config, device="stand-in GPU")
    with again:
        assert again.cache_hit
    assert sum(any(a.startswith("--saveEngine") for a in c) for c in invocations(log)) == 1


@pytest.mark.parametrize("version", ["8.4.3", "8.5.2"])
def test_warmups_in_the_trace_depend_on_the_release(trtexec_release, onnx_file, tmp_path, version):
    """8.4 exports warm-up queries without 8.2's endToEndMs, 8.5 does not export them: the fields cannot tell
    the two apart, the release can (item 7)."""
    trtexec, _ = trtexec_release(version)
    engine, times = str(tmp_path / "m.engine"), str(tmp_path / "times.json")
    run_trtexec(build_command(trtexec, onnx_file, engine, BuildConfig(), release(version)))
    console = parse_console(run_trtexec(time_command(trtexec, engine, 20, 5, times, None, release(version))))
    with open(times) as handle:
        exported = json.load(handle)
    assert "endToEndMs" not in exported[0]
    assert len(exported) == console.timed_queries + (console.warmup_queries if version == "8.4.3" else 0)
    parsed = parse_times(times, warmup_ms=20, has_warmups=trace_has_warmups(release(version)))
    assert len(parsed.compute_ms) == console.timed_queries


def test_unknown_option_fails_like_trtexec(trtexec_release, onnx_file, tmp_path):
    """8.5 has no --skipInference: trtexec names the option, prints FAILED and exits 1 (trtexec.cpp main)."""
    trtexec, _ = trtexec_release("8.5.2")
    with pytest.raises(TrtexecError, match="Unknown option: --skipInference"):
        run_trtexec([trtexec, "--onnx=" + onnx_file, "--saveEngine=" + str(tmp_path / "m.engine"), "--skipInference"])


def test_failure_surfaces_trtexec_output(trtexec_release, tmp_path):
    trtexec, _ = trtexec_release("10.3.0")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(TrtexecError, match="Failed to parse onnx file"):
        run_trtexec([trtexec, "--onnx=" + str(broken)])
    with pytest.raises(TrtexecError, match="cannot run"):
        run_trtexec([str(tmp_path / "no-such-trtexec")])


def test_engine_of_another_release_is_refused(trtexec_release, onnx_file, tmp_path):
    old, _ = trtexec_release("8.6.1")
    new, _ = trtexec_release("10.3.0")
    engine = str(tmp_path / "m.engine")
    run_trtexec(build_command(old, onnx_file, engine, BuildConfig(), (8, 6)))
    with pytest.raises(TrtexecError, match="not compatible"):
        run_trtexec(probe_command(new, engine))


def test_output_types_from_typed_binding_lines(trtexec_release, tmp_path):
    """10.16 and 11 print each tensor's type: an argmax class map is an integer tensor, not float32 (item 6)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ArgMax", ["input"], ["classes"], axis=1, keepdims=0, name="/argmax")], "classmap",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 2, 2])],
        [helper.make_tensor_value_info("classes", TensorProto.INT64, [1, 2, 2])])
    path = str(tmp_path / "classmap.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    trtexec_release("11.0.0")
    with TrtexecRunner(path, config=BuildConfig(cache_dir=str(tmp_path / "engines")), device="stand-in GPU") as runner:
        assert runner.output_metadata()["classes"].dtype == np.int64
        feed = {"input": np.array([0, 5, 1, 1, 9, 0, 0, 2, 0, 9, 3, 9], dtype=np.float32).reshape(1, 3, 2, 2)}
        out = runner.infer(feed)
    assert out["classes"].dtype == np.int64
    np.testing.assert_array_equal(out["classes"], [[[1, 2], [2, 2]]])


def test_fake_option_table_matches_nvidia_source():
    """The stand-in's option table is what derive.py reads from NVIDIA's source (where the mirror exists)."""
    derive = pytest.importorskip("derive")
    if not os.path.isdir(derive.MIRROR):
        pytest.skip("no mirror of NVIDIA/TensorRT here")
    assert derive.derive() == {version: sorted(names) for version, names in facts.OPTIONS.items()}


def test_missing_binary_and_model_are_user_errors(tmp_path, monkeypatch, onnx_file):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("TRTEXEC", raising=False)
    if any(os.path.exists(p) for p in ("/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec")):
        pytest.skip("a real trtexec is installed here")
    with pytest.raises(UserError, match="trtexec not found"):
        find_trtexec()
    with pytest.raises(UserError, match="model file not found"):
        TrtexecRunner(str(tmp_path / "absent.onnx"))
