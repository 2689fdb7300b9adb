"""The built-in torch trainer on tiny generated datasets (CPU), alone and driven by dfseg-search."""

import csv
import os

import numpy as np
import pytest
from search_fixtures import write_table

from dfseg.arch import Arch
from dfseg.cli.search import main
from dfseg.errors import UserError
from dfseg.search.trainer import TrainerConfig, TrainerEvaluator, fit, learning_rate
from dfseg.sizes import Size

torch = pytest.importorskip("torch")


COLOURS_BGR = {"blue": (200, 60, 40), "green": (40, 180, 50), "red": (40, 40, 200), "gray": (128, 128, 128)}
SKY, ROAD, CAR = 0, 1, 2
STREET_BGR = np.asarray([(230, 180, 120), (90, 90, 90), (40, 40, 190)], np.float64)  # indexed by class


def make_folder_dataset(root, per_class=6, size=32, seed=0):
    """Four colour classes, every image with its own shade and noise."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("val", 3)):
        for label, bgr in COLOURS_BGR.items():
            os.makedirs(root / split / label, exist_ok=True)
            for i in range(count):
                mean = np.asarray(bgr) * rng.uniform(0.7, 1.3)
                image = np.clip(rng.normal(mean, 25, size=(size, size, 3)), 0, 255).astype(np.uint8)
                np.save(root / split / label / "{}.npy".format(i), image)
    return root


def make_cityscapes_dataset(root, size=48, seed=1, counts=(("train", 8), ("val", 4))):
    """Three classes: sky above a horizon at a random height, road below it, and a car (a rectangle of
    random size and place) on the road; each image has its own lighting and noise."""
    rng = np.random.default_rng(seed)
    for split, count in counts:
        os.makedirs(root / "leftImg8bit" / split / "town", exist_ok=True)
        os.makedirs(root / "gtFine" / split / "town", exist_ok=True)
        for i in range(count):
            label = np.full((size, size), ROAD, np.uint8)
            horizon = int(rng.integers(size // 4, 3 * size // 4))
            label[:horizon] = SKY
            height, width = (int(v) for v in rng.integers(size // 8, size // 3, 2))
            top = int(rng.integers(horizon, size - height + 1)) if horizon < size - height else size - height
            left = int(rng.integers(0, size - width + 1))
            label[top:top + height, left:left + width] = CAR
            lit = STREET_BGR * rng.uniform(0.75, 1.25)
            image = np.clip(lit[label] + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
            label[0] = 255  # an ignored row, as Cityscapes' ego-vehicle and border pixels are
            np.save(root / "leftImg8bit" / split / "town" / "town_{}_leftImg8bit.npy".format(i), image)
            np.save(root / "gtFine" / split / "town" / "town_{}_gtFine_labelTrainIds.npy".format(i), label)
    return root


def assert_learned(untrained, trained, epochs, min_gain):
    """Robust signs of learning: the last epoch's mean loss is far below the first's, and the score
    beats the same seed's untrained model by a wide margin (margins measured at 2-3x these)."""
    steps = len(trained.losses) // epochs
    first, last = np.mean(trained.losses[:steps]), np.mean(trained.losses[-steps:])
    assert untrained.losses == [] and len(trained.losses) == steps * epochs
    assert last < 0.4 * first, (first, last)
    assert trained.score >= untrained.score + min_gain, (untrained.score, trained.score)


def test_schedule_warms_up_then_decays_with_power_two():
    config = TrainerConfig(data=".", lr=0.8, warmup_fraction=0.1)
    rates = [learning_rate(config, step, 100) for step in range(100)]
    assert rates[0] == pytest.approx(0.08) and rates[9] == pytest.approx(0.8)
    assert rates[10] == pytest.approx(0.8) and rates[55] == pytest.approx(0.8 * 0.5 ** 2)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))


