"""dfseg's real device commands on each JetPack's (and desktop's) Python-side NVIDIA stack, simulated by the
fakes in ``tests/fakes`` (TensorRT per version, pycuda, cuda-python, a CUDA driver with per-thread
contexts; see their docstrings for the NVIDIA and pycuda sources of each behaviour).

Every command runs as a subprocess of the device side (torch blocked) with ``tests/fakes`` first on
PYTHONPATH.  The assertions are outcomes: exit 0, the TensorRT outputs equal ONNX Runtime's class
maps, the records and tables written.  Nothing is timed.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from test_eval import make_cityscapes, random_label_ids
from test_live_pipeline import TINY_ARCH, assert_labels_match, tiny_onnx, write_video

from dfseg.cityscapes import label_to_train_lut

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FAKES = os.path.join(HERE, "fakes")

# What each target ships.  numpy: JetPack 4.6.1's Python 3.6 stops at 1.19; on JetPack 5 (Python 3.8)
# `pip install numpy` gives 1.24.4, the newest for 3.8.  CUDA bindings: JetPack 4.6/5 users have pycuda
# (python3-pycuda / pip), JetPack 6 and desktop wheels cuda-python (12.2 has only cuda.cudart; 12.6+
# cuda.bindings.runtime).  Drivers: CUDA 10.2, 11.4, 12.2, 12.6 on the JetPacks; a desktop's 580 (13.0).
TARGETS = {
    "jetpack-4.6.1": {"FAKE_TENSORRT_VERSION": "8.2.1.8", "FAKE_CUDA_DEVICE": "tx2", "FAKE_CUDA_LIBS": "pycuda",
                      "FAKE_NUMPY_VERSION": "1.19.5", "FAKE_CUDA_DRIVER_VERSION": "10020"},
    "jetpack-5.1": {"FAKE_TENSORRT_VERSION": "8.5.2.2", "FAKE_CUDA_DEVICE": "orin", "FAKE_CUDA_LIBS": "pycuda",
                    "FAKE_NUMPY_VERSION": "1.24.4", "FAKE_CUDA_DRIVER_VERSION": "11040"},
    "jetpack-6.0": {"FAKE_TENSORRT_VERSION": "8.6.2.3", "FAKE_CUDA_DEVICE": "orin", "FAKE_CUDA_LIBS": "cuda-python",
                    "FAKE_CUDA_PYTHON_LAYOUT": "legacy", "FAKE_NUMPY_VERSION": "1.24.4",
                    "FAKE_CUDA_DRIVER_VERSION": "12020"},
    "jetpack-6.2": {"FAKE_TENSORRT_VERSION": "10.3.0.30", "FAKE_CUDA_DEVICE": "orin", "FAKE_CUDA_LIBS": "cuda-python",
                    "FAKE_CUDA_DRIVER_VERSION": "12060"},
    "desktop-10.16": {"FAKE_TENSORRT_VERSION": "10.16.1.11", "FAKE_CUDA_DEVICE": "rtx4090",
                      "FAKE_CUDA_LIBS": "cuda-python", "FAKE_CUDA_DRIVER_VERSION": "13000"},
    "desktop-11": {"FAKE_TENSORRT_VERSION": "11.0.0.114", "FAKE_CUDA_DEVICE": "rtx4090",
                   "FAKE_CUDA_LIBS": "cuda-python", "FAKE_CUDA_DRIVER_VERSION": "13000"},
}
QUICK = ["--rounds", "1", "--runs-per-round", "1", "--warmup", "0", "--no-progress"]
WIDTH, HEIGHT, FRAMES = 48, 32, 4
# Device-side wrapper: torch cannot be imported, and a command that imported it anyway fails.
DEVICE = ("import sys, runpy; sys.modules['torch'] = None; sys.argv = sys.argv[1:]; "
          "runpy.run_module(sys.argv[0], run_name='__main__')")


def device_run(target, module, *args, cwd, code=None, extra_env=None, timeout=180):
    """``python -m module args`` (or ``python -c code args``) as on ``target``, with torch blocked."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("FAKE_")}
    env.update(TARGETS[target], PYTHONPATH=os.pathsep.join([FAKES, ROOT]), **(extra_env or {}))
    argv = ["-c", "import sys; sys.modules['torch'] = None\n" + code] if code else ["-c", DEVICE, module]
    return subprocess.run([sys.executable] + argv + [str(a) for a in args], cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=timeout)


