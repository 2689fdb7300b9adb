"""dfseg-eval: mIoU on a generated Cityscapes-format folder whose answer is known by construction."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from dfseg import eval as evaluation
from dfseg.cityscapes import IGNORE_LABEL, LABELS, TRAIN_CLASSES, label_to_train_lut, train_to_label_lut

HEIGHT, WIDTH = 40, 48
ROAD, CAR = 0, 13  # trainIds
ROAD_LABEL, CAR_LABEL, UNLABELED_LABEL = 7, 26, 0


def _write_png(path: str, array: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, array)


def make_cityscapes(root: str, label_maps: dict) -> None:
    """``label_maps``: {(city, key): labelIds array}; writes leftImg8bit images and gtFine labelIds."""
    rng = np.random.RandomState(0)
    for (city, key), label_ids in label_maps.items():
        image = rng.randint(0, 256, size=label_ids.shape + (3,)).astype(np.uint8)
        _write_png(os.path.join(root, "leftImg8bit", "val", city, key + "_leftImg8bit.png"), image)
        _write_png(os.path.join(root, "gtFine", "val", city, key + "_gtFine_labelIds.png"), label_ids.astype(np.uint8))


def random_label_ids(seed: int) -> np.ndarray:
    # Every labelId 0..33, so ignored ids (0-6, 9, 10, 14-16, 18, 29, 30) are always present.
    rng = np.random.RandomState(seed)
    return rng.randint(0, 34, size=(HEIGHT, WIDTH)).astype(np.uint8)


def reference_iou(predictions, truths, num_classes=19):
    """IoU from boolean masks, independent of the confusion-matrix code."""
    result = []
    for c in range(num_classes):
        intersection = union = 0
        for pred, truth in zip(predictions, truths):
            valid = truth != IGNORE_LABEL
            intersection += int(np.sum((pred == c) & (truth == c) & valid))
            union += int(np.sum(((pred == c) | (truth == c)) & valid))
        result.append(intersection / union if union else float("nan"))
    return np.array(result)


def run_eval(*args):
    return subprocess.run(
        [sys.executable, "-m", "dfseg.cli.eval", "--quiet", *args], capture_output=True, text=True, timeout=120
    )


def test_label_table_is_the_cityscapes_one():
    assert len(TRAIN_CLASSES) == 19
    assert [c.train_id for c in TRAIN_CLASSES] == list(range(19))
    lut = label_to_train_lut()
    assert lut[ROAD_LABEL] == ROAD and lut[CAR_LABEL] == CAR and lut[UNLABELED_LABEL] == IGNORE_LABEL
    assert lut[33] == 18 and lut[29] == IGNORE_LABEL  # bicycle; caravan is not evaluated
    assert (lut[train_to_label_lut()[:19]] == np.arange(19)).all()
    assert len({c.label_id for c in LABELS}) == 34


def test_hand_computed_example():
    truth = np.array([[ROAD] * 6 + [CAR] * 4 + [IGNORE_LABEL] * 2], dtype=np.uint8)
    pred = np.array([[ROAD] * 4 + [CAR] * 2 + [CAR] * 4 + [ROAD] * 2], dtype=np.uint8)
    confusion = evaluation.ConfusionMatrix()
    confusion.update(pred, truth)
    iou = confusion.iou()
    assert iou[ROAD] == pytest.approx(4 / 6) and iou[CAR] == pytest.approx(4 / 6)
    assert np.isnan(np.delete(iou, [ROAD, CAR])).all()
    assert confusion.mean_iou() == pytest.approx(2 / 3)
    assert confusion.pixel_accuracy() == pytest.approx(8 / 10)


def test_out_of_range_predictions_count_as_misses():
    truth = np.array([[ROAD, ROAD, CAR, CAR]], dtype=np.uint8)
    pred = np.array([[ROAD, 255, CAR, 19]], dtype=np.uint8)
    confusion = evaluation.ConfusionMatrix()
    confusion.update(pred, truth)
    assert confusion.iou()[ROAD] == pytest.approx(0.5) and confusion.iou()[CAR] == pytest.approx(0.5)


def test_incremental_accumulation_matches_reference():
    rng = np.random.RandomState(1)
    truths = [label_to_train_lut()[random_label_ids(seed)] for seed in range(4)]
    preds = []
    for truth in truths:
        pred = truth.copy()
        flip = rng.rand(*truth.shape) < 0.3
        pred[flip] = rng.randint(0, 19, size=int(flip.sum()))
        preds.append(pred)
    confusion = evaluation.ConfusionMatrix()
    for pred, truth in zip(preds, truths):
        confusion.update(pred, truth)
    np.testing.assert_allclose(confusion.iou(), reference_iou(preds, truths), equal_nan=True)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three images in two cities; predictions equal the truth except that, in one image, every
    car pixel is predicted as road (known answer: IoU(car) = 1 - that image's car share)."""
    root = str(tmp_path_factory.mktemp("cityscapes"))
    label_maps = {
        ("aachen", "aachen_000000_000019"): random_label_ids(10),
        ("aachen", "aachen_000001_000019"): random_label_ids(11),
        ("bremen", "bremen_000000_000019"): random_label_ids(12),
    }
    make_cityscapes(root, label_maps)
    return root, label_maps


