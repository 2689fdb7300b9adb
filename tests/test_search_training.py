"""The built-in trainer at dataset scale: streamed Cityscapes labelIds, the augmentation recipe, bad input
refused before the first trial, checkpoints that survive a real SIGKILL, per-epoch progress in the
journal (also from --train-cmd's {progress}), mixed precision and Gloo data parallelism."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from search_fixtures import write_table
from test_search_trainer import make_cityscapes_dataset

from dfseg.arch import Arch
from dfseg.cityscapes import IGNORE_LABEL, label_to_train_lut
from dfseg.cli.search import main
from dfseg.errors import UserError
from dfseg.search.trainer import TrainerConfig, fit
from dfseg.search.training.data import SegmentationDataset, check_dataset
from dfseg.search.training.recipe import Recipe, classification_train, classification_val, segmentation_train
from dfseg.sizes import Size

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

SEG = "64x1_64x1_64x1-wc3.32.32-k3"
STREET_SEG = "64x1_64x1_64x1-wc3.32.32-k14"  # synthetic streets: trainIds up to 13 (car)


def street_set(root, counts=(("train", 4), ("val", 2)), size=(64, 32), drop_train_ids=True):
    from dfseg.synthetic import write_street_dataset

    write_street_dataset(str(root), counts=counts, size=size, seed=3)
    if drop_train_ids:  # as a stock Cityscapes download: labelIds only
        for folder, _, names in os.walk(root / "gtFine"):
            for name in names:
                if name.endswith("_labelTrainIds.png"):
                    os.unlink(os.path.join(folder, name))
    return root


def test_label_ids_are_mapped_by_the_official_table(tmp_path):
    with_both = street_set(tmp_path / "both", drop_train_ids=False)
    stock = street_set(tmp_path / "stock")
    size = Size(64, 32)
    train_ids = SegmentationDataset(str(with_both), "val", size, 14, train=False)
    label_ids = SegmentationDataset(str(stock), "val", size, 14, train=False)
    assert (train_ids.kind, label_ids.kind) == ("trainIds", "labelIds")
    for index in range(len(train_ids)):
        expected, mapped = train_ids[index][1].numpy(), label_ids[index][1].numpy()
        assert np.array_equal(expected, mapped) and {0, 2, 10} <= set(np.unique(mapped))
    assert label_to_train_lut()[26] == 13 and label_to_train_lut()[3] == IGNORE_LABEL


def test_segmentation_recipe_scales_crops_flips_and_keeps_ignore():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    label = np.tile(np.arange(60, dtype=np.uint8) % 5, (40, 1))
    label[:3] = IGNORE_LABEL
    recipe = Recipe(scale=(0.5, 2.0), crop=Size(48, 32))
    seen_pad = seen_flip = False
    for index in range(40):
        sample_rng = np.random.default_rng([1, 0, index])
        out_image, out_label = segmentation_train(image, label, Size(60, 40), recipe, (1.0, 2.0, 3.0), sample_rng)
        assert out_image.shape == (32, 48, 3) and out_label.shape == (32, 48)
        assert set(np.unique(out_label)) <= set(range(5)) | {IGNORE_LABEL}  # nearest neighbour: no new ids
        padded = np.all(out_image == (1, 2, 3), axis=2)
        if padded.any():
            seen_pad = True
            assert np.all(out_label[padded] == IGNORE_LABEL)
        rows = out_label[(out_label != IGNORE_LABEL).all(axis=1)]
        if len(rows) and out_label.shape[1] > 1:
            steps = np.diff(rows[0].astype(int)) % 5
            seen_flip |= bool((steps == 4).sum() > (steps == 1).sum())
        again = segmentation_train(image, label, Size(60, 40), recipe, (1.0, 2.0, 3.0),
                                   np.random.default_rng([1, 0, index]))
        assert np.array_equal(again[1], out_label)  # seeded by (seed, epoch, sample): the same in any process
    assert seen_pad and seen_flip


def test_classification_recipe_crops_to_the_input_size():
    image = np.random.default_rng(1).integers(0, 255, (50, 80, 3), dtype=np.uint8)
    recipe = Recipe()
    crops = [classification_train(image, Size(32, 24), recipe, np.random.default_rng(i)) for i in range(5)]
    assert all(c.shape == (24, 32, 3) for c in crops)
    assert len({c.tobytes() for c in crops}) == 5
    assert classification_val(image, Size(32, 24), recipe).shape == (24, 32, 3)


def search_argv(table, data, out, *extra):
    return ["--table", str(table), "--trainer", str(data), "--epochs", "1", "--batch-size", "2", "--widths", "64,128",
            "--blocks", "1,1,1-2", "--size", "64x32", "--decoder", "14,32,32", "--classes", "14",
            "--max-trials", "1", "--out", str(out), "--quiet", "--no-plots", "--loader-workers", "0", *extra]


def break_label_size(root):
    path = sorted((root / "gtFine" / "train" / "synthetic").glob("*_labelIds.png"))[1]
    cv2.imwrite(str(path), cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)[:20])
    return path.name, r"label is 64x20 but its image is 64x32"


def break_label_id(root):
    path = sorted((root / "gtFine" / "val" / "synthetic").glob("*_labelIds.png"))[0]
    label = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    label[4, 5] = 40
    cv2.imwrite(str(path), label)
    return path.name, r"labelId 40 is outside the Cityscapes table \(0..33\)"


def break_image(root):
    path = sorted((root / "leftImg8bit" / "val" / "synthetic").glob("*.png"))[1]
    path.write_bytes(path.read_bytes()[:60])  # cut short, as an interrupted copy leaves it
    return path.name, r"unreadable image"


def break_split(root):
    import shutil

    shutil.rmtree(root / "leftImg8bit" / "val")
    return "", r"split leftImg8bit/val/ is missing"


@pytest.mark.parametrize("breaker", [break_label_size, break_label_id, break_image, break_split])
def test_bad_data_is_refused_before_the_first_trial_and_keeps_the_journal(tmp_path, capsys, breaker):
    table = tmp_path / "t.json"
    write_table(table, widths=(64, 128), blocks_per_stage=((1, 1), (1, 1), (1, 2)), input_size=Size(64, 32),
                decoder=(14, 32, 32), classes=14)
    data = street_set(tmp_path / "streets")
    out = tmp_path / "out"
    assert main(search_argv(table, data, out)) == 0
    capsys.readouterr()
    journal = (out / "journal.jsonl").read_bytes()
    name, message = breaker(data)
    code = main(search_argv(table, data, out, "--resume", "--max-trials", "2"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert name in err[0] and re.search(message, err[0]), err[0]
    assert (out / "journal.jsonl").read_bytes() == journal  # nothing journalled is lost or added
    assert not (out / "trials" / "00001").exists()


def test_more_gpus_per_trial_than_the_machine_has_is_refused(tmp_path, capsys):
    table = tmp_path / "t.json"
    write_table(table, widths=(64, 128), blocks_per_stage=((1, 1), (1, 1), (1, 2)), input_size=Size(64, 32),
                decoder=(14, 32, 32), classes=14)
    data = street_set(tmp_path / "streets")
    want = max(2, torch.cuda.device_count() + 1)  # one GPU on a machine without: --device cuda's own error
    code = main(search_argv(table, data, tmp_path / "out", "--device", "cuda", "--gpus-per-trial", str(want)))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--gpus-per-trial {}: this machine has".format(want) in err[0], err
    assert not (tmp_path / "out" / "journal.jsonl").exists()


def test_check_dataset_counts_the_splits(tmp_path):
    data = street_set(tmp_path / "streets", counts=(("train", 3), ("val", 2)))
    info = check_dataset(str(data), classes=14, workers=2)
    assert (info.segmentation, info.train, info.val) == (True, 3, 2)
    with pytest.raises(UserError, match=r"label 13 does not fit the model's 3 classes"):
        check_dataset(str(data), classes=3)


def test_data_parallel_gloo_matches_one_process(tmp_path):
    """2 Gloo processes train what one process trains on the same global batch and seed.  float64 (the
    computation without float32 rounding): every loss within 1e-9 (measured 1e-13 at worst).  float32:
    the first three losses within 1e-3, at a learning rate low enough that this holds on any CPU.  Later
    float32 losses part legitimately: a ReLU input within rounding distance of 0 lands on the other side
    when the sums run in another order (2 processes, or 2 threads in one process, do the same), and that
    changes the gradient by a whole pixel's share, up to 1e-3 of the next loss on this small model at lr
    0.05; benchmarks/bench_trainer.py measures it (and that with SiLU for ReLU the runs stay within 1e-6)."""
    city = make_cityscapes_dataset(tmp_path / "city", counts=(("train", 8), ("val", 2)))
    config = TrainerConfig(str(city), epochs=2, batch_size=4, lr=0.05, input_size=Size(48, 48), threads=1,
                           loader_workers=0, dtype="float64")
    one = fit(Arch.from_short(SEG), config)
    two = fit(Arch.from_short(SEG), config._replace(devices=2))
    assert len(one.losses) == len(two.losses) == 4
    assert np.allclose(two.losses, one.losses, rtol=1e-9, atol=0), (one.losses, two.losses)
    assert two.score == pytest.approx(one.score, abs=0.5)
    config32 = config._replace(dtype="float32", lr=0.01)
    one32 = fit(Arch.from_short(SEG), config32).losses[:3]
    two32 = fit(Arch.from_short(SEG), config32._replace(devices=2)).losses[:3]
    assert np.allclose(two32, one32, rtol=1e-3, atol=0), (one32, two32)
    with pytest.raises(UserError, match=r"--batch-size 3: the global batch must split evenly over 2"):
        fit(Arch.from_short(SEG), config._replace(devices=2, batch_size=3))


def test_mixed_precision_and_channels_last_train(tmp_path):
    city = make_cityscapes_dataset(tmp_path / "city", counts=(("train", 8), ("val", 2)))
    config = TrainerConfig(str(city), epochs=6, batch_size=4, lr=0.05, input_size=Size(48, 48), threads=1,
                           loader_workers=0, amp=True, channels_last=True)
    result = fit(Arch.from_short(SEG), config)
    assert np.isfinite(result.losses).all() and np.mean(result.losses[-2:]) < 0.8 * np.mean(result.losses[:2])
    assert [r["epoch"] for r in result.progress] == list(range(1, 7)) and result.progress[-1]["accuracy"] is not None


KILLABLE = r'''
import sys
from dfseg.cli.search import main
sys.exit(main(sys.argv[1:]))
'''


def run_search(argv, tmp_path):
    script = tmp_path / "search.py"
    script.write_text(KILLABLE)
    return subprocess.Popen([sys.executable, str(script), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, env=dict(os.environ, PYTHONPATH=os.getcwd()))


def trial_rows(out):
    return [(r["trial"], r["arch"], r["accuracy"], r["status"]) for r in csv.DictReader(open(out / "trials.csv"))]


def progress_records(out):
    """The journal's progress records without their timings."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in map(json.loads, open(out / "journal.jsonl"))
            if r["type"] == "progress"]


