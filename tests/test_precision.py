"""FP16 and INT8 as graphs, and one BuildConfig from every command to its artefact.

Every check reads the precision back from the file that was built and run (its ONNX tensor types and
Q/DQ nodes), never from the request.  The graphs run in real ONNX Runtime CPU sessions."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxconverter_common")

from dfseg.backends import get_runner  # noqa: E402
from dfseg.build_config import BuildConfig  # noqa: E402
from dfseg.errors import UserError  # noqa: E402
from dfseg.precision import (  # noqa: E402
    class_map_agreement,
    derive_graph,
    graph_for,
    graph_precision,
    stored_config,
    stored_target,
)

ARCH = "64x1_64x1_64x1-wc19.19.19"
WIDTH, HEIGHT = 96, 64


def _run(module, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", module] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory):
    import torch

    from dfseg.export import export_onnx
    from dfseg.models import create_model
    from dfseg.models.layers import randomize_batchnorm

    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("precision") / "tiny.onnx")
    export_onnx(randomize_batchnorm(create_model(ARCH), seed=1), "{}x{}".format(WIDTH, HEIGHT), path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of real PNG images: smooth gradients with blocks, so activations have a real range."""
    folder = tmp_path_factory.mktemp("calibration")
    rng = np.random.RandomState(3)
    for index in range(12):
        base = np.linspace(0, 255, WIDTH, dtype=np.float32)[None, :, None] * rng.uniform(0.3, 1.0, 3)
        image = np.repeat(base, HEIGHT, axis=0)
        x, y = rng.randint(0, WIDTH - 20), rng.randint(0, HEIGHT - 20)
        image[y:y + 20, x:x + 20] = rng.uniform(0, 255, 3)
        image += rng.normal(0, 8, image.shape)
        assert cv2.imwrite(str(folder / "img{:02d}.png".format(index)), np.clip(image, 0, 255).astype(np.uint8))
    return str(folder)


def _logits(path, x):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _input(seed=0):
    return np.random.RandomState(seed).standard_normal((1, 3, HEIGHT, WIDTH)).astype(np.float32)


def test_config_checks_and_round_trip(images, tmp_path):
    with pytest.raises(UserError, match="precision 'bf16'"):
        BuildConfig(precision="bf16").checked()
    with pytest.raises(UserError, match="int8 needs calibration images"):
        BuildConfig(precision="int8").checked().needs_images(graph_path=True)
    with pytest.raises(UserError, match="--calibration .*not found"):
        BuildConfig(precision="int8", calibration=str(tmp_path / "absent")).checked()
    with pytest.raises(UserError, match="network typing 'loose'"):
        BuildConfig(network_typing="loose").checked()
    config = BuildConfig(precision="int8", calibration=images, calibration_images=5, fp32_layers=("/head/",))
    assert BuildConfig.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(UserError, match="unknown build config field.*colour"):
        BuildConfig.from_dict({"colour": "red"})


