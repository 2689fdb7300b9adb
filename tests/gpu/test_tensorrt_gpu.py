"""TensorRT on a real GPU: every preset at 360p in FP32 and FP16 against ONNX Runtime, and the engine
cache hit on the second run.  Skips cleanly without TensorRT; on an H100 (or a Jetson):

    pip install tensorrt pycuda        # or: pip install tensorrt cuda-python
    pytest -m gpu tests/gpu
"""

import numpy as np
import pytest

from dfseg.arch import PRESETS, get_preset
from dfseg.build_config import BuildConfig

pytestmark = pytest.mark.gpu
trt = pytest.importorskip("tensorrt")
pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

SIZE = "360p"  # 640x360
ENGINES = {}  # preset -> exported ONNX path, shared by the FP32 and FP16 cases


def street_like_image(height=360, width=640, seed=0):
    """A smooth synthetic BGR scene (sky, road, textured blobs): real-looking statistics, unlike
    white noise, so FP16 rounding cannot flip most argmaxes of a random network."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((height, width, 3), np.float32)
    image[..., 0] = 180 - 100 * (y / height)
    image[..., 1] = 120 + 40 * np.sin(x / 37.0)
    image[..., 2] = 90 + 60 * (y > height * 0.55)
    for _ in range(12):
        cy, cx, r = rng.randint(0, height), rng.randint(0, width), rng.randint(10, 60)
        image[(y - cy) ** 2 + (x - cx) ** 2 < r * r] += rng.randint(-60, 60, size=3)
    return np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


def exported(preset, onnx_dir):
    from dfseg.export import export_onnx

    if preset not in ENGINES:
        ENGINES[preset] = export_onnx(preset, SIZE, str(onnx_dir / "{}-360p.onnx".format(preset)))
    return ENGINES[preset]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_engine_matches_onnxruntime_and_is_cached(preset, precision, onnx_dir, tmp_path):
    from dfseg.backends.onnxrt import OnnxRuntimeRunner
    from dfseg.backends.tensorrt.runner import TensorRTRunner
    from dfseg.preprocess import preprocess

    path = exported(preset, onnx_dir)
    with OnnxRuntimeRunner(path, providers=["cpu"]) as ort:
        (input_name,) = ort.input_metadata()
        feed = {input_name: preprocess(street_like_image(), SIZE)}
        reference = ort.infer(feed)
    cache = str(tmp_path / "engines")
    with TensorRTRunner(path, config=BuildConfig(precision=precision, cache_dir=cache)) as runner:
        assert runner.cache_hit is False
        outputs = runner.infer(feed)
        assert runner.last_compute_ms is not None and runner.last_compute_ms > 0
    with TensorRTRunner(path, config=BuildConfig(precision=precision, cache_dir=cache)) as again:
        assert again.cache_hit is True
        repeat = again.infer(feed)
    (name,) = reference
    got, want = outputs[name].astype(np.float32), reference[name]
    np.testing.assert_allclose(repeat[name], outputs[name])
    assert got.shape == want.shape
    scale = float(np.abs(want).max()) or 1.0
    if precision == "fp32":
        assert float(np.abs(got - want).max()) <= 1e-3 * max(scale, 1.0), preset
    if get_preset(preset).is_segmentation:
        agreement = float((got.argmax(axis=1) == want.argmax(axis=1)).mean())
        assert agreement >= (0.999 if precision == "fp32" else 0.99), (preset, agreement)
    else:
        assert got.argmax() == want.argmax(), preset


def test_layer_profile_attributes_to_parts(onnx_dir):
    from dfseg.backends.tensorrt.profiling import per_part_ms
    from dfseg.backends.tensorrt.runner import TensorRTRunner

    path = exported("df1-seg", onnx_dir)
    with TensorRTRunner(path, config=BuildConfig(precision="fp16", cache_dir=str(onnx_dir / "engines"))) as runner:
        layers = runner.layer_profile(runner.make_feed(), runs=10)
    result = per_part_ms(layers, get_preset("df1-seg"), 360, 640)
    assert result.attributed_ms > 0.5 * result.total_ms
    assert all(result.parts[name] > 0 for name in ("stem.conv1", "stage3.0", "stage5.0"))
