"""Generated street scenes: every class present, Cityscapes layout that the trainer and dfseg-eval read."""

import os

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from dfseg.search.trainer import check_dataset  # noqa: E402
from dfseg.synthetic import CLASSES, LABEL_IDS, street_scene, write_street_dataset  # noqa: E402


def test_scenes_vary_and_hold_every_class():
    rng = np.random.default_rng(0)
    scenes = [street_scene(128, 64, rng) for _ in range(6)]
    for image, label in scenes:
        assert image.shape == (64, 128, 3) and image.dtype == np.uint8 and label.shape == (64, 128)
        assert set(np.unique(label)) <= set(CLASSES.values())
        assert {CLASSES["sky"], CLASSES["road"], CLASSES["building"]} <= set(np.unique(label))
    horizons = {int(np.argmax((label == CLASSES["road"]).any(axis=1))) for _, label in scenes}
    assert len(horizons) >= 3  # the geometry varies
    means = [image.mean() for image, _ in scenes]
    assert max(means) - min(means) > 5  # and so does the lighting


def test_dataset_is_cityscapes_format(tmp_path):
    root = str(tmp_path / "street")
    assert write_street_dataset(root, (("train", 3), ("val", 2)), size=(96, 48), seed=1) == {"train": 3, "val": 2}
    check_dataset(root)
    labels = sorted(os.listdir(os.path.join(root, "gtFine", "val", "synthetic")))
    train_ids = cv2.imread(os.path.join(root, "gtFine", "val", "synthetic", labels[1]), cv2.IMREAD_GRAYSCALE)
    label_ids = cv2.imread(os.path.join(root, "gtFine", "val", "synthetic", labels[0]), cv2.IMREAD_GRAYSCALE)
    assert labels[0].endswith("_labelIds.png") and labels[1].endswith("_labelTrainIds.png")
    for train_id, label_id in LABEL_IDS.items():
        assert np.array_equal(train_ids == train_id, label_ids == label_id)