def explain(proc):
    return "exit {}\n--- stdout\n{}\n--- stderr\n{}".format(proc.returncode, proc.stdout[-3000:], proc.stderr[-6000:])


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("matrix")
    model = tiny_onnx(str(root / "tiny.onnx"), WIDTH, HEIGHT)
    logits = tiny_onnx(str(root / "tiny-logits.onnx"), WIDTH, HEIGHT, output="logits")
    video = write_video(str(root / "clip.avi"), FRAMES, WIDTH, HEIGHT)
    data = str(root / "cityscapes")
    labels = {("aachen", "aachen_000000_000019"): random_label_ids(10),
              ("bremen", "bremen_000000_000019"): random_label_ids(11)}
    make_cityscapes(data, labels)
    return {"model": model, "logits": logits, "video": video, "data": data, "labels": list(labels.values())}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A device bundle (what dfseg-export --bundle writes) with one tiny DF-Seg and a 2-member space."""
    from dfseg.bench.bundle import write_bundle
    from dfseg.bench.model_files import resolve_model
    from dfseg.bench.suite import spec_parts
    from dfseg.sizes import Size

    path = str(tmp_path_factory.mktemp("bundle") / "bundle")
    models = [resolve_model("s16.16-16x1_16x1_16x1-wc19.19.19", Size(32, 32))]
    write_bundle(path, models, spec_parts(models), models, show_progress=False, extra={"table_sizes": ["32x32"]})
    return path


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_bench_end_to_end(target, bundle, tmp_path):
    out = tmp_path / "bench.json"
    proc = device_run(target, "dfseg.cli.bench", "--bundle", bundle, "--backend", "tensorrt", "--json", out,
                      *QUICK, cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    records = json.loads(out.read_text())["records"]
    assert len(records) == 1 and records[0]["backend"] == "tensorrt"
    assert records[0]["median_ms"] > 0 and records[0]["compute_median_ms"] > 0
    engines = [name for name in os.listdir(tmp_path / "engines") if name.endswith(".engine")]
    assert engines and all("trt" + TARGETS[target]["FAKE_TENSORRT_VERSION"] in name for name in engines)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_bench_table(target, bundle, tmp_path):
    table = tmp_path / "table.json"
    proc = device_run(target, "dfseg.cli.bench", "--bundle", bundle, "--backend", "tensorrt", "--table", table,
                      "--no-space", *QUICK, cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    data = json.loads(table.read_text())
    assert data["complete"] and data["entries"]
    assert data["meta"]["identity"]["backend"] == "tensorrt"
    assert all(entry["median_ms"] > 0 for entry in data["entries"].values())


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_run_segments_a_video_through_the_threaded_pipeline(target, assets, tmp_path):
    labels = tmp_path / "labels"
    proc = device_run(target, "dfseg.cli.run", "--model", assets["model"], "--backend", "tensorrt", assets["video"],
                      "none", "--save-labels", labels, cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    assert "{} frames".format(FRAMES) in proc.stderr
    assert_labels_match(assets["model"], assets["video"], labels, FRAMES)


def evaluate(target, assets, backend, tmp_path):
    out = tmp_path / (backend + ".json")
    proc = device_run(target, "dfseg.cli.eval", "--data", assets["data"], "--model", assets["model"],
                      "--backend", backend, "--quiet", "--json", out, cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def onnxruntime_scores(assets, tmp_path_factory):
    return evaluate("jetpack-6.2", assets, "onnxruntime", tmp_path_factory.mktemp("eval-onnxruntime"))


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_eval_scores_as_onnxruntime_does(target, assets, onnxruntime_scores, tmp_path):
    result = evaluate(target, assets, "tensorrt", tmp_path)
    assert result["source"]["backend"] == "tensorrt"
    assert result["confusion_matrix"] == onnxruntime_scores["confusion_matrix"]
    scored = sum(int(np.sum(label_to_train_lut()[label_ids] != 255)) for label_ids in assets["labels"])
    assert int(np.sum(result["confusion_matrix"])) == scored  # every labelled pixel of both images


# The runner made (activated) on one thread and used from another, as dfseg-run's pipeline does, on the
# second of two GPUs: the outputs must be ONNX Runtime's, and the TensorRT log must stay free of errors.
OTHER_THREAD = """
import sys, threading
import numpy as np
from dfseg.backends import get_runner
model = sys.argv[1]
with get_runner("onnxruntime", model) as reference:
    feed = reference.make_feed(seed=3)
    expected = reference.infer(feed)