def test_a_trial_killed_mid_epoch_resumes_from_its_checkpoint(tmp_path):
    table = tmp_path / "t.json"
    write_table(table, widths=(64, 128), blocks_per_stage=((1, 1), (1, 1), (1, 2)), input_size=Size(64, 32),
                decoder=(14, 32, 32), classes=14)
    data = street_set(tmp_path / "streets", counts=(("train", 24), ("val", 2)))
    extra = ["--epochs", "3", "--loader-workers", "1", "--val-every", "1"]
    straight = run_search(search_argv(table, data, tmp_path / "straight", *extra), tmp_path)
    assert straight.wait(timeout=300) == 0, straight.stderr.read()
    out = tmp_path / "killed"
    killed = run_search(search_argv(table, data, out, *extra), tmp_path)
    progress = out / "trials" / "00000" / "progress.jsonl"
    deadline = time.monotonic() + 240
    while not (progress.exists() and progress.read_text().count("\n") >= 1):
        assert killed.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(float(np.random.default_rng().uniform(0, 0.05)))  # somewhere in epoch 2
    os.killpg(killed.pid, signal.SIGKILL)  # the search, its loader workers, everything
    killed.wait()
    epochs_done = progress.read_text().count("\n")
    assert killed.returncode == -signal.SIGKILL and 1 <= epochs_done < 3, epochs_done
    assert not (out / "trials.csv").exists() or trial_rows(out) == []
    resumed = run_search(search_argv(table, data, out, *extra, "--resume"), tmp_path)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    log = (out / "trials" / "00000" / "train.log").read_text()
    assert "resumed after epoch {} of 3".format(epochs_done) in log
    assert trial_rows(out) == trial_rows(tmp_path / "straight")  # the same final mIoU
    assert progress_records(out) == progress_records(tmp_path / "straight")
    assert [r["epoch"] for r in progress_records(out)] == [1, 2, 3]
    assert all(r["accuracy"] is not None and r["loss"] > 0 for r in progress_records(out))


