"""dfseg.load and Model(frame): a real tiny DF-Seg exported to ONNX, real ONNX Runtime, and the
same class maps as the Segmenter that dfseg-run uses."""

import subprocess
import sys

import numpy as np
import pytest
from test_live_pipeline import HEIGHT, WIDTH, tiny_onnx

import dfseg
from dfseg.backends.onnxrt import OnnxRuntimeRunner
from dfseg.errors import UserError
from dfseg.live.segmenter import Segmenter


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory) -> str:
    return tiny_onnx(str(tmp_path_factory.mktemp("api") / "tiny.onnx"))


def frame(seed: int = 0, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, (height, width, 3)).astype(np.uint8)


def test_model_call_matches_the_segmenter_of_dfseg_run(onnx_path) -> None:
    image = frame()
    with dfseg.load(onnx_path, backend="onnxruntime", threads=1) as model:
        classes = model(image)
    with OnnxRuntimeRunner(onnx_path, threads=1) as runner:
        expected = Segmenter(runner).segment(image)
    assert classes.dtype == np.uint8 and classes.shape == (HEIGHT, WIDTH)
    np.testing.assert_array_equal(classes, expected)
    assert not model.runner.is_active


def test_colour_mask_and_overlay_have_the_frame_shape(onnx_path) -> None:
    image = frame(1)
    with dfseg.load(onnx_path, backend="auto", threads=1) as model:
        classes = model(image)
    mask = dfseg.api.colorize(classes)
    blend = dfseg.api.overlay(image, classes)
    assert mask.shape == blend.shape == image.shape
    palette = dfseg.api.palette_bgr()
    np.testing.assert_array_equal(mask[0, 0], palette[classes[0, 0]])
    assert len(dfseg.api.class_names()) == 19


def test_bad_input_is_a_one_line_user_error(onnx_path, tmp_path) -> None:
    with pytest.raises(UserError, match="no such model file"):
        dfseg.load(str(tmp_path / "missing.onnx"))
    with dfseg.load(onnx_path, backend="onnxruntime", threads=1) as model:
        with pytest.raises(UserError, match="BGR uint8"):
            model(frame().astype(np.float32))
        with pytest.raises(UserError, match="BGR uint8"):
            model(frame()[:, :, 0])
    with pytest.raises(UserError, match="already closed"):
        model(frame())


def test_import_dfseg_stays_cheap() -> None:
    code = "import sys, dfseg; assert callable(dfseg.load); print(sorted(m for m in ('torch', 'onnxruntime', 'cv2', 'dfseg.api') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, check=True).stdout.decode()
    assert out.strip() == "[]"
