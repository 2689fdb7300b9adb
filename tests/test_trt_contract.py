"""Contract test against NVIDIA's own binaries: every TensorRT name that each version's code path touches
exists in that version's bindings.

TensorRT cannot run here, but its binding wheels are on the registry: ``tensorrt.so`` holds every
registered Python name as a NUL-terminated string (the linker may share a name's bytes with the tail
of a longer one, so a name counts when ``name\\0`` occurs), and the wheel's ``__init__.py`` defines a
few more (``nptype``, ``__version__``).  The names are not listed by hand: dfseg's real build, runtime,
calibration and profiling paths run against ``trt_recorder`` for each version, precision and typing,
and whatever they touch is checked.  What this cannot see: which class a name belongs to, argument
types, and anything trtexec does.  8.2 (JetPack 4.6) has no wheel; 8.6.1 stands for the 8.x path.

The wheels are downloaded once into ``$DFSEG_CACHE`` (default ``~/.cache/dfseg``); without the
registry the test is skipped and says why.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from typing import Dict, Set

import numpy as np
import pytest
from trt_recorder import Recorder

from dfseg.backends.tensorrt import compat
from dfseg.backends.tensorrt.builder import EngineFromOnnx, TrtLogger, parse_onnx
from dfseg.backends.tensorrt.profiling import collect_layer_times
from dfseg.backends.tensorrt.runner import load_engine
from dfseg.build_config import NETWORK_TYPINGS, PRECISIONS, BuildConfig
from dfseg.errors import UserError

WHEELS = {
    "8.6.1": "tensorrt-bindings==8.6.1",
    "10.16.1.11": "tensorrt-cu12-bindings==10.16.1.11",
    "11.4.0.106": "tensorrt-cu13-bindings==11.4.0.106",
}
# The code path's version -> the wheel whose names it is checked against.  8.2 has no wheel: 8.6.1 still
# has the 8.2 path's names (bindings, max_workspace_size), but a name added after 8.2 would pass unseen.
# 8.5.2 (JetPack 5.1) is the named-tensor path with JetPack 5's numpy, under which its nptype raises.
CODE_PATHS = {"8.2.1": "8.6.1", "8.5.2": "8.6.1", "8.6.1": "8.6.1", "10.16.1.11": "10.16.1.11",
              "11.4.0.106": "11.4.0.106"}
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


class BindingNames:
    """The names one binding wheel registers."""

    def __init__(self, wheel: str) -> None:
        with zipfile.ZipFile(wheel) as archive:
            members = archive.namelist()
            library = next(m for m in members if m.endswith("/tensorrt.so"))
            init = next(m for m in members if m.endswith("tensorrt_bindings/__init__.py"))
            self.library = archive.read(library)
            self.python = archive.read(init).decode("utf-8")
        self.defined = set(re.findall(r"^(?:def|class) (\w+)", self.python, re.M))
        self.defined |= set(re.findall(r"^(\w+)\s*=", self.python, re.M))

    def has(self, name: str) -> bool:
        return name in self.defined or (name.encode("ascii") + b"\0") in self.library

    def missing(self, names: Set[str]) -> list:
        return sorted(n for n in names if not self.has(n))


def _cache_dir() -> str:
    return os.path.join(os.environ.get("DFSEG_CACHE") or os.path.expanduser("~/.cache/dfseg"), "tensorrt-bindings")


def _download(spec: str, cache: str) -> str:
    name, _, version = spec.partition("==")
    stem = name.replace("-", "_") + "-" + version + "-"
    found = [f for f in os.listdir(cache) if f.startswith(stem) and f.endswith(".whl")] if os.path.isdir(cache) else []
    if found:
        return os.path.join(cache, found[0])
    os.makedirs(cache, exist_ok=True)
    work = tempfile.mkdtemp(prefix="download-", dir=cache)
    try:
        argv = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                "--python-version", "3.11", "--dest", work, spec]
        for platform in PLATFORMS:
            argv[-1:-1] = ["--platform", platform]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        wheels = [f for f in os.listdir(work) if f.endswith(".whl")]
        if done.returncode != 0 or not wheels:
            last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            pytest.skip("cannot download {} from the package registry ({}); the TensorRT contract is "
                        "unchecked".format(spec, last))
        target = os.path.join(cache, wheels[0])
        os.replace(os.path.join(work, wheels[0]), target)
        return target
    except subprocess.TimeoutExpired:
        pytest.skip("downloading {} timed out; the TensorRT contract is unchecked".format(spec))
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def bindings() -> Dict[str, BindingNames]:
    return {version: BindingNames(_download(spec, _cache_dir())) for version, spec in WHEELS.items()}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A real one-convolution ONNX whose node is /head/conv/Conv, and real calibration images."""
    onnx = pytest.importorskip("onnx")
    cv2 = pytest.importorskip("cv2")
    from onnx import TensorProto, helper, numpy_helper

    root = tmp_path_factory.mktemp("contract")
    weight = numpy_helper.from_array(np.random.RandomState(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["output"], name="/head/conv/Conv", pads=[1, 1, 1, 1])], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 8, 8])], [weight])
    model = str(root / "tiny.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), model)
    images = root / "images"
    images.mkdir()
    for index in range(3):
        image = np.random.RandomState(index).randint(0, 255, (8, 8, 3)).astype(np.uint8)
        assert cv2.imwrite(str(images / "{}.png".format(index)), image)
    return model, str(images)


class HostMemory:
    """Enough of ``cuda_memory.CudaMemory`` for the builder and the calibrator (no CUDA here)."""

    def device_name(self) -> str:
        return "contract-test"

    def host(self, shape, dtype):
        return np.zeros(shape, dtype)

    def device(self, nbytes: int) -> int:
        return 4096

    def htod(self, *args) -> None:
        pass

    def synchronize(self) -> None:
        pass


def exercise(version: str, model: str, images: str, work: str) -> Recorder:
    """Run every dfseg code path that touches TensorRT against a recorder posing as ``version``."""
    recorder = Recorder(version)
    trt = recorder.module()
    TrtLogger.instance = None  # one logger per process: each recorder must see it made
    try:
        for precision in PRECISIONS:
            for typing in NETWORK_TYPINGS:
                try:
                    compat.strongly_typed(trt, precision, typing)
                except compat.TensorRTVersionError:
                    continue  # refused before any TensorRT call
                config = BuildConfig(precision=precision, network_typing=typing,
                                     fp32_layers=("/head/",) if precision != "fp32" else (),
                                     calibration=images if precision == "int8" else None, calibration_images=3,
                                     cache_dir=os.path.join(work, "{}-{}-{}".format(version, precision, typing)))
                EngineFromOnnx(model, config)(trt, HostMemory())
        engine, context = load_engine(trt, b"", "contract")
        tensors = compat.io_tensors(trt, engine)
        bindings = compat.bind_addresses(trt, context, tensors, {t.name: 4096 for t in tensors})
        compat.execute(trt, context, bindings, 0)
        collect_layer_times(trt, context, lambda: None, runs=1)
        failing = Recorder(version, parse_ok=False)
        with pytest.raises(UserError, match="cannot parse"):
            parse_onnx(failing.module(), model)
        recorder.names |= failing.names
    finally:
        TrtLogger.instance = None
    return recorder


@pytest.mark.parametrize("version", sorted(CODE_PATHS))
def test_every_name_each_version_uses_exists_in_its_bindings(version, bindings, models, tmp_path):
    model, images = models
    recorder = exercise(version, model, images, str(tmp_path))
    names = bindings[CODE_PATHS[version]]
    assert len(recorder.names) > 40, sorted(recorder.names)
    missing = names.missing(recorder.names)
    assert not missing, "TensorRT {} lacks {} that dfseg's code path uses (of {} names: {})".format(
        version, missing, len(recorder.names), sorted(recorder.names))


def test_the_check_catches_names_a_version_dropped(bindings, models, tmp_path):
    """The names NVIDIA removed in 11 are seen as missing there, and our 11 path does not touch them."""
    gone = {"FP16", "OBEY_PRECISION_CONSTRAINTS", "platform_has_fast_fp16", "IInt8EntropyCalibrator2",
            "int8_calibrator", "set_output_type"}
    assert bindings["11.4.0.106"].missing(gone) == sorted(gone)
    assert bindings["10.16.1.11"].missing(gone) == []
    assert bindings["8.6.1"].missing({"max_workspace_size", "execute_async_v2", "EXPLICIT_BATCH"}) == []
    assert bindings["10.16.1.11"].missing({"execute_async_v2", "num_bindings"}) == ["execute_async_v2", "num_bindings"]
    model, images = models
    used = exercise("11.4.0.106", model, images, str(tmp_path)).names
    assert not used & gone
    weak = exercise("10.16.1.11", model, images, str(tmp_path)).names
    assert {"FP16", "OBEY_PRECISION_CONSTRAINTS"} <= weak  # 10's weak FP16 fallback is exercised...
    assert "int8_calibrator" not in weak  # ...but INT8 on 10 is the Q/DQ graph only
    old = exercise("8.2.1", model, images, str(tmp_path)).names
    assert {"max_workspace_size", "num_bindings", "execute_async_v2", "EXPLICIT_BATCH", "int8_calibrator"} <= old
    assert not old & {"STRONGLY_TYPED", "set_memory_pool_limit", "execute_async_v3"}


if __name__ == "__main__":  # print each version's names: python tests/test_trt_contract.py MODEL.onnx IMAGES
    for release in sorted(CODE_PATHS):
        print(release, " ".join(sorted(exercise(release, sys.argv[1], sys.argv[2], tempfile.mkdtemp()).names)))


def _build(trt, model: str, config: BuildConfig) -> EngineFromOnnx:
    TrtLogger.instance = None
    loader = EngineFromOnnx(model, config)
    loader(trt, HostMemory())
    return loader


def test_fp32_means_ieee_fp32_not_tf32(models, tmp_path):
    """TF32 is on in a new builder config; an fp32 engine on Orin must not get 10-bit mantissas."""
    model, _ = models
    for version in sorted(CODE_PATHS):
        recorder = Recorder(version)
        loader = _build(recorder.module(), model, BuildConfig(cache_dir=str(tmp_path / version)))
        cleared = [args for path, args in recorder.calls if path.endswith(".clear_flag")]
        assert ("tensorrt.BuilderFlag.TF32",) in cleared, version
        with open(loader.engine_path + ".json") as handle:
            assert '"tf32": false' in handle.read()


def test_int8_is_refused_on_a_gpu_without_fast_int8(models, tmp_path):
    """A TX2 (sm62) has fast FP16 but no INT8 path: TensorRT would quietly build FP16/FP32 kernels."""
    model, images = models
    trt = Recorder("8.2.1", attributes={"platform_has_fast_int8": False}).module()
    config = BuildConfig(precision="int8", calibration=images, calibration_images=3, cache_dir=str(tmp_path))
    with pytest.raises(UserError, match="no fast INT8.*--precision fp16"):
        _build(trt, model, config)
    _build(trt, model, BuildConfig(precision="fp16", cache_dir=str(tmp_path)))


def test_an_int8_engine_is_built_once_when_its_calibration_cache_appears(models, tmp_path):
    """The first INT8 build writes --calibration-cache; that file must not change the engine's key."""
    model, images = models
    config = BuildConfig(precision="int8", calibration=images, calibration_images=3,
                         calibration_cache=str(tmp_path / "int8.cache"), cache_dir=str(tmp_path / "engines"))
    first = _build(Recorder("8.2.1").module(), model, config)
    assert first.cache_hit is False
    (tmp_path / "int8.cache").write_bytes(b"TRT-8201-EntropyCalibration2\ninput: 3c010a14\n")  # as TensorRT writes it
    second = _build(Recorder("8.2.1").module(), model, config)
    assert second.cache_hit is True and second.engine_path == first.engine_path
    only_cache = _build(Recorder("8.2.1").module(), model, config._replace(calibration=None))
    assert only_cache.cache_hit is False  # a cache alone (no images) is keyed by its content