PROGRESS_SCRIPT = r'''
import json, sys
arch_path, result_path, progress_path = sys.argv[1:4]
for epoch in range(1, 4):
    with open(progress_path, "a") as log:
        log.write(json.dumps({"epoch": epoch, "epochs": 3, "accuracy": 10.0 * epoch}) + "\n")
json.dump({"accuracy": 30.0}, open(result_path, "w"))
'''


def test_train_cmd_progress_goes_to_the_journal(tmp_path):
    table = tmp_path / "t.json"
    write_table(table)
    script = tmp_path / "train.py"
    script.write_text(PROGRESS_SCRIPT)
    out = tmp_path / "out"
    assert main(["--table", str(table), "--train-cmd", "{} {} {{arch}} {{result}} {{progress}}".format(
        sys.executable, script), "--max-trials", "2", "--out", str(out), "--quiet", "--no-plots"]) == 0
    records = progress_records(out)
    assert [(r["trial"], r["epoch"], r["accuracy"]) for r in records] == [
        (t, e, 10.0 * e) for t in (0, 1) for e in (1, 2, 3)]
    # Replaying the journal keeps the curves (and a resumed search accepts the records).
    assert main(["--table", str(table), "--train-cmd", "{} {} {{arch}} {{result}} {{progress}}".format(
        sys.executable, script), "--max-trials", "3", "--out", str(out), "--quiet", "--no-plots", "--resume"]) == 0
    assert len(progress_records(out)) == 9


