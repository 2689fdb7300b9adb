"""Runner interface against real ONNX Runtime sessions and a real torch module, and which backends a
machine offers (real imports in a subprocess, with importable stand-in packages for what is not installed)."""

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dfseg.backends import available_backends, best_backend, get_runner
from dfseg.backends.base import RunnerError
from dfseg.backends.onnxrt import OnnxRuntimeRunner, resolve_providers
from dfseg.errors import UserError

RNG = np.random.RandomState(0)
WEIGHT = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)


def _conv_relu_model(path):
    """input (1,3,8,8) -> 3x3 conv, padding 1 -> ReLU -> output (1,4,8,8)."""
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w"], ["conv"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv"], ["output"]),
        ],
        "conv_relu",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 8, 8])],
        initializer=[numpy_helper.from_array(WEIGHT, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def _reference(x):
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((1, 4, 8, 8), np.float32)
    for i in range(8):
        for j in range(8):
            window = padded[:, :, i:i + 3, j:j + 3]
            out[0, :, i, j] = np.tensordot(WEIGHT, window[0], axes=([1, 2, 3], [0, 1, 2]))
    return np.maximum(out, 0)


@pytest.fixture()
def model_path(tmp_path):
    return _conv_relu_model(tmp_path / "conv.onnx")


def test_onnxruntime_runner_computes_the_model(model_path):
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    with OnnxRuntimeRunner(model_path, threads=1) as runner:
        meta = runner.input_metadata()
        assert meta["input"].shape == (1, 3, 8, 8) and meta["input"].dtype == np.float32
        assert runner.output_names() == ["output"]
        assert "CPUExecutionProvider" in runner.providers
        out = runner.infer({"input": x})
    np.testing.assert_allclose(out["output"], _reference(x), rtol=1e-4, atol=1e-4)
    assert not runner.is_active


def test_runner_accepts_serialized_bytes(model_path):
    with open(model_path, "rb") as handle:
        data = handle.read()
    with OnnxRuntimeRunner(data) as runner:
        feed = runner.make_feed()
        assert runner.infer(feed)["output"].shape == (1, 4, 8, 8)


def test_feed_is_checked_by_name_shape_and_dtype(model_path):
    with OnnxRuntimeRunner(model_path) as runner:
        with pytest.raises(UserError, match="missing \\['input'\\]"):
            runner.infer({"image": np.zeros((1, 3, 8, 8), np.float32)})
        with pytest.raises(UserError, match="input 'input' is float32 \\(1, 3, 4, 4\\), the model wants float32"):
            runner.infer({"input": np.zeros((1, 3, 4, 4), np.float32)})
        with pytest.raises(UserError, match="is float64"):
            runner.infer({"input": np.zeros((1, 3, 8, 8), np.float64)})


def test_lifecycle_errors(model_path):
    runner = OnnxRuntimeRunner(model_path)
    with pytest.raises(RunnerError, match="not active"):
        runner.infer({})
    runner.activate()
    with pytest.raises(RunnerError, match="already active"):
        runner.activate()
    runner.deactivate()
    runner.deactivate()  # idempotent
    assert runner.session is None


def test_time_inference_warms_up_then_times_each_run(model_path):
    ticks = iter(range(10000))

    def fake_clock():
        return next(ticks) * 0.001

    with OnnxRuntimeRunner(model_path) as runner:
        result = runner.time_inference(runner.make_feed(), warmup_s=0.005, runs=7, clock=fake_clock)
    assert len(result.e2e_ms) == 7
    assert result.compute_ms is None  # ONNX Runtime on CPU cannot split compute from copies
    assert result.warmup_runs >= 2
    # One tick per clock read: each timed run spans exactly one tick of the fake clock.
    assert result.e2e_ms == pytest.approx([1.0] * 7)
    with OnnxRuntimeRunner(model_path) as runner, pytest.raises(UserError, match="runs: must be at least 1"):
        runner.time_inference(runner.make_feed(), runs=0)


def test_bad_model_files_give_user_errors(tmp_path):
    with pytest.raises(UserError, match="missing.onnx: ONNX model file not found"):
        OnnxRuntimeRunner(str(tmp_path / "missing.onnx"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    with pytest.raises(UserError, match="junk.onnx: not a valid ONNX model"):
        OnnxRuntimeRunner(str(junk)).activate()


def test_provider_names_resolve_or_explain():
    assert resolve_providers(["cpu"]) == ["CPUExecutionProvider"]
    assert "CPUExecutionProvider" in resolve_providers(None)
    with pytest.raises(UserError, match="provider 'tensorrt' is not installed here"):
        resolve_providers(["tensorrt"])


def test_backend_selection(model_path):
    assert "onnxruntime" in available_backends()
    assert best_backend() == ("tensorrt" if "tensorrt" in available_backends() else "onnxruntime")
    runner = get_runner("onnxruntime", model_path, threads=1)
    assert isinstance(runner, OnnxRuntimeRunner)
    with pytest.raises(UserError, match="unknown backend 'caffe'"):
        get_runner("caffe", model_path)


def test_torch_runner_agrees_with_onnxruntime(model_path):
    torch = pytest.importorskip("torch")
    from dfseg.backends.torch_runner import TorchRunner

    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1, bias=False), torch.nn.ReLU())
    with torch.no_grad():
        module[0].weight.copy_(torch.from_numpy(WEIGHT))
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    with TorchRunner(module, {"input": (1, 3, 8, 8)}, ["output"]) as runner:
        torch_out = runner.infer({"input": x})["output"]
        timing = runner.time_inference({"input": x}, warmup_s=0.0, runs=3)
    with OnnxRuntimeRunner(model_path) as runner:
        ort_out = runner.infer({"input": x})["output"]
    np.testing.assert_allclose(torch_out, ort_out, rtol=1e-4, atol=1e-4)
    assert len(timing.e2e_ms) == 3


# ------------------------------------------------------------------------------------------ discovery
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = ("import json, sys; from dfseg.backends import available_backends, resolve_backend; "
         "auto = resolve_backend('auto', sys.argv[1]); print(json.dumps([available_backends(), auto.backend, auto.note]))")
# Packages that only need to import: discovery asks whether a module imports, never what it does.
PACKAGES = {"tensorrt": ["tensorrt/__init__.py"], "pycuda": ["pycuda/__init__.py", "pycuda/driver.py"],
            "cuda-python": ["cuda/__init__.py", "cuda/bindings/__init__.py", "cuda/bindings/runtime.py"]}


def discover(tmp_path, packages, trtexec=False, model="m.onnx"):
    site = tmp_path / "site"
    for package in packages:
        for relative in PACKAGES[package]:
            (site / relative).parent.mkdir(parents=True, exist_ok=True)
            (site / relative).write_text("")
    env = {"PATH": os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin",
           "PYTHONPATH": str(site) + os.pathsep + REPO, "HOME": str(tmp_path)}
    if trtexec:
        tool = tmp_path / "tools" / "trtexec"  # off PATH: found through $TRTEXEC only
        tool.parent.mkdir(exist_ok=True)
        tool.write_text("#!/bin/sh\nexit 0\n")
        tool.chmod(0o755)
        env["TRTEXEC"] = str(tool)
    done = subprocess.run([sys.executable, "-c", PROBE, model], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_tensorrt_needs_cuda_bindings_and_trtexec_comes_from_the_environment(tmp_path):
    """tensorrt is offered only where tensorrt and pycuda or cuda-python import; $TRTEXEC is honoured; auto
    picks onnxruntime then and says how to make TensorRT's module importable (issue 24, items 5 and 9)."""
    if any(os.path.exists(p) for p in ("/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec")):
        pytest.skip("a real trtexec is installed here")
    offered, auto, note = discover(tmp_path, ["tensorrt"], trtexec=True)
    assert offered == ["trtexec", "onnxruntime"] and auto == "onnxruntime"
    assert "--system-site-packages" in note and "pycuda" in note and str(tmp_path) in note


def test_auto_is_tensorrt_for_onnx_models_where_it_imports(tmp_path):
    for bindings in ("pycuda", "cuda-python"):
        offered, auto, note = discover(tmp_path / bindings, ["tensorrt", bindings])
        assert offered[0] == "tensorrt" and auto == "tensorrt" and note is None


def test_auto_without_tensorrt(tmp_path):
    if any(os.path.exists(p) for p in ("/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec")):
        pytest.skip("a real trtexec is installed here")
    assert discover(tmp_path, []) == [["onnxruntime"], "onnxruntime", None]
    offered, auto, note = discover(tmp_path, [], trtexec=True)
    assert offered == ["trtexec", "onnxruntime"] and auto == "onnxruntime" and "the tensorrt module" in note
    assert discover(tmp_path, [], model="m.engine")[1] == "tensorrt"  # an engine needs TensorRT whatever is found