runner = get_runner("tensorrt", model, device_index=1)
runner.activate()
outcome = {}
def work():
    try:
        outcome["outputs"] = [runner.infer(feed) for _ in range(2)]
    except BaseException as exc:
        outcome["error"] = exc
thread = threading.Thread(target=work)
thread.start()
thread.join()
runner.deactivate()
if "error" in outcome:
    raise outcome["error"]
for outputs in outcome["outputs"]:
    for name, value in expected.items():
        np.testing.assert_array_equal(outputs[name], value)
print("same outputs on device", runner.device_index)
"""


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_runner_used_from_another_thread_on_the_second_gpu(target, assets, tmp_path):
    proc = device_run(target, None, assets["model"], cwd=tmp_path, code=OTHER_THREAD,
                      extra_env={"FAKE_CUDA_DEVICE_COUNT": "2"})
    assert proc.returncode == 0, explain(proc)
    assert "same outputs on device 1" in proc.stdout
    assert "[TRT] [E]" not in proc.stderr, proc.stderr



@pytest.mark.parametrize("target", ["jetpack-4.6.1", "jetpack-5.1", "jetpack-6.0"])
def test_int8_calibrates_through_the_entropy_calibrator(target, assets, tmp_path):
    """TensorRT 8.x's implicit INT8: the builder calls the calibrator's get_batch, which copies real
    images to the device, then writes TensorRT's calibration cache; the second run reuses the engine.
    A TX2 (sm62) has no fast INT8 and is refused in one line."""
    cache = tmp_path / "int8.cache"
    argv = ["--model", assets["model"], "--backend", "tensorrt", "--precision", "int8", "--calibration",
            assets["data"], "--calibration-images", "2", "--calibration-cache", cache, assets["video"], "none",
            "--save-labels"]
    proc = device_run(target, "dfseg.cli.run", *argv, tmp_path / "labels", cwd=tmp_path)
    if TARGETS[target]["FAKE_CUDA_DEVICE"] == "tx2":
        assert proc.returncode == 2, explain(proc)
        assert "no fast INT8" in proc.stderr and "Traceback" not in proc.stderr
        return
    assert proc.returncode == 0, explain(proc)
    assert "building a TensorRT int8 engine" in proc.stderr
    assert len(os.listdir(tmp_path / "labels")) == FRAMES
    with open(str(cache)) as handle:  # written by the calibrator after get_batch fed it the images
        assert handle.readline().endswith("-EntropyCalibration2\n")
    # The cache now exists; the engine's key must not change with it, or every second run rebuilds.
    again = device_run(target, "dfseg.cli.run", *argv, tmp_path / "labels2", cwd=tmp_path)
    assert again.returncode == 0, explain(again)
    assert "building a TensorRT" not in again.stderr
    engines = [name for name in os.listdir(tmp_path / "engines") if name.endswith(".engine")]
    assert len(engines) == 1 and "-int8-" in engines[0]


def test_an_engine_of_another_version_is_refused_in_one_line(assets, tmp_path):
    """An engine built by TensorRT 8.6 (JetPack 6.0) on 10.3 (JetPack 6.2): TensorRT refuses it and logs
    why; dfseg says what to do, leaves no CUDA context behind and exits 2."""
    proc = device_run("jetpack-6.0", "dfseg.cli.run", "--model", assets["model"], "--backend", "tensorrt",
                      assets["video"], "none", "--max-frames", "1", cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    (engine,) = [tmp_path / "engines" / name for name in os.listdir(tmp_path / "engines") if name.endswith(".engine")]
    for target in ("jetpack-6.2", "jetpack-5.1"):
        proc = device_run(target, "dfseg.cli.run", "--model", engine, "--backend", "tensorrt", assets["video"],
                          "none", cwd=tmp_path)
        assert proc.returncode == 2, explain(proc)
        assert "expecting library version" in proc.stderr  # TensorRT's own log line
        error = [line for line in proc.stderr.splitlines() if line.startswith("dfseg-run: error:")]
        assert len(error) == 1 and "cannot deserialize" in error[0] and "Traceback" not in proc.stderr
        assert "PyCUDA ERROR" not in proc.stderr


# The per-layer profile of the runner (IProfiler callbacks), attributed to the network's parts.
LAYER_PROFILE = """
import sys
from dfseg.arch import Arch
from dfseg.backends import get_runner
from dfseg.backends.tensorrt.profiling import per_part_ms
from dfseg.onnx_wire import OnnxSummary
from dfseg.parts import network_parts
model, arch, width, height = sys.argv[1], Arch.parse(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with get_runner("tensorrt", model) as runner:
    times = runner.layer_profile(runner.make_feed(), runs=2)
    runner.infer(runner.make_feed())  # the profiler is detached again: a plain inference still works
order = OnnxSummary(model).node_names
attribution = per_part_ms(times, arch, height, width, order)
unfed = [part.name for part in network_parts(arch, height, width) if not attribution.parts.get(part.name)]
print("layers", len(times), "myelin", sum("ForeignNode" in name for name in times))
print("unfed", unfed, "attributed", round(attribution.attributed_ms, 6), "total", round(attribution.total_ms, 6))
"""


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_layer_profile_reaches_every_part(target, assets, tmp_path):
    proc = device_run(target, None, assets["model"], TINY_ARCH, WIDTH, HEIGHT, cwd=tmp_path, code=LAYER_PROFILE)
    assert proc.returncode == 0, explain(proc)
    assert "unfed [] " in proc.stdout, proc.stdout
    myelin = int(proc.stdout.split("myelin ")[1].split()[0])
    version = tuple(int(p) for p in TARGETS[target]["FAKE_TENSORRT_VERSION"].split(".")[:2])
    assert (myelin > 0) == (version >= (8, 5)), proc.stdout  # Myelin regions from 8.5


# FP32 logits of the TensorRT engine against ONNX Runtime's.  TF32 (on in a fresh builder config, used on
# sm80+) rounds the inputs of every product to a 10-bit mantissa: relative errors near 1e-3.
FP32_LOGITS = """
import sys
import numpy as np
from dfseg.backends import get_runner
model = sys.argv[1]
with get_runner("onnxruntime", model) as reference:
    feed = reference.make_feed(seed=5)
    expected = reference.infer(feed)
with get_runner("tensorrt", model) as runner:
    outputs = runner.infer(feed)
for name, value in expected.items():
    error = float(np.max(np.abs(outputs[name] - value))) / float(np.max(np.abs(value)))
    print("relative error", name, error)
    assert error < 1e-5, error
"""


@pytest.mark.parametrize("target", ["jetpack-6.0", "jetpack-6.2", "desktop-10.16"])
def test_fp32_engines_compute_in_fp32_on_ampere_and_newer(target, assets, tmp_path):
    proc = device_run(target, None, assets["logits"], cwd=tmp_path, code=FP32_LOGITS)
    assert proc.returncode == 0, explain(proc)
    assert "relative error" in proc.stdout


FAILED_ACTIVATION = """
import sys
import fake_cuda
from dfseg.backends import get_runner
from dfseg.backends.tensorrt import compat

def broken(trt, engine):
    raise RuntimeError("injected: the engine loaded, reading its tensors failed")

compat.io_tensors = broken
runner = get_runner("tensorrt", sys.argv[1])
try:
    runner.activate()
except RuntimeError as exc:
    print("refused:", exc)
print("left:", runner.engine, runner.context, runner.memory, runner.is_active, len(fake_cuda.DRIVER.allocations))
"""


@pytest.mark.parametrize("target", ["jetpack-4.6.1", "jetpack-6.2"])
def test_a_failed_activation_leaves_nothing_alive(target, assets, tmp_path):
    """An activation that fails after the engine loaded drops the engine, its context and every buffer,
    not only the CUDA memory object (runner.py kept engine and context before)."""
    proc = device_run(target, None, assets["model"], cwd=tmp_path, code=FAILED_ACTIVATION)
    assert proc.returncode == 0, explain(proc)
    assert "refused: injected" in proc.stdout
    assert "left: None None None False 0" in proc.stdout, proc.stdout
