"""A full disk under a real dfseg-run: a 4 MB tmpfs (mounting needs root, as CI runs; skipped elsewhere)."""

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


@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here ({}); CI runs as root".format(proc.stderr.strip()))
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


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


def test_a_table_run_on_a_full_disk_stops_with_one_line_and_resumes_once_space_is_freed(small_disk):
    filler = small_disk / "filler"
    with open(str(filler), "wb") as handle:  # leave a few KB: the journal's first records fit, the table does not
        handle.write(b"\0" * (4096 - 6) * 1024)
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
