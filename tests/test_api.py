"""dfseg.load and Model(frame): a real tiny DF-Seg exported to ONNX, real ONNX Runtime, and the
same class maps as the Segmenter that dfseg-run uses."""

import subprocess
import sys

import numpy as np
import pytest
from test_live_pipeline import HEIGHT, WIDTH, tiny_onnx

import dfseg
from dfseg import api
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
    mask = api.colorize(classes)
    blend = api.overlay(image, classes)
    assert mask.shape == blend.shape == image.shape
    palette = api.palette_bgr()
    np.testing.assert_array_equal(mask[0, 0], palette[classes[0, 0]])
    assert len(api.class_names()) == 19


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


def readme_examples() -> list:
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_example_runs_as_printed(onnx_path, tmp_path) -> None:
    import shutil

    import cv2

    examples = readme_examples()
    assert examples, "README.md: the Python API section has no example"
    shutil.copy(onnx_path, str(tmp_path / "df1-seg.onnx"))
    cv2.imwrite(str(tmp_path / "frame.png"), frame(2))
    for example in examples:
        script = tmp_path / "example.py"
        script.write_text(example)
        done = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), capture_output=True)
        assert done.returncode == 0, done.stderr.decode()
    image = cv2.imread(str(tmp_path / "overlay.png"))
    assert image is not None and image.shape == (HEIGHT, WIDTH, 3)
    assert done.stdout.decode().strip() in api.class_names()
