"""ONNX export: real ONNX Runtime sessions against torch, BN folding, static graphs, part exports,
and the numpy pre/post-processing that runs around the exported graph."""

import functools
import os
from typing import Tuple

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from torch import nn  # noqa: E402

from dfseg.arch import PRESETS, Arch  # noqa: E402
from dfseg.backends.tensorrt.profiling import module_path_of_node, part_of_node  # noqa: E402
from dfseg.errors import UserError  # noqa: E402
from dfseg.export import (  # noqa: E402
    check_folding,
    export_onnx,
    export_part_onnx,
    fold_batchnorm,
    make_part_module,
    part_input_names,
)
from dfseg.models import create_model, list_models, part_inputs  # noqa: E402
from dfseg.models.layers import randomize_batchnorm  # noqa: E402
from dfseg.parts import network_parts  # noqa: E402
from dfseg.preprocess import (  # noqa: E402
    CITYSCAPES_MEAN_BGR,
    IMAGENET_MEAN_BGR,
    INPUT_SCALE,
    preprocess,
    resize_bilinear_numpy,
    upsample_nearest,
)

REFERENCE = [name for name in list_models() if name not in PRESETS]


@functools.lru_cache(maxsize=None)
def _model(name: str) -> nn.Module:
    """One randomly initialised model per name (exports work on copies and never change it)."""
    torch.manual_seed(0)
    return randomize_batchnorm(create_model(name), seed=3)