def test_classification_training_learns(tmp_path):
    folder = str(make_folder_dataset(tmp_path / "folder"))
    arch = Arch.from_short("64x1_64x1_64x1")
    config = TrainerConfig(folder, epochs=12, batch_size=8, lr=0.02, input_size=Size(32, 32), threads=1)
    assert_learned(fit(arch, config._replace(epochs=0)), fit(arch, config), 12, min_gain=40.0)


def test_segmentation_training_learns(tmp_path):
    city = str(make_cityscapes_dataset(tmp_path / "city"))
    seg = Arch.from_short("64x1_64x1_64x1-wc3.32.32-k3")
    assert seg.classes == 3
    config = TrainerConfig(city, epochs=60, batch_size=4, lr=0.05, input_size=Size(48, 48), threads=1)
    assert_learned(fit(seg, config._replace(epochs=0)), fit(seg, config), 60, min_gain=20.0)


def test_a_segmentation_set_cannot_train_a_backbone(tmp_path):
    city = str(make_cityscapes_dataset(tmp_path / "city", counts=(("train", 2), ("val", 1))))
    with pytest.raises(UserError, match="segmentation"):
        TrainerEvaluator(TrainerConfig(city, batch_size=2, input_size=Size(48, 48)))(
            type("T", (), {"arch": Arch.from_short("64x1_64x1_64x1")})(), str(tmp_path))


@pytest.mark.parametrize("value, fix", [(3, r"at least 4 classes \(-k4\)"), (200, r"at least 201 classes")])
def test_a_label_outside_the_class_count_is_refused_by_name(tmp_path, value, fix):
    city = make_cityscapes_dataset(tmp_path / "city", counts=(("train", 2), ("val", 1)))
    bad = city / "gtFine" / "val" / "town" / "town_0_gtFine_labelTrainIds.npy"
    label = np.load(bad)
    label[5, 7] = value
    np.save(bad, label)
    config = TrainerConfig(str(city), epochs=1, batch_size=2, input_size=Size(48, 48))
    with pytest.raises(UserError, match=r"town_0_gtFine_labelTrainIds.npy: label {} does not fit the model's 3 "
                                        r"classes .*{}".format(value, fix)) as raised:
        fit(Arch.from_short("64x1_64x1_64x1-wc3.32.32-k3"), config)
    assert "\n" not in str(raised.value)


def test_a_label_of_another_size_than_its_image_is_refused(tmp_path):
    city = make_cityscapes_dataset(tmp_path / "city", counts=(("train", 2), ("val", 1)))
    bad = city / "gtFine" / "train" / "town" / "town_1_gtFine_labelTrainIds.npy"
    np.save(bad, np.load(bad)[:40])
    with pytest.raises(UserError, match=r"town_1_gtFine_labelTrainIds.npy: label is 48x40 but its image is 48x48"):
        fit(Arch.from_short("64x1_64x1_64x1-wc3.32.32-k3"), TrainerConfig(str(city), batch_size=2,
                                                                            input_size=Size(48, 48)))


def test_a_val_class_folder_missing_from_train_is_refused(tmp_path):
    folder = make_folder_dataset(tmp_path / "folder", per_class=2)
    os.makedirs(folder / "val" / "purple")
    with pytest.raises(UserError, match=r"class folder 'purple' has no counterpart in .*train"):
        fit(Arch.from_short("64x1_64x1_64x1"), TrainerConfig(str(folder), input_size=Size(32, 32)))


def test_search_with_the_builtin_trainer(tmp_path):
    table = tmp_path / "t.json"
    write_table(table, widths=(64, 128), blocks_per_stage=((1, 1), (1, 1), (1, 2)), input_size=Size(32, 32))
    folder = make_folder_dataset(tmp_path / "folder", per_class=4)
    out = tmp_path / "out"
    assert main(["--table", str(table), "--trainer", str(folder), "--epochs", "1", "--batch-size", "4",
                 "--widths", "64,128", "--blocks", "1,1,1-2", "--size", "32x32", "--max-trials", "2",
                 "--out", str(out), "--quiet", "--no-plots"]) == 0
    rows = list(csv.DictReader(open(out / "trials.csv")))
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows), rows
