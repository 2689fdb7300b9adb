"""The outputs test_disk_full.py leaves out, on a disk that fills (a 4 MB tmpfs, ``small_disk`` in conftest):
dfseg-export's ONNX file and --bundle, the derived-graph and TensorRT engine caches, safetensors weights,
dfseg-bench's --json/--csv and dfseg-eval's --json/--plot.  Each ends with one line naming the file, exit
code 2 from a command, and nothing partial under a final name; once space is freed the same run succeeds."""

import errno
import json
import os
import re
import subprocess
import sys

import pytest
from test_live_pipeline import tiny_onnx, write_video

from dfseg.fileio import DiskFullError, no_space_as_error, write_atomic

# Exported, this small DF-Seg is about 10 MB (its fixed upsampling kernels): more than the whole small disk.
SEG = "s16.16-16x1_16x1_16x1-wc19.19.19"


def cli(module, *args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", module] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def one_disk_full_line(proc, pattern):
    """The command ended with exit code 2 and one error line, ``PATH: the disk is full`` (PATH matching the
    regular expression ``pattern``)."""
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(r"^\S+: error: {}: the disk is full, [\d.]+ MB left; free space".format(pattern), errors[0]), \
        errors[0]
    return errors[0]


def small_onnx(path):
    """One 3x3 convolution to 19 class logits at 64x48: a model whose derived graphs and engines fit the small
    disk (a DF-Seg's pyramid pooling alone is 10 MB)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.RandomState(0).randn(19, 3, 3, 3).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["logits"], pads=[1, 1, 1, 1])], "small",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 48, 64])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 19, 48, 64])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(top, name), str(folder))
                  for top, _, names in os.walk(str(folder)) for name in names)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_export_onto_a_full_disk_is_one_line_and_leaves_no_file(tmp_path, small_disk, precision):
    out = small_disk / "seg.onnx"
    proc = cli("dfseg.cli.export", SEG, "--size", "64x64", "-o", out, "--precision", precision)
    one_disk_full_line(proc, re.escape(str(out)))
    assert files_under(small_disk) == []  # neither the file nor a temporary one


def test_a_bundle_onto_a_full_disk_is_one_line_and_has_no_manifest(small_disk):
    bundle = small_disk / "bundle"
    proc = cli("dfseg.cli.export", "--bundle", bundle, SEG, "--size", "64x64")
    one_disk_full_line(proc, re.escape(str(bundle)) + r"/\S+\.onnx")
    left = files_under(bundle)
    assert "manifest.json" not in left  # dfseg-bench --bundle refuses it, rather than reading half a bundle
    assert not [name for name in left if os.path.basename(name).startswith(".tmp-")], left


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_a_derived_graph_cache_on_a_full_disk_is_one_line_and_fills_once_space_is_freed(tmp_path, small_disk,
                                                                                        fill_disk, precision):
    model = small_onnx(str(tmp_path / "small.onnx"))
    video = write_video(str(tmp_path / "clip.avi"), frames=3)
    cache = small_disk / "engines"
    filler = fill_disk(small_disk / "filler")
    command = ["dfseg.cli.run", "--model", model, "--precision", precision, "--engine-cache", cache, video, "none"]
    if precision == "int8":
        command += ["--calibration", video, "--calibration-images", "3"]
    proc = cli(*command)
    error = one_disk_full_line(proc, re.escape(str(cache / "graphs")) + r"/small-{}-onnxruntime-[0-9a-f]+\.onnx".format(precision))
    assert files_under(cache) == [], error
    filler.unlink()
    proc = cli(*command)
    assert proc.returncode == 0, proc.stderr
    (graph,) = files_under(cache)
    import onnx

    onnx.checker.check_model(onnx.load(str(cache / graph)))


# The fake's timing cache, engine and sidecar take one 4 KB page each and are written in that order: the
# disk fills at each of them in turn.
@pytest.mark.parametrize("leave_kb", [0, 4, 8], ids=["timing-cache", "engine", "sidecar"])
def test_a_tensorrt_engine_cache_on_a_full_disk_is_one_line_and_builds_once_space_is_freed(tmp_path, small_disk,
                                                                                          fill_disk, leave_kb):
    """The TensorRT fake of tests/fakes builds a real engine file (serialised network, sidecar, timing cache)."""
    from test_jetpack_matrix import device_run

    model = small_onnx(str(tmp_path / "small.onnx"))
    video = write_video(str(tmp_path / "clip.avi"), frames=3)
    cache = small_disk / "engines"
    filler = fill_disk(small_disk / "filler", leave_kb=leave_kb)
    args = ("--model", model, "--backend", "tensorrt", "--engine-cache", cache, video, "none")
    proc = device_run("jetpack-6.2", "dfseg.cli.run", *args, cwd=tmp_path)
    failed = {0: r"timing-\S+\.cache", 4: r"small-\S+\.engine", 8: r"small-\S+\.engine\.json"}[leave_kb]
    one_disk_full_line(proc, re.escape(str(cache)) + "/" + failed)
    # No engine without its sidecar (it would take the space and be built again), no temporary file.
    assert [name for name in files_under(cache) if not name.startswith("timing-")] == []
    filler.unlink()
    proc = device_run("jetpack-6.2", "dfseg.cli.run", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = files_under(cache)
    engines = [name for name in names if name.endswith(".engine")]
    assert len(engines) == 1 and engines[0] + ".json" in names and len(names) == 3, names
    again = device_run("jetpack-6.2", "dfseg.cli.run", *args, cwd=tmp_path)
    assert again.returncode == 0 and "building a TensorRT" not in again.stderr, again.stderr  # a whole cached engine


def test_weights_onto_a_full_disk_are_one_line_and_keep_the_last_whole_file(small_disk, fill_disk):
    torch = pytest.importorskip("torch")
    from dfseg.weights import read_weights, save_weights

    path = str(small_disk / "net.safetensors")
    small = torch.nn.Linear(4, 4)
    save_weights(small, path)
    fill_disk(small_disk / "filler", leave_kb=64)
    with pytest.raises(DiskFullError) as raised:
        save_weights(torch.nn.Linear(512, 512), path)  # 1 MB
    message = str(raised.value)
    assert message.startswith(path + ": the disk is full") and "\n" not in message
    kept = read_weights(path)
    assert torch.equal(kept["weight"], small.weight.detach())  # the last one, whole
    assert files_under(small_disk) == ["filler", "net.safetensors"]


def test_a_trainer_whose_weights_fill_the_disk_stops_with_a_disk_full_error(tmp_path, small_disk, fill_disk):
    pytest.importorskip("torch")
    from test_search_trainer import make_cityscapes_dataset

    from dfseg.arch import Arch
    from dfseg.search.trainer import TrainerConfig, fit
    from dfseg.sizes import Size

    city = make_cityscapes_dataset(tmp_path / "city", counts=(("train", 2), ("val", 2)))
    config = TrainerConfig(str(city), epochs=1, batch_size=2, lr=0.05, input_size=Size(48, 48), threads=1,
                           loader_workers=0)
    weights = small_disk / "trial.safetensors"
    fill_disk(small_disk / "filler", leave_kb=16)
    with pytest.raises(DiskFullError) as raised:
        fit(Arch.from_short("64x1_64x1_64x1-wc3.32.32-k3"), config, weights_out=str(weights))
    assert str(raised.value).startswith(str(weights) + ": the disk is full"), str(raised.value)
    assert files_under(small_disk) == ["filler"]


def test_bench_results_onto_a_full_disk_are_one_line_and_written_once_space_is_freed(tmp_path, small_disk,
                                                                                     fill_disk):
    out_json, out_csv = small_disk / "b.json", small_disk / "b.csv"
    command = ["dfseg.cli.bench", "--models", "64x1_64x1_64x1-wc19.19.19", "--sizes", "64x64", "--backend",
               "onnxruntime", "--threads", "1", "--json", out_json, "--csv", out_csv, "--work-dir", tmp_path / "onnx",
               "--rounds", "2", "--runs-per-round", "1", "--warmup", "0", "--no-progress"]
    filler = fill_disk(small_disk / "filler")
    proc = cli(*command)
    one_disk_full_line(proc, "({}|{})".format(re.escape(str(out_json)), re.escape(str(out_csv))))
    assert files_under(small_disk) == ["filler"]
    filler.unlink()
    proc = cli(*command)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(out_json.read_text())["records"]) == 1
    assert out_csv.read_text().count("\n") == 2


def test_eval_results_onto_a_full_disk_are_one_line_and_leave_no_file(tmp_path, small_disk, fill_disk):
    from test_eval import HEIGHT, WIDTH, make_cityscapes, random_label_ids

    data = str(tmp_path / "city")
    make_cityscapes(data, {("aachen", "aachen_000000_000019"): random_label_ids(0)})
    model = tiny_onnx(str(tmp_path / "tiny.onnx"), WIDTH, HEIGHT)
    out, plot = small_disk / "result.json", small_disk / "iou.png"
    fill_disk(small_disk / "filler")
    proc = cli("dfseg.cli.eval", "--quiet", "--data", data, "--model", model, "--json", out, "--plot", plot)
    one_disk_full_line(proc, "({}|{})".format(re.escape(str(out)), re.escape(str(plot))))
    assert files_under(small_disk) == ["filler"]


def test_a_synthetic_dataset_onto_a_full_disk_is_one_line_and_holds_whole_images_only(small_disk):
    import cv2

    from dfseg.synthetic import write_street_dataset

    root = small_disk / "streets"
    with pytest.raises(DiskFullError) as raised:
        write_street_dataset(str(root), counts=(("train", 400),), size=(256, 128))
    assert re.match(r"{}/\S+\.png: the disk is full".format(re.escape(str(root))), str(raised.value)), str(raised.value)
    names = files_under(root)
    assert names and not [name for name in names if os.path.basename(name).startswith(".tmp-")]
    assert all(cv2.imread(str(root / name), cv2.IMREAD_UNCHANGED) is not None for name in names)  # none truncated


def test_a_stop_request_reaches_the_trial_on_a_full_disk(small_disk, fill_disk):
    from dfseg.search.progress import clear_stop, request_stop, stop_requested

    trial = str(small_disk / "trials" / "00003")
    fill_disk(small_disk / "filler")
    request_stop(trial)  # the search stops a trial early: on a full disk too, and without an error
    assert stop_requested(trial)
    clear_stop(trial)
    assert not stop_requested(trial)


@pytest.mark.parametrize("small_disk", ["size=4m,nr_inodes=4"], indirect=True)
def test_a_disk_without_room_for_one_more_file_is_the_same_one_line(small_disk):
    """Where even a name cannot be added (inodes or directory blocks spent), the temporary file of an atomic
    write cannot be made: the same message, not a traceback."""
    made = 0
    with pytest.raises(OSError):
        while True:
            open(str(small_disk / "f{}".format(made)), "w").close()
            made += 1
    path = str(small_disk / "sub" / "out.json")
    for target in (str(small_disk / "out.json"), path):
        with pytest.raises(DiskFullError) as raised:
            write_atomic(target, b"{}")
        assert str(raised.value).startswith(target + ": the disk is full") and "\n" not in str(raised.value)
    from dfseg.journal import Journal

    journal = str(small_disk / "journal.jsonl")
    with pytest.raises(DiskFullError) as raised:
        Journal(journal).open()
    assert str(raised.value).startswith(journal + ": the disk is full")
    assert len(os.listdir(str(small_disk))) == made  # nothing added


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_quota_error_reads_like_a_full_disk(tmp_path, code):
    """EDQUOT (a user's quota spent) is the same message as ENOSPC; other write errors pass through."""
    path = str(tmp_path / "out.json")
    with pytest.raises(DiskFullError) as raised:
        with no_space_as_error(path):
            raise OSError(code, os.strerror(code), path)
    assert str(raised.value).startswith(path + ": the disk is full, ") and "\n" not in str(raised.value)
    with pytest.raises(PermissionError):
        with no_space_as_error(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
    write_atomic(path, b"{}")  # and the helper still writes where there is room
    assert open(path).read() == "{}"