def _session(path: str) -> "ort.InferenceSession":
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def _torch_out(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    spread = float(expected.max() - expected.min())
    assert spread > 0
    assert float(np.abs(actual - expected).max()) <= 1e-4 * spread


def _input(width: int, height: int, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).standard_normal((1, 3, height, width)).astype(np.float32)


def _sizes(name: str) -> Tuple[Tuple[int, int], ...]:
    if name in PRESETS and PRESETS[name].is_segmentation:
        return ((128, 128), (200, 136))  # 200x136: stage 5 is 7x5, odd fusion crops, ceil-mode PPM overhang
    return ((128, 128), (100, 76))  # global pooling: any size; 224x224 is covered by the classmap test


@pytest.mark.parametrize("name", list(PRESETS))
def test_onnxruntime_matches_torch_at_two_sizes(name: str, tmp_path) -> None:
    model = _model(name)
    for width, height in _sizes(name):
        path = export_onnx(model, (width, height), str(tmp_path / "m.onnx"))
        proto = onnx.load(path)
        ops = {node.op_type for node in proto.graph.node}
        assert "BatchNormalization" not in ops and "Shape" not in ops
        assert [i.name for i in proto.graph.input] == ["input"]
        assert [o.name for o in proto.graph.output] == ["logits"]
        dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
        assert dims == [1, 3, height, width]
        x = _input(width, height)
        _assert_close(_session(path).run(["logits"], {"input": x})[0], _torch_out(model, x))


@pytest.mark.parametrize("name", REFERENCE)
def test_reference_models_export_with_bn_folded(name: str, tmp_path) -> None:
    model = _model(name)
    path = export_onnx(model, (96, 96), str(tmp_path / "r.onnx"))
    assert "BatchNormalization" not in {node.op_type for node in onnx.load(path).graph.node}
    x = _input(96, 96)
    _assert_close(_session(path).run(None, {"input": x})[0], _torch_out(model, x))


def test_segmentation_at_640x360(tmp_path) -> None:
    model = _model("dflite-seg")
    path = export_onnx(model, "360p", str(tmp_path / "m.onnx"))
    x = _input(640, 360)
    out = _session(path).run(None, {"input": x})[0]
    assert out.shape == (1, 19, 360, 640)
    _assert_close(out, _torch_out(model, x))


@pytest.mark.parametrize("name,size", [("df1-seg-d8", (250, 170)), ("df1", (224, 224))])
def test_classmap_equals_torch_argmax(name: str, size: Tuple[int, int], tmp_path) -> None:
    model = _model(name)
    path = export_onnx(model, size, str(tmp_path / "c.onnx"), output="classmap")
    x = _input(*size)
    classmap = _session(path).run(["classmap"], {"input": x})[0]
    logits = _torch_out(model, x)
    assert classmap.dtype == np.int32 and classmap.shape == logits.shape[:1] + logits.shape[2:]
    expected = logits.argmax(axis=1)
    # Pixels whose two best classes are closer than float noise may legitimately differ.
    top2 = np.sort(logits, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > 1e-4 * float(logits.max() - logits.min())
    assert decided.mean() > 0.99
    assert np.array_equal(classmap[decided], expected[decided])


def test_d8_output_and_nearest_upsampling(tmp_path) -> None:
    model = _model("df1-seg-d8")
    path = export_onnx(model, (250, 170), str(tmp_path / "d8.onnx"), output="classmap")
    classmap = _session(path).run(None, {"input": _input(250, 170)})[0]
    assert classmap.shape == (1, 22, 32)  # ceil(170/8) x ceil(250/8)
    full = upsample_nearest(classmap, 8, (250, 170))
    assert full.shape == (1, 170, 250)
    assert np.array_equal(full[0, ::8, ::8], classmap[0, :, :])
    assert np.array_equal(full[0, 7, 15], classmap[0, 0, 1])
    with pytest.raises(UserError, match="smaller than"):
        upsample_nearest(classmap, 8, (300, 170))


def test_node_names_carry_part_names(tmp_path) -> None:
    # Every kind of part: basic and bottleneck blocks (with an inner-width projection), decoder parts.
    arch = Arch.create(
        [[64, 64], [[32, 128], [64, 128]], [[64, 256]]], block=["basic", "bottleneck", "bottleneck"], decoder=[19, 32, 64]
    )
    path = export_onnx(arch, (128, 96), str(tmp_path / "n.onnx"))
    names = [p.name for p in network_parts(arch, 96, 128)]
    owners = {part_of_node(node.name, names) for node in onnx.load(path).graph.node if node.op_type == "Conv"}
    assert owners == set(names)
    assert module_path_of_node("/stage5/stage5.4/shortcut/conv/Conv") == "stage5.4.shortcut.conv"
    assert part_of_node("/stage5/stage5.4/conv1/conv/Conv", ["stage5.4", "stage5.40"]) == "stage5.4"
    assert part_of_node("/ArgMax", names) is None


def test_fold_batchnorm_is_checked_and_complete() -> None:
    model = _model("df2a")
    folded = fold_batchnorm(model)
    assert not [m for m in folded.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)], "the original is untouched"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        spread = float(model(x).max() - model(x).min())
    assert check_folding(model, folded, (x,)) <= 1e-5 * spread
    # A wrong fold is caught: perturb one folded bias.
    with torch.no_grad():
        folded.stage5[0].conv1.conv.bias.add_(1.0)
    with pytest.raises(RuntimeError, match="BN folding changed the output"):
        check_folding(model, folded, (x,))


def test_opset_11_and_bad_requests(tmp_path) -> None:
    path = export_onnx("df1", (64, 64), str(tmp_path / "o11.onnx"), opset=11)
    assert onnx.load(path).opset_import[0].version == 11
    with pytest.raises(UserError, match="opset 9"):
        export_onnx("df1", (64, 64), str(tmp_path / "x.onnx"), opset=9)
    with pytest.raises(UserError, match="output 'probs'"):
        export_onnx("df1", (64, 64), str(tmp_path / "x.onnx"), output="probs")
    with pytest.raises(UserError, match="does not exist"):
        export_onnx("df1", (64, 64), str(tmp_path / "missing" / "x.onnx"))
    with pytest.raises(UserError, match="is a directory"):
        export_onnx("df1", (64, 64), str(tmp_path))
    with pytest.raises(UserError, match="WIDTHxHEIGHT"):
        export_onnx("df1", "big", str(tmp_path / "x.onnx"))
    assert sorted(os.listdir(tmp_path)) == ["o11.onnx"], "no partial or temporary files left"


def test_export_replaces_existing_file_atomically(tmp_path) -> None:
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")
    export_onnx("df1", (64, 64), str(target))
    onnx.checker.check_model(onnx.load(str(target)))
    assert os.listdir(tmp_path) == ["m.onnx"]


@pytest.mark.parametrize("kind", ["stem", "basic", "bottleneck", "classifier", "ppm", "wc", "fuse", "head", "head-d8"])
def test_part_export_matches_the_part_module(kind: str, tmp_path) -> None:
    arch = {"bottleneck": PRESETS["df2a"], "classifier": PRESETS["df1"], "head-d8": PRESETS["df1-seg-d8"]}.get(
        kind, PRESETS["df1-seg"]
    )
    parts = [p for p in network_parts(arch, 170, 250) if p.kind == kind.split("-")[0]]
    part = parts[0] if kind != "basic" else [p for p in parts if p.stride == 1][0]
    path = export_part_onnx(part, str(tmp_path / "p.onnx"))
    proto = onnx.load(path)
    assert "BatchNormalization" not in {node.op_type for node in proto.graph.node}
    inputs = part_inputs(part)
    feed = {name: t.numpy() for name, t in zip(part_input_names(part), inputs)}
    assert [i.name for i in proto.graph.input] == list(feed)
    out = _session(path).run(["output"], feed)[0]
    with torch.no_grad():
        expected = make_part_module(part)(*inputs).numpy()
    if kind != "classifier":
        assert expected.shape[1:] == (part.c_out, part.h_out, part.w_out)
    _assert_close(out, expected)


def test_preprocess_matches_the_release_recipe() -> None:
    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, (170, 250, 3)).astype(np.uint8)
    x = preprocess(image)
    assert x.shape == (1, 3, 170, 250) and x.dtype == np.float32
    expected = (image[10, 20].astype(np.float32) - np.array(CITYSCAPES_MEAN_BGR, np.float32)) * INPUT_SCALE
    assert np.allclose(x[0, :, 10, 20], expected)
    x_imagenet = preprocess(image, mean_bgr=IMAGENET_MEAN_BGR)
    assert np.allclose(x_imagenet[0, 0], (image[..., 0] - 104.0) * 0.008)
    resized = preprocess(image, "125x85")
    assert resized.shape == (1, 3, 85, 125)
    with pytest.raises(UserError, match="HxWx3"):
        preprocess(image[..., 0])


def test_numpy_resize_agrees_with_opencv() -> None:
    cv2 = pytest.importorskip("cv2")
    image = np.random.RandomState(1).randint(0, 256, (37, 53, 3)).astype(np.uint8)
    for size in [(100, 60), (20, 11), (53, 80)]:
        ours = resize_bilinear_numpy(image, size)
        theirs = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR).astype(np.float32)
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() <= 1.0  # OpenCV rounds to uint8
    constant = np.full((9, 7, 3), 42, np.uint8)
    assert np.allclose(resize_bilinear_numpy(constant, (15, 4)), 42.0)