def _write_predictions(directory, label_maps, corrupt_key, as_label_ids=False):
    lut = label_to_train_lut()
    cars_total = cars_corrupted = roads_total = 0
    for (city, key), label_ids in label_maps.items():
        pred = lut[label_ids].copy()
        cars_total += int(np.sum(pred == CAR))
        roads_total += int(np.sum(pred == ROAD))
        if key == corrupt_key:
            cars_corrupted = int(np.sum(pred == CAR))
            pred[pred == CAR] = ROAD
        pred[pred == IGNORE_LABEL] = 5  # predictions on ignored pixels never count
        out = train_to_label_lut()[pred] if as_label_ids else pred
        _write_png(os.path.join(directory, city, key + "_pred.png"), out)
    return cars_total, cars_corrupted, roads_total


@pytest.mark.parametrize("as_label_ids", [False, True])
def test_cli_scores_saved_predictions(dataset, tmp_path, as_label_ids):
    root, label_maps = dataset
    corrupt = "aachen_000001_000019"
    cars, corrupted, roads = _write_predictions(str(tmp_path / "pred"), label_maps, corrupt, as_label_ids)
    assert 0 < corrupted < cars
    out = tmp_path / "result.json"
    args = ["--data", root, "--predictions", str(tmp_path / "pred"), "--json", str(out)]
    if as_label_ids:
        args += ["--prediction-ids", "labelids"]
    proc = run_eval(*args)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["images"] == 3
    assert result["classes"]["car"] == pytest.approx((cars - corrupted) / cars)
    assert result["classes"]["road"] == pytest.approx(roads / (roads + corrupted))
    others = [v for name, v in result["classes"].items() if name not in ("car", "road")]
    assert others == [pytest.approx(1.0)] * 17
    expected_miou = (17 + (cars - corrupted) / cars + roads / (roads + corrupted)) / 19
    assert result["miou"] == pytest.approx(expected_miou)
    assert "mIoU" in proc.stdout and "{:.2f}".format(100 * expected_miou) in proc.stdout
    matrix = np.array(result["confusion_matrix"])
    assert matrix.shape == (19, 20) and matrix[CAR, ROAD] == corrupted


def test_cli_errors_are_one_line(dataset, tmp_path):
    root, label_maps = dataset
    (tmp_path / "pred").mkdir()
    proc = run_eval("--data", root, "--predictions", str(tmp_path / "pred"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no prediction for aachen_000000_000019" in proc.stderr
    proc = run_eval("--data", str(tmp_path / "nowhere"), "--predictions", str(tmp_path / "pred"))
    assert proc.returncode == 2 and "leftImg8bit" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_eval("--data", root, "--model", str(tmp_path / "missing.onnx"))
    assert proc.returncode == 2 and "missing.onnx" in proc.stderr


def test_model_evaluation_matches_its_saved_predictions(dataset, tmp_path):
    """dfseg-eval --model and dfseg-run --save-labels + dfseg-eval --predictions agree exactly."""
    from test_live_pipeline import tiny_onnx

    root, _ = dataset
    model = tiny_onnx(str(tmp_path / "tiny.onnx"), WIDTH, HEIGHT)
    direct = tmp_path / "direct.json"
    proc = run_eval("--data", root, "--model", model, "--json", str(direct), "--plot", str(tmp_path / "iou.png"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "iou.png").stat().st_size > 0
    for city in ("aachen", "bremen"):
        run = subprocess.run(
            [sys.executable, "-m", "dfseg.cli.run", "--model", model, os.path.join(root, "leftImg8bit", "val", city),
             "none", "--save-labels", str(tmp_path / "labels" / city)],
            capture_output=True, text=True, timeout=120,
        )
        assert run.returncode == 0, run.stderr
    saved = tmp_path / "saved.json"
    proc = run_eval("--data", root, "--predictions", str(tmp_path / "labels"), "--json", str(saved))
    assert proc.returncode == 0, proc.stderr
    a, b = json.loads(direct.read_text()), json.loads(saved.read_text())
    assert a["confusion_matrix"] == b["confusion_matrix"]
    assert int(np.sum(a["confusion_matrix"])) == int(sum(np.sum(label_to_train_lut()[m] != 255) for m in dataset[1].values()))