@pytest.mark.parametrize("device, message", [
    ("tpu:7", "--device 'tpu:7': the built-in trainer runs on cpu, cuda or cuda:N"),
    ("cpu:1", "--device 'cpu:1': the built-in trainer runs on cpu, cuda or cuda:N"),
    ("cuda:x", "--device 'cuda:x': the built-in trainer runs on cpu, cuda or cuda:N"),
    ("cuda:{beyond}", "--device cuda:{beyond}: "),  # no GPU here: none; else one past the last
])
def test_a_device_the_trainer_cannot_use_is_refused_before_the_first_trial(tmp_path, capsys, device, message):
    table = tmp_path / "t.json"
    write_table(table, widths=(64, 128), blocks_per_stage=((1, 1), (1, 1), (1, 2)), input_size=Size(64, 32),
                decoder=(14, 32, 32), classes=14)
    data = street_set(tmp_path / "streets")
    beyond = torch.cuda.device_count()
    code = main(search_argv(table, data, tmp_path / "out", "--device", device.format(beyond=beyond)))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("dfseg-search: error: " + message.format(beyond=beyond)), err
    assert not (tmp_path / "out").exists()


def test_a_gpu_number_with_several_processes_per_trial_is_refused():
    """Rank r of a trial trains on GPU r whatever --device says, so a GPU number there would be ignored."""
    from dfseg.search.training.distributed import check_device

    with pytest.raises(UserError, match=r"^--device cuda:1: a trial of 2 processes trains on GPUs 0..1"):
        check_device("cuda:1", 2)
    assert check_device("cuda:1") == 1 and check_device("cuda") is None and check_device("cpu") is None
