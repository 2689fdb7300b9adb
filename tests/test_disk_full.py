"""A full disk under real dfseg-run and dfseg-bench runs: a 4 MB tmpfs (``small_disk`` in conftest)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from test_live_pipeline import tiny_onnx


def noisy_video(path, frames=160, width=320, height=240):
    """Frames that compress badly, so that the output outgrows the small disk."""
    rng = np.random.RandomState(0)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (width, height))
    for _ in range(frames):
        writer.write(rng.randint(0, 255, (height, width, 3)).astype(np.uint8))
    writer.release()
    return path


@pytest.mark.parametrize("extension", [".avi", ".mp4"])
def test_a_video_onto_a_full_disk_is_an_error_and_keeps_a_playable_incomplete_file(tmp_path, small_disk, extension):
    model = tiny_onnx(str(tmp_path / "tiny.onnx"))
    source = noisy_video(str(tmp_path / "noise.avi"))
    out = str(small_disk / ("out" + extension))
    proc = subprocess.run([sys.executable, "-m", "dfseg.cli.run", "--model", model, source, out],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    match = re.search(r"{}: the disk is full, [\d.]+ MB left; stopped after (\d+) frames, which are in (\S+);".format(
        re.escape(out)), errors[0])
    assert match, errors[0]
    assert not os.path.exists(out)  # nothing broken under the final name
    kept = match.group(2)
    assert kept == str(small_disk / ("out.incomplete" + extension))
    capture = cv2.VideoCapture(kept)
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    assert frames == int(match.group(1)) > 0  # the frames it says it kept, all readable
    assert sorted(os.listdir(str(small_disk))) == ["out.incomplete" + extension]  # no hidden partial file left


def test_frames_into_a_full_folder_end_with_one_line_and_no_partial_file(tmp_path, small_disk):
    model = tiny_onnx(str(tmp_path / "tiny.onnx"))
    source = noisy_video(str(tmp_path / "noise.avi"))
    folder = small_disk / "frames"
    proc = subprocess.run([sys.executable, "-m", "dfseg.cli.run", "--model", model, source, str(folder) + "/"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(r"{}/\d+\.png: the disk is full".format(re.escape(str(folder))), errors[0]), errors[0]
    names = sorted(os.listdir(str(folder)))
    assert names and all(re.match(r"^\d+\.png$", name) for name in names)  # whole frames only, no temporary files
    assert all(cv2.imread(str(folder / name)) is not None for name in names)


def test_a_table_run_on_a_full_disk_stops_with_one_line_and_resumes_once_space_is_freed(small_disk, fill_disk):
    # A few KB left: the journal's first records fit, the table does not.
    filler = fill_disk(small_disk / "filler", leave_kb=6)
    table = str(small_disk / "t.json")
    command = [sys.executable, "-m", "dfseg.cli.bench", "--table", table, "--models", "df1", "--no-space",
               "--no-progress"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(r"{}(\.journal\.jsonl)?: the disk is full".format(re.escape(table)), errors[0]), errors[0]
    assert not os.path.exists(table) or json.load(open(table))["complete"] is False  # never a broken table
    filler.unlink()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with open(table) as handle:
        written = json.load(handle)
    assert written["complete"] is True and len(written["entries"]) == 10


@pytest.mark.parametrize("output", ["out.avi", "frames/"])
def test_a_second_run_onto_the_same_output_is_refused_and_the_first_finishes(tmp_path, output):
    """Two real dfseg-run processes: the second gets one line, the first's output is whole."""
    from signals import like_a_terminal
    from test_live_pipeline import write_video

    model = tiny_onnx(str(tmp_path / "tiny.onnx"))
    video = write_video(str(tmp_path / "clip.avi"))
    target = str(tmp_path / output)
    first = subprocess.Popen([sys.executable, "-m", "dfseg.cli.run", "--model", model, video, target, "--input-loop",
                              "-1"], stderr=subprocess.PIPE, text=True, preexec_fn=like_a_terminal)
    try:
        started = ""
        while "->" not in started:  # its outputs are open once it names them
            started = first.stderr.readline()
            assert started, "the first run ended early"
        claimed = target.rstrip("/") if output.endswith("/") else str(tmp_path / ".out.partial.avi")
        for _ in range(600):
            if os.path.exists(claimed):
                break
            time.sleep(0.05)
        time.sleep(1.0)  # the pipeline opens its outputs right after the model; let it write frames
        second = subprocess.run([sys.executable, "-m", "dfseg.cli.run", "--model", model, video, target],
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr
        errors = [line for line in second.stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and "another dfseg process is writing this" in errors[0], second.stderr
        assert target.rstrip("/") in errors[0]
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert first.returncode == 130  # ended by Ctrl-C, its output finalised
    if output.endswith("/"):
        names = os.listdir(target)
        assert names and all(cv2.imread(os.path.join(target, n)) is not None for n in names)
    else:
        capture = cv2.VideoCapture(target)
        assert capture.isOpened() and capture.read()[0]
        capture.release()
        assert not os.path.exists(str(tmp_path / ".out.partial.avi"))


def test_a_checkpoint_onto_a_full_disk_is_one_line_and_keeps_the_last_whole_one(small_disk, fill_disk):
    torch = pytest.importorskip("torch")
    from dfseg.fileio import DiskFullError
    from dfseg.search.training.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint

    path = checkpoint_path(str(small_disk / "trial"))
    save_checkpoint(path, {"fingerprint": "a", "epoch": 1, "weights": torch.ones(8)})
    fill_disk(small_disk / "filler", leave_kb=64)
    with pytest.raises(DiskFullError) as raised:
        save_checkpoint(path, {"fingerprint": "a", "epoch": 2, "weights": torch.ones(1 << 18)})  # 1 MB
    message = str(raised.value)
    assert message.startswith(path + ": the disk is full") and "\n" not in message
    state = load_checkpoint(path, "a")
    assert state["epoch"] == 1 and torch.equal(state["weights"], torch.ones(8))  # the last one, whole
    assert os.listdir(os.path.dirname(path)) == ["checkpoint.pt"]  # no temporary file left


@pytest.mark.parametrize("devices", [1, 2])
def test_a_trainer_whose_checkpoint_fills_the_disk_stops_with_a_disk_full_error(tmp_path, small_disk, fill_disk,
                                                                               devices):
    """The built-in trainer, in one process or as two data-parallel ranks: the full disk arrives as
    ``DiskFullError`` (which stops a search; the trial runs again on --resume), never as a failed trial."""
    pytest.importorskip("torch")
    from test_search_trainer import make_cityscapes_dataset

    from dfseg.arch import Arch
    from dfseg.fileio import DiskFullError
    from dfseg.search.trainer import TrainerConfig, fit
    from dfseg.sizes import Size

    city = make_cityscapes_dataset(tmp_path / "city", counts=(("train", 4), ("val", 2)))
    config = TrainerConfig(str(city), epochs=2, batch_size=2, lr=0.05, input_size=Size(48, 48), threads=1,
                           loader_workers=0, devices=devices)
    trial = small_disk / "trials" / "00000"
    fill_disk(small_disk / "filler", leave_kb=32)  # the log and progress files fit, a checkpoint does not
    with pytest.raises(DiskFullError) as raised:
        fit(Arch.from_short("64x1_64x1_64x1-wc3.32.32-k3"), config, trial_dir=str(trial))
    assert str(raised.value).startswith(str(trial / "checkpoint.pt") + ": the disk is full"), str(raised.value)
    assert "\n" not in str(raised.value)
    assert sorted(os.listdir(str(trial))) == ["progress.jsonl", "train.log"]  # no checkpoint, whole or partial


def test_a_plot_onto_a_full_disk_is_one_line_and_keeps_the_last_whole_one(small_disk, fill_disk):
    from dfseg.fileio import DiskFullError
    from dfseg.plots import pyplot, save_png

    def figure(points):
        made, axis = pyplot().subplots(figsize=(6, 4))
        axis.plot(np.random.RandomState(0).rand(points))
        return made

    path = str(small_disk / "tradeoff.png")
    save_png(figure(10), path)
    before = open(path, "rb").read()
    fill_disk(small_disk / "filler")
    with pytest.raises(DiskFullError) as raised:
        save_png(figure(1000), path)
    assert str(raised.value).startswith(path + ": the disk is full") and "\n" not in str(raised.value)
    assert open(path, "rb").read() == before
    assert sorted(os.listdir(str(small_disk))) == ["filler", "tradeoff.png"]