def test_fp16_graph_keeps_io_and_named_layers_in_fp32(fp32_model, tmp_path):
    out = str(tmp_path / "fp16.onnx")
    head = [n.name for n in onnx.load(fp32_model).graph.node if n.op_type == "Conv"][-1]
    derive_graph(fp32_model, out, BuildConfig(precision="fp16", fp32_layers=(head,)))
    proto = onnx.load(out)
    onnx.checker.check_model(proto, full_check=True)
    assert graph_precision(out) == "fp16" and graph_precision(fp32_model) == "fp32"
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    kept = [n for n in proto.graph.node if n.name == head][0]
    inits = {i.name: i for i in proto.graph.initializer}
    assert inits[kept.input[1]].data_type == onnx.TensorProto.FLOAT  # the kept layer's weights stay FP32
    halves = [i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert len(halves) >= 6
    assert stored_config(out).precision == "fp16" and stored_config(out).fp32_layers == (head,)
    x = _input()
    agreement = class_map_agreement(_logits(fp32_model, x), _logits(out, x))
    assert agreement >= 0.97, agreement


def test_int8_graph_is_per_channel_qdq_and_symmetric_for_tensorrt(fp32_model, images, tmp_path):
    config = BuildConfig(precision="int8", calibration=images, calibration_images=8)
    trt_graph, ort_graph = str(tmp_path / "trt.onnx"), str(tmp_path / "ort.onnx")
    derive_graph(fp32_model, trt_graph, config, "tensorrt")
    derive_graph(fp32_model, ort_graph, config, "onnxruntime")
    for path in (trt_graph, ort_graph):
        onnx.checker.check_model(onnx.load(path), full_check=True)
        assert graph_precision(path) == "int8"
    proto = onnx.load(trt_graph)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    producers = {out: n for n in proto.graph.node for out in n.output}
    weight_dq = [producers[n.input[1]] for n in proto.graph.node if n.op_type == "Conv"]
    assert weight_dq and all(dq.op_type == "DequantizeLinear" for dq in weight_dq)
    assert all(inits[dq.input[1]].size > 1 for dq in weight_dq)  # one scale per output channel
    zero_points = [inits[n.input[2]] for n in proto.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)  # TensorRT: symmetric
    ort_zero = [inits2 for inits2 in onnx.load(ort_graph).graph.initializer if inits2.data_type == onnx.TensorProto.UINT8]
    assert ort_zero  # ONNX Runtime CPU: UINT8 activations
    # TensorRT dequantizes INT8 only: every constant behind a DequantizeLinear is INT8 (no INT32 biases).
    constant_dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert constant_dq and all(inits[n.input[0]].dtype == np.int8 for n in constant_dq)
    assert stored_target(trt_graph) == "tensorrt" and stored_target(ort_graph) == "onnxruntime"
    # running a graph that is already INT8 needs no calibration images
    with get_runner("onnxruntime", ort_graph, config=BuildConfig(precision="int8", cache_dir=str(tmp_path))) as run:
        assert run.built_model == ort_graph
    with pytest.raises(UserError, match="made for onnxruntime, not tensorrt"):
        graph_for(ort_graph, config, "tensorrt")
    x = _input()
    reference = _logits(fp32_model, x)
    for path in (trt_graph, ort_graph):
        quantized = _logits(path, x)
        assert quantized.shape == reference.shape
        assert np.corrcoef(reference.ravel(), quantized.ravel())[0, 1] > 0.9


def test_derived_graphs_refuse_bad_sources(fp32_model, images, tmp_path):
    with pytest.raises(UserError, match="overwrite its FP32 source"):
        derive_graph(fp32_model, fp32_model, BuildConfig(precision="fp16"))
    half = derive_graph(fp32_model, str(tmp_path / "h.onnx"), BuildConfig(precision="fp16"))
    with pytest.raises(UserError, match="already a fp16 graph"):
        derive_graph(half, str(tmp_path / "again.onnx"), BuildConfig(precision="fp16"))
    with pytest.raises(UserError, match="no node named or starting with '/nowhere/'"):
        derive_graph(fp32_model, str(tmp_path / "x.onnx"), BuildConfig(precision="fp16", fp32_layers=("/nowhere/",)))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    with pytest.raises(UserError, match="not a valid ONNX model"):
        graph_precision(str(broken))


def test_runner_runs_and_caches_the_derived_graph(fp32_model, tmp_path):
    config = BuildConfig(precision="fp16", cache_dir=str(tmp_path / "engines"))
    with get_runner("onnxruntime", fp32_model, threads=1, config=config) as runner:
        assert runner.built_model != fp32_model and graph_precision(runner.built_model) == "fp16"
        out = runner.infer({"input": _input()})
        assert next(iter(out.values())).dtype == np.float32
        first = runner.built_model
    mtime = os.path.getmtime(first)
    assert graph_for(fp32_model, config, "onnxruntime") == first and os.path.getmtime(first) == mtime


def test_changed_calibration_images_make_a_new_int8_graph(fp32_model, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(3):
        cv2.imwrite(str(folder / "{}.png".format(index)), np.full((HEIGHT, WIDTH, 3), 40 * index, np.uint8))
    config = BuildConfig(precision="int8", calibration=str(folder), calibration_images=3,
                         cache_dir=str(tmp_path / "engines"))
    first = graph_for(fp32_model, config, "onnxruntime")
    assert graph_for(fp32_model, config, "onnxruntime") == first  # unchanged images: the cached graph
    cv2.imwrite(str(folder / "1.png"), np.full((HEIGHT, WIDTH, 3), 250, np.uint8))
    os.utime(str(folder / "1.png"), ns=(1, 1))  # a replaced image, whatever the clock's resolution
    second = graph_for(fp32_model, config, "onnxruntime")
    assert second != first and graph_precision(second) == "int8"


def test_a_reduced_graph_is_not_run_under_another_name(fp32_model, tmp_path):
    half = derive_graph(fp32_model, str(tmp_path / "half.onnx"), BuildConfig(precision="fp16"))
    with pytest.raises(UserError, match="a fp16 graph, not fp32; pass --precision fp16"):
        with get_runner("onnxruntime", half, config=BuildConfig(cache_dir=str(tmp_path / "e"))):
            pass
    with get_runner("onnxruntime", half, config=BuildConfig(precision="fp16", cache_dir=str(tmp_path / "e"))) as run:
        assert run.built_model == half


def test_export_cli_writes_the_precision_asked_for(images, tmp_path):
    fp16, int8 = tmp_path / "m16.onnx", tmp_path / "m8.onnx"
    done = _run("dfseg.cli.export", ARCH, "--size", "{}x{}".format(WIDTH, HEIGHT), "-o", fp16, "--precision", "fp16")
    assert done.returncode == 0, done.stderr
    assert graph_precision(str(fp16)) == "fp16"
    done = _run("dfseg.cli.export", ARCH, "--size", "{}x{}".format(WIDTH, HEIGHT), "-o", int8, "--precision", "int8",
                "--calibration", images, "--calibration-images", "4")
    assert done.returncode == 0, done.stderr
    assert graph_precision(str(int8)) == "int8" and stored_config(str(int8)).calibration_images == 4
    done = _run("dfseg.cli.export", ARCH, "--size", "64x64", "-o", tmp_path / "x.onnx", "--precision", "int8")
    assert done.returncode == 2 and "int8 needs calibration images" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_bench_cli_measures_the_precision_asked_for(tmp_path):
    out = tmp_path / "b.json"
    done = _run("dfseg.cli.bench", "--models", ARCH, "--sizes", "{}x{}".format(WIDTH, HEIGHT), "--backend",
                "onnxruntime", "--threads", "1", "--precision", "fp16", "--engine-cache", tmp_path / "engines",
                "--work-dir", tmp_path / "onnx", "--json", out, "--rounds", "2", "--runs-per-round", "1", "--warmup",
                "0", "--no-progress")
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["environment"]["build_config"]["precision"] == "fp16"
    (record,) = data["records"]
    assert record["precision"] == "fp16" and graph_precision(record["artefact"]) == "fp16"


def test_run_and_eval_clis_run_the_precision_asked_for(tmp_path):
    from test_eval import make_cityscapes, random_label_ids
    from test_live_pipeline import tiny_onnx

    root = str(tmp_path / "cityscapes")
    make_cityscapes(root, {("aachen", "aachen_000000_000019"): random_label_ids(10)})
    model = tiny_onnx(str(tmp_path / "tiny.onnx"))
    engines = tmp_path / "engines"
    report = tmp_path / "e.json"
    done = _run("dfseg.cli.eval", "--data", root, "--model", model, "--precision", "fp16", "--engine-cache", engines,
                "--json", report, "--quiet")
    assert done.returncode == 0, done.stderr
    source = json.loads(report.read_text())["source"]
    assert source["build_config"]["precision"] == "fp16" and graph_precision(source["built_model"]) == "fp16"
    done = _run("dfseg.cli.run", "--model", model, os.path.join(root, "leftImg8bit", "val", "aachen"), "none",
                "--precision", "fp16", "--engine-cache", engines)
    assert done.returncode == 0, done.stderr
    built = [line for line in done.stderr.splitlines() if line.startswith("dfseg-run:") and "fp16:" in line][0]
    path = built.rsplit("fp16: ", 1)[1].rstrip(")")
    assert graph_precision(path) == "fp16" and path == source["built_model"]  # the same cached graph


def test_bad_precision_inputs_are_one_line_errors_before_any_work(tmp_path, images):
    not_video = tmp_path / "notes.txt"
    not_video.write_text("x")
    cases = [
        ("dfseg.cli.export", [ARCH, "--size", "64x64", "-o", tmp_path / "a.onnx", "--precision", "int8",
                              "--calibration", not_video], "not a video"),
        ("dfseg.cli.export", [ARCH, "--size", "64x64", "-o", tmp_path / "b.onnx", "--precision", "int8",
                              "--calibration", tmp_path / "absent"], "not found"),
        ("dfseg.cli.bench", ["--table", tmp_path / "t.json", "--precision", "int8", "--calibration", images],
         "feature maps"),
        ("dfseg.cli.bench", ["--models", ARCH, "--precision", "bf16"], "invalid choice"),
        ("dfseg.cli.export", [ARCH, "--size", "64x64", "-o", tmp_path / "c.onnx", "--precision", "fp16",
                              "--fp32-layers", "/nowhere/"], "no node named or starting with '/nowhere/'"),
        ("dfseg.cli.export", [ARCH, "--size", "64x64", "-o", os.path.join(images, "d.onnx"), "--precision", "int8",
                              "--calibration", images], "lies inside the input folder"),
        ("dfseg.cli.export", [ARCH, "--size", "64x64", "-o", tmp_path / "e.onnx", "--fp32-layers", ","],
         "names nothing"),
        ("dfseg.cli.bench", ["--models", ARCH, "--engine-cache", not_video], "not a folder"),
        ("dfseg.cli.bench", ["--models", ARCH, "--calibration-cache", tmp_path, "--precision", "int8",
                             "--calibration", images], "a folder; give a file"),
        ("dfseg.cli.bench", ["--validate-table", not_video, "--timing-cache", not_video], "is the input"),
        ("dfseg.cli.bench", ["--models", ARCH, "--network-typing", "loose"], "invalid choice"),
        ("dfseg.cli.bench", ["--table", tmp_path / "t2.json", "--fp32-layers", "/head/"], "measure tables without it"),
        ("dfseg.cli.export", ["--summary", "--precision", "fp16"], "apply to one exported model"),
    ]
    for module, args, message in cases:
        done = _run(module, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr
    assert not any(p.name.endswith(".onnx") for p in tmp_path.iterdir())  # nothing written for a refused request


NO_ONNX = """
import json, sys
sys.modules['onnx'] = None  # a Jetson's device side: no onnx package
from dfseg.build_config import BuildConfig
from dfseg.errors import UserError
from dfseg.precision import graph_for, graph_precision, stored_target
fp32, fp16, int8, cache = sys.argv[1:5]
out = {"precision": [graph_precision(p) for p in (fp32, fp16, int8)], "target": stored_target(int8),
       "fp16": graph_for(fp16, BuildConfig(precision="fp16", cache_dir=cache), "tensorrt"),
       "int8": graph_for(int8, BuildConfig(precision="int8", cache_dir=cache), "tensorrt")}
try:
    graph_for(fp32, BuildConfig(precision="fp16", cache_dir=cache), "tensorrt")
except UserError as exc:
    out["derive"] = str(exc)
print(json.dumps(out))
"""


def test_a_device_without_onnx_runs_the_graphs_the_host_derived(fp32_model, images, tmp_path):
    """TensorRT >= 10 builds fp16/int8 from the graph; on a device without the onnx package, a graph that
    dfseg-export derived on the host is recognised from its bytes and run as it is, not re-derived."""
    from dfseg.onnx_wire import OnnxSummary

    fp16, int8 = str(tmp_path / "h.onnx"), str(tmp_path / "q.onnx")
    derive_graph(fp32_model, fp16, BuildConfig(precision="fp16"), "tensorrt")
    derive_graph(fp32_model, int8, BuildConfig(precision="int8", calibration=images, calibration_images=4), "tensorrt")
    for path in (fp32_model, fp16, int8):
        proto, summary = onnx.load(path), OnnxSummary(path)
        assert summary.nodes == [(n.name, n.op_type) for n in proto.graph.node]
        assert summary.metadata == {p.key: p.value for p in proto.metadata_props}
        assert summary.initializer_types == [i.data_type for i in proto.graph.initializer]
    done = subprocess.run([sys.executable, "-c", NO_ONNX, fp32_model, fp16, int8, str(tmp_path / "cache")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["precision"] == ["fp32", "fp16", "int8"] and out["target"] == "tensorrt"
    assert out["fp16"] == fp16 and out["int8"] == int8
    assert "onnx package" in out["derive"] and "dfseg-export --precision" in out["derive"]
    assert not os.path.exists(str(tmp_path / "cache" / "graphs"))


def test_a_truncated_onnx_file_is_a_one_line_error(fp32_model, tmp_path):
    from dfseg.onnx_wire import OnnxSummary

    with open(fp32_model, "rb") as handle:
        data = handle.read()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cut.onnx: not a valid ONNX model"):
        OnnxSummary(str(cut))
