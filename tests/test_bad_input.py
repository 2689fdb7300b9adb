"""Bad input to every command, table-driven: each case runs the real console entry point in a
subprocess and asserts exit code 2, exactly one stderr line naming the problem (and for usage
errors the --help pointer), no traceback, and that no input or existing output changed."""

import hashlib
import os
import signal
import socket
import subprocess
import sys

import cv2
import numpy as np
import pytest
from search_fixtures import write_table
from test_live_pipeline import count_frames, tiny_onnx, write_video


class Payload:
    """A Python object in a .pt file: loading it would run pickle's code."""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    tiny_onnx(str(root / "model.onnx"))
    (root / "empty.onnx").write_bytes(b"")
    from onnx import TensorProto, helper, save

    # A valid ONNX model that ONNX Runtime loads, but whose input no image can feed.
    graph = helper.make_graph([helper.make_node("Cast", ["input"], ["output"], to=TensorProto.INT32)], "g",
                              [helper.make_tensor_value_info("input", TensorProto.STRING, [1, 3, 48, 64])],
                              [helper.make_tensor_value_info("output", TensorProto.INT32, [1, 3, 48, 64])])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(root / "string-input.onnx"))
    write_video(str(root / "in.mp4"))
    os.makedirs(root / "frames")
    rng = np.random.RandomState(0)
    for name in ("a", "b"):
        cv2.imwrite(str(root / "frames" / (name + ".png")), rng.randint(0, 255, (48, 64, 3)).astype(np.uint8))
    write_table(root / "table.json")
    import json

    broken = json.loads((root / "table.json").read_text())
    broken["complete"] = "no"
    (root / "complete-no.json").write_text(json.dumps(broken))
    (root / "notes.txt").write_text("a regular file where a folder is expected\n")
    (root / "binary.json").write_bytes(bytes(range(256)) * 4)
    (root / "existing.json").write_text('{"kept": true}\n')
    (root / "number.json.journal.jsonl").write_text("5\n")  # valid JSON, not a record
    (root / "noise.json.journal.jsonl").write_bytes(bytes(range(14, 256)))  # no newline: not a torn record either
    (root / "deep.json").write_text("[" * 100000)
    (root / "foreign.json.journal.jsonl").write_text('{"type": "header", "schema": "dfseg.latency-table/1", '
                                                     '"backend": "tensorrt"}\n')  # another backend's unfinished table
    (root / "huge-classes.json").write_text('{"stages": [[64], [128], [256]], "decoder": [19, 32, 32], '
                                            '"classes": 2000000000}')
    city = root / "city"
    for kind, name, value in (("leftImg8bit", "leftImg8bit", 80), ("gtFine", "gtFine_labelTrainIds", 100)):
        os.makedirs(city / kind / "val" / "aachen")
        image = np.full((48, 64, 3) if kind == "leftImg8bit" else (48, 64), value, np.uint8)
        cv2.imwrite(str(city / kind / "val" / "aachen" / "aachen_000000_000019_{}.png".format(name)), image)
    (root / "w.safetensors").write_bytes(b"not really weights")
    (root / "acc.csv").write_text("arch,accuracy\n64x1_64x1_64x1,50\n")
    (root / "garbage.pt").write_bytes(b"not a torch file")
    import torch

    torch.save({"weight": Payload()}, str(root / "objects.pt"))  # a pickled Python object
    import pickle

    with open(str(root / "plain-pickle.pt"), "wb") as handle:  # not torch.save's format: torch warns on the way
        pickle.dump({"weight": Payload()}, handle, protocol=4)
    os.makedirs(root / "empty")
    os.makedirs(root / "stems")  # two images of one name: one file in a folder output
    cv2.imwrite(str(root / "stems" / "a.png"), np.zeros((48, 64, 3), np.uint8))
    cv2.imwrite(str(root / "stems" / "a.jpg"), np.full((48, 64, 3), 200, np.uint8))
    os.makedirs(root / "badframes")
    (root / "badframes" / "a.png").write_bytes(b"")  # empty, then text: images only by their names
    (root / "badframes" / "b.png").write_text("text, not a PNG\n")
    video = write_video(str(root / "whole.avi"))
    with open(video, "rb") as handle:
        (root / "trunc.avi").write_bytes(handle.read()[:600])  # cut inside its headers
    os.unlink(video)
    from dfseg.convert.caffe_schema import message_classes

    net = message_classes()[0](name="damaged")
    blob = net.layer.add(name="conv1", type="Convolution").blobs.add()
    blob.shape.dim.extend([-2, -2])
    blob.data.extend([0.0] * 4)
    (root / "negative.caffemodel").write_bytes(net.SerializeToString())
    blob.ClearField("shape")
    blob.shape.dim.extend([2 ** 40, 2 ** 40])
    del blob.data[:]
    (root / "huge.caffemodel").write_bytes(net.SerializeToString())
    # Valid ONNX models that load, but that no frame can run through: refused when loaded, not at the first frame
    image = [1, 3, 48, 64]
    for name, node, inputs, outputs in (
            ("batch2", "Identity", [2, 3, 48, 64], [("output", [2, 3, 48, 64])]),
            ("no-pixels", "Identity", [1, 3, 0, 0], [("output", [1, 3, 0, 0])]),
            ("no-output", "Identity", image, []),
            ("classifier", "ReduceMean", image, [("output", [1, 3])])):
        attributes = {"axes": [2, 3], "keepdims": 0} if node == "ReduceMean" else {}
        graph = helper.make_graph([helper.make_node(node, ["input"], ["output"], **attributes)], "g",
                                  [helper.make_tensor_value_info("input", TensorProto.FLOAT, inputs)],
                                  [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in outputs])
        save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(root / (name + ".onnx")))
    for name, classes, image in (("twoclass", ("a", "b"), None), ("oneclass", ("cat",), None),
                                 ("npy-flat", ("a", "b"), np.zeros(32, np.uint8)),
                                 ("npy-float", ("a", "b"), np.zeros((32, 32, 3), np.float64))):
        for split in ("train", "val"):  # --trainer image folders of .npy images
            for name_ in classes:
                os.makedirs(root / name / split / name_)
                np.save(str(root / name / split / name_ / "0.npy"),
                        rng.randint(0, 255, (32, 32, 3)).astype(np.uint8) if image is None else image)
    # Cityscapes-format sets whose labels OpenCV's grey read would turn into other ids without an error (a
    # colour label into a blend of its channels, a 16-bit one into its high byte); the val-only ones for dfseg-eval
    for name, splits, suffix, label in (
            ("city-colour-label", ("train", "val"), "labelTrainIds", np.dstack([np.zeros((48, 64), np.uint8)] * 2 +
                                                                                [np.ones((48, 64), np.uint8)])),
            ("city-16bit-label", ("train", "val"), "labelTrainIds", np.full((48, 64), 1259, np.uint16)),
            ("city-16bit-gt", ("val",), "labelTrainIds", np.full((48, 64), 259, np.uint16)),
            ("city-labelid-200", ("val",), "labelIds", np.full((48, 64), 200, np.uint8))):
        for split in splits:
            for kind, stem, array in (("leftImg8bit", "leftImg8bit", np.full((48, 64, 3), 80, np.uint8)),
                                      ("gtFine", "gtFine_" + suffix, label)):
                os.makedirs(root / name / kind / split / "aachen")
                cv2.imwrite(str(root / name / kind / split / "aachen" / "aachen_000000_000019_{}.png".format(stem)),
                            array)
    os.makedirs(root / "journal-folder" / "journal.jsonl")  # an --out whose journal is a folder
    return root


def snapshot(root):
    """Every file under ``root`` with its content hash (inputs and earlier outputs alike)."""
    state = {}
    for folder, _, names in os.walk(str(root)):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                state[os.path.relpath(path, str(root))] = hashlib.sha256(handle.read()).hexdigest()
    return state


# A search that gets past its checks trains one step of one trial, outside the inputs' folder
QUICK = ["--widths", "64,128,256", "--out", "{dir}/../search-quick", "--max-trials", "1", "--epochs", "1",
         "--batch-size", "1", "--steps-per-epoch", "1", "--loader-workers", "0", "--quiet", "--no-plots"]

CASES = [
    # dfseg-run: outputs that would destroy the input, or cannot be written, are refused before any work
    ("run", ["--model", "{model}", "{dir}/in.mp4", "{dir}/in.mp4"], "output {dir}/in.mp4: is the input"),
    ("run", ["--model", "{model}", "{dir}/frames", "{dir}/frames/"], "is the input {dir}/frames"),
    ("run", ["--model", "{model}", "{dir}/frames", "{dir}/frames/annotated/"], "lies inside the input folder"),
    ("run", ["--model", "{model}", "{dir}/in.mp4", "{dir}/o.mp4", "{dir}/o.mp4"], "named twice"),
    ("run", ["--model", "{model}", "{dir}/frames", "none", "--save-labels", "{dir}/frames"], "is the input"),
    ("run", ["--model", "{model}", "{dir}/in.mp4", "none", "--save-labels", "{dir}/notes.txt"], "is a file; name a folder"),
    ("run", ["--model", "{model}", "{dir}/in.mp4", "/proc/dfseg-out.mp4"], "cannot write in /proc"),
    ("run", ["--model", "{model}", "{dir}/in.mp4", "{dir}/notes.txt/out.mp4"], "notes.txt is a file, not a folder"),
    ("run", ["--model", "{model}", "{dir}/in.mp4", "{dir}/out.xyz"], "unknown output type"),
    ("run", ["--model", "{model}", "{dir}/in.mp4", "none", "--output-fps", "0"], "--output-fps: must be"),
    ("run", ["--model", "{model}", "{dir}/in.mp4", "none", "--input-loop", "-5"], "--input-loop: must be at least -1"),
    ("run", ["--model", "{model}", "{dir}/in.mp4", "none", "--threads", "-3"], "--threads: must be at least 1"),
    # upper bounds: 100000 threads take minutes to start, a huge queue or frame rate is no video's
    ("run", ["--model", "{model}", "{dir}/in.mp4", "none", "--threads", "100000"],
     "--threads: must be from 1 to 256, got 100000"),
    ("run", ["--model", "{model}", "{dir}/in.mp4", "none", "--queue-size", "1000000000000"],
     "--queue-size: must be from 1 to 64, got 1000000000000"),
    ("run", ["--model", "{model}", "{dir}/in.mp4", "{dir}/fps.avi", "--output-fps", "1e308"],
     "--output-fps: must be a finite number >= 0.01 and <= 1000.0, got 1e308"),
    # a rate OpenCV's video writers cannot store: the writer failed at the first frame, after the banner
    ("run", ["--model", "{model}", "{dir}/in.mp4", "{dir}/fps.avi", "--output-fps", "0.001"],
     "--output-fps: must be a finite number >= 0.01 and <= 1000.0, got 0.001"),
    ("run", ["--model", "{model}", "{dir}/in.mp4", "none", "--alpha", "nan"], "--alpha: must be a finite number"),
    ("run", ["--model", "{model}", "{dir}/in.mp4", "none", "--reconnect-delay", "-1"], "--reconnect-delay"),
    ("run", ["--model", "{model}", "{dir}/in.mp4", "none", "--queue-size", "x"], "'x' is not a whole number"),
    ("run", ["--model", "{model}", "{dir}/in.mp4", "none", "--no-such-option"], "unrecognized arguments"),
    ("run", ["--model", "{dir}/missing.onnx", "{dir}/in.mp4", "none"], "missing.onnx: file not found"),
    ("run", ["--model", "{dir}/empty.onnx", "{dir}/in.mp4", "none"], "{dir}/empty.onnx: empty file (0 bytes)"),
    ("run", ["--model", "{dir}/string-input.onnx", "{dir}/in.mp4", "none"],
     "{dir}/string-input.onnx: input 'input' is a tensor(string)"),
    ("run", ["--model", "{model}", "{dir}/nothing.mp4", "none"], "nothing.mp4: no such file or folder"),
    ("run", ["--model", "{model}", "{dir}/empty", "none"], "folder holds no images"),
    ("run", ["--model", "{model}", "{dir}/notes.txt", "none"], "notes.txt: cannot open it; is it a video file"),
    ("run", ["--model", "df1-seg", "--weights", "{dir}/garbage.pt", "{dir}/in.mp4", "none"],
     "garbage.pt: cannot read as a weights-only torch file"),
    ("run", ["--model", "df1-seg", "--weights", "{dir}/garbage.pt", "{dir}/notes.txt", "none"],
     "notes.txt: cannot open it"),
    ("run", ["--model", "{model}", "rtsp://127.0.0.1:1/s", "none", "--reconnect-attempts", "0"],
     "rtsp://127.0.0.1:1/s: cannot open it; check the URL"),
    ("run", ["--model", "{model}", "rtsp://127.0.0.1:1/s", "none", "--input-loop", "2"], "is live"),
    ("run", ["--model", "df1-seg", "--size", "100000x100000", "{dir}/in.mp4", "none"], "each side at most 16384"),
    ("run", ["--model", "{model}", "--size", "\u00b2x64", "{dir}/in.mp4", "none"], "size '\u00b2x64'"),
    ("run", ["--model", "{model}", "--camera-size", "abc", "{dir}/in.mp4", "none"], "size 'abc'"),
    ("run", ["--model", "{dir}/frames", "{dir}/in.mp4", "none"], "is a folder; give an .onnx file"),
    ("run", ["--model", "{model}", "{dir}/in.mp4", "{dir}/notes.txt/a\nb.mp4"], "notes.txt/a\\nb.mp4"),
    # a build cache named as an output (also spelt another way): each would be written over the other
    ("run", ["--model", "{dir}/empty.onnx", "{dir}/in.mp4", "{dir}/o.avi", "--timing-cache", "{dir}/./o.avi"],
     "--timing-cache {dir}/./o.avi: named twice (also output {dir}/o.avi); give each output its own path"),
    ("run", ["--model", "{dir}/empty.onnx", "{dir}/in.mp4", "{dir}/shown/", "--engine-cache", "{dir}/shown"],
     "--engine-cache {dir}/shown: named twice (also output folder {dir}/shown)"),
    # a file output ending in / (the file would have been written without the slash, or a traceback at the end)
    ("run", ["--model", "{dir}/empty.onnx", "{dir}/in.mp4", "none", "--timing-cache", "{dir}/tc/"],
     "--timing-cache {dir}/tc/: ends in '/', which names a folder; name a file to write"),
    # int8 calibration that cannot work: said before the "deriving the int8 graph" note, not after it
    ("run", ["--model", "{model}", "{dir}/in.mp4", "none", "--precision", "int8", "--engine-cache", "{dir}/engines"],
     "int8 needs calibration images here"),
    ("run", ["--model", "{model}", "{dir}/in.mp4", "none", "--precision", "int8", "--calibration", "{dir}/badframes",
             "--engine-cache", "{dir}/engines"],
     "calibration image {dir}/badframes/a.png: OpenCV cannot decode it; remove it from the folder or convert it"),
    ("run", ["--model", "{model}", "{dir}/in.mp4", "none", "--precision", "int8", "--calibration", "{dir}/trunc.avi",
             "--engine-cache", "{dir}/engines"],  # OpenCV's AVI parser printed its own line too
     "calibration source {dir}/trunc.avi: OpenCV cannot read frames from this video"),
    ("run", ["--model", "{model}", "{dir}/in.mp4", "none", "--precision", "fp16", "--fp32-layers", "/nope/",
             "--engine-cache", "{dir}/engines"], "fp32 layers: no node named or starting with '/nope/'"),
    ("run", ["--model", "{model}", "{dir}/stems", "{dir}/shown/", "--save-labels", "{dir}/labels"],
     "{dir}/stems/a.jpg and {dir}/stems/a.png: a folder output names each frame after its input file, so both would "
     "be written to a.png; rename one"),
    # models that load but that no frame can run through: a traceback (exit 1) or an error after the banner before
    ("run", ["--model", "{dir}/batch2.onnx", "{dir}/in.mp4", "none"],
     "batch2.onnx: input 'input' has shape (2, 3, 48, 64); dfseg feeds one frame at a time: export the model with "
     "batch size 1"),
    ("run", ["--model", "{dir}/no-pixels.onnx", "{dir}/in.mp4", "none"], "no-pixels.onnx: input 'input' has shape "
     "(1, 3, 0, 0), no pixels"),
    ("run", ["--model", "{dir}/no-output.onnx", "{dir}/in.mp4", "none"], "no-output.onnx: the model has no outputs"),
    ("run", ["--model", "{dir}/classifier.onnx", "{dir}/in.mp4", "none"],
     "classifier.onnx: output has shape (1, 3), not N x classes x H x W"),
    # dfseg-bench
    ("bench", ["--models", "df1", "--backend", "foo"], "--backend foo: choose one of auto"),
    ("bench", ["--models", "df1", "--clock", "thread", "--threads", "2"], "--clock thread: applies to --table"),
    ("bench", ["--models", ""], "--models '': names nothing"),
    ("bench", ["--models", "df1", "--sizes", " , "], "--sizes ' , ': names nothing"),
    ("bench", ["--table", "{dir}/notes.txt", "--models", "df1", "--no-space"], "a table run continues only a table it wrote"),
    ("bench", ["--validate-table", "{dir}/table.json", "--seed", "-1"], "--seed: must be at least 0, got -1"),
    ("bench", ["--validate-table", "{dir}/table.json", "--seed", str(2 ** 70)],
     "--seed: must be from 0 to 4294967295, got {}".format(2 ** 70)),
    ("bench", ["--validate-table", "{dir}/binary.json"], "binary.json: not a UTF-8 text file"),
    ("bench", ["--validate-table", "{dir}/deep.json"], "deep.json: JSON nested too deeply"),
    ("bench", ["--validate-table", "{dir}/existing.json"], "not a dfseg latency table"),
    ("bench", ["--models", "64x999999999_128x1_256x1"], "more than 256 blocks in one stage"),
    ("bench", ["--validate-table", "{dir}/table.json", "--json", "{dir}/table.json"], "is the input"),
    ("bench", ["--models", "df1", "--json", "/proc/dfseg.json"], "cannot write in /proc"),
    ("bench", ["--models", "df1", "--csv", "{dir}/notes.txt/r.csv"], "is a file, not a folder"),
    ("bench", ["--models", "df1", "--json", "{dir}/empty"], "is a folder; name a file"),
    ("bench", ["--models", "df1", "--json", "{dir}/r.json", "--csv", "{dir}/r.json"], "named twice"),
    ("bench", ["--table", "{dir}/number.json", "--models", "df1", "--no-space"],
     "number.json.journal.jsonl line 1: unreadable journal record (a JSON int, not an object)"),
    ("bench", ["--table", "{dir}/noise.json", "--models", "df1", "--no-space"],
     "noise.json.journal.jsonl line 1: unreadable journal record (no record of dfseg's); the file was edited"),
    ("bench", ["--table", "{dir}/t.json", "--chunk", "0"], "--chunk: must be at least 1, got 0"),
    ("bench", ["--table", "{dir}/t.json", "--chunk", "-1"], "--chunk: must be at least 1, got -1"),
    ("bench", ["--models", "df1", "--warmup", "nan"], "--warmup: must be a finite number"),
    ("bench", ["--models", "df1", "--threads", "-3"], "--threads: must be at least 1"),
    ("bench", ["--models", "df1", "--threads", "100000"], "--threads: must be from 1 to 256, got 100000"),
    ("bench", ["--validate-table", "{dir}/table.json", "--random", "-1"], "--random: must be at least 0"),
    ("bench", ["--validate-table", "{dir}/table.json", "--random", "1000000000"],  # hung drawing members
     "--random: must be from 0 to 1000, got 1000000000"),
    ("bench", ["--precision", "fp64"], "invalid choice"),
    ("bench", ["--validate-table", "{dir}/missing.json"], "missing.json"),
    ("bench", ["--models", "df1", "--json", "{dir}/r.json", "--timing-cache", "{dir}/r.json", "--clock", "wall"],
     "--timing-cache {dir}/r.json: named twice (also --json {dir}/r.json)"),
    ("bench", ["--table", "{dir}/foreign.json", "--models", "s16.16-16x1_32x1_32x1-wc19.19.32", "--sizes", "64x48",
               "--no-space", "--backend", "onnxruntime", "--no-progress"],
     "{dir}/foreign.json.journal.jsonl: an unfinished table was started with different settings (backend, "),
    ("bench", ["--validate-table", "{dir}/missing.json", "--json", "{dir}/v/"],
     "--json {dir}/v/: ends in '/', which names a folder; name a file to write"),
    # outputs the run would silently not write, and a --pin-cpu that names no CPU (silently no pinning)
    ("bench", ["--table", "{dir}/notes.txt", "--json", "{dir}/r.json", "--models", "df1", "--no-space"],
     "--json {dir}/r.json: --table does not write it"),
    ("bench", ["--models", "df1", "--png", "{dir}/p.png", "--json", "{dir}/notes.txt/r.json"],
     "--png {dir}/p.png: a benchmark does not write it"),
    ("bench", ["--validate-table", "{dir}/missing.json", "--csv", "{dir}/r.csv"],
     "--csv {dir}/r.csv: --validate-table does not write it"),
    ("bench", ["--validate-table", "{dir}/missing.json", "--pin-cpu", ""], "--pin-cpu '': names no CPU"),
    ("bench", ["--models", "s16.16-16x1_32x1_32x1-wc19.19.32", "--sizes", "64x48", "--backend", "onnxruntime",
               "--precision", "int8", "--engine-cache", "{dir}/engines", "--no-progress"],
     "int8 needs calibration images here"),  # said after the machine warnings and the export before
    # an output inside the --bundle folder (its manifest.json was overwritten), another backend's table (refused
    # only after the warnings and the "measuring" line)
    ("bench", ["--bundle", "{dir}/empty", "--json", "{dir}/empty/manifest.json"],
     "--json {dir}/empty/manifest.json: lies inside the input folder {dir}/empty"),
    ("bench", ["--table", "{dir}/table.json", "--models", "s16.16-16x1_32x1_32x1-wc19.19.32", "--sizes", "64x48",
               "--no-space", "--backend", "onnxruntime", "--no-progress"],
     "{dir}/table.json: the existing table was measured with backend 'synthetic', not 'onnxruntime'"),
    # dfseg-search
    ("search", ["--table", "{dir}/table.json", "--eps", "nan"], "--eps: must be a finite number"),
    ("search", ["--table", "{dir}/table.json", "--eps", "-1"], "--eps: must be a finite number >= 0"),
    ("search", ["--table", "{dir}/table.json", "--workers", "0"], "--workers: must be at least 1"),
    ("search", ["--table", "{dir}/table.json", "--retries", "-1"], "--retries: must be at least 0"),
    ("search", ["--table", "{dir}/table.json", "--timeout", "-5"], "--timeout: must be a finite number > 0"),
    ("search", ["--table", "{dir}/table.json", "--max-failures", "0"], "--max-failures: must be at least 1"),
    ("search", ["--table", "{dir}/table.json", "--train-cmd", ""], "--train-cmd: empty command"),
    ("search", ["--table", "{dir}/table.json", "--trainer", "{dir}/empty"], "expected DATA/train/<class>"),
    ("search", ["--table", "{dir}/table.json", "--trainer", "{dir}/nothing"], "does not exist"),
    ("search", ["--table", "{dir}/table.json", "--replay", "{dir}/notes.txt", "--out", "{dir}/table.json"],
     "is the input"),
    ("search", ["--table", "{dir}/table.json", "--replay", "{dir}/notes.txt", "--out", "{dir}/notes.txt/s"],
     "is a file, not a folder"),
    ("search", ["--table", "{dir}/table.json", "--dry-run", "--space-out", "{dir}/table.json"], "is the input"),
    ("search", ["--table", "{dir}/table.json", "--resume", "--retry-failed", "--dry-run", "--retry-failed",
                "--no-such"], "unrecognized arguments"),
    ("search", ["--table", "{dir}/table.json", "--retry-failed", "--replay", "{dir}/notes.txt"], "goes with --resume"),
    ("search", ["--table", "{dir}/missing.json"], "missing.json"),
    ("search", ["--table", "{dir}/table.json", "--replay", "{dir}/acc.csv", "--ray-address", "127.0.0.1:1"],
     "--ray-address 127.0.0.1:1: nothing answers at 127.0.0.1:1"),
    ("search", ["--table", "{dir}/table.json", "--replay", "{dir}/acc.csv", "--ray-address", "ray://u:pw@127.0.0.1:1"],
     "--ray-address ray://***@127.0.0.1:1: nothing answers"),
    ("search", ["--table", "{dir}/table.json", "--replay", "{dir}/acc.csv", "--ray-address", "not an address"],
     "expected auto, local, HOST:PORT"),
    ("search", ["--table", "{dir}/binary.json"], "binary.json: not a UTF-8 text file"),
    ("search", ["--table", "{dir}/deep.json"], "deep.json: JSON nested too deeply"),
    ("search", ["--table", "{dir}/table.json", "--replay", "{dir}/binary.json"], "binary.json: not a UTF-8 text"),
    ("search", ["--table", "{dir}/table.json", "--replay", "{dir}/deep.json"], "deep.json: JSON nested too deeply"),
    ("search", ["--table", "{dir}/table.json", "--blocks", "1-\u00b2,1-2,1-2", "--dry-run"], "--blocks"),
    ("search", ["--table", "{dir}/table.json", "--replay", "{dir}/acc.csv", "--seed", "-1"],
     "--seed: must be at least 0, got -1"),
    ("search", ["--table", "{dir}/table.json", "--replay", "{dir}/acc.csv", "--seed", "99999999999999999999999"],
     "--seed: must be from 0 to 4294967295, got 99999999999999999999999"),
    ("search", ["--table", "{dir}/complete-no.json", "--dry-run"], '"complete" must be true or false, got \'no\''),
    ("search", ["--table", "{dir}/table.json", "--dry-run", "--t-max", "nan"], "--t-max: must be a finite number"),
    ("search", ["--table", "{dir}/table.json", "--dry-run", "--t-min", "1e999"], "--t-min: must be a finite"),
    ("search", ["--table", "{dir}/table.json", "--dry-run", "--widths", "64,,128"], "expected comma-separated"),
    ("search", ["--table", "{dir}/table.json", "--dry-run", "--explore", "2"], "--explore 2.0: must be between"),
    ("search", ["--table", "{dir}/table.json", "--replay", "{dir}/acc.csv", "--out", ""], "--out '': give a path"),
    ("search", ["--table", "{dir}/table.json", "--dry-run", "--space-out", ""], "--space-out '': give a path"),
    ("search", ["--table", "{dir}/table.json", "--replay", "{dir}/acc.csv", "--resume", "--out", "{dir}/nowhere"],
     "--resume: {dir}/nowhere holds no search journal"),
    # dfseg-eval
    ("eval", ["--data", "{dir}/city", "--model", "{model}", "--json",
              "{dir}/city/gtFine/val/aachen/aachen_000000_000019_gtFine_labelTrainIds.png"],
     "lies inside the input folder {dir}/city"),
    ("eval", ["--data", "{dir}/city", "--model", "{model}", "--plot", "{dir}/city/iou.png"],
     "lies inside the input folder"),
    ("eval", ["--data", "{dir}/city", "--model", "{model}", "--quiet"], "ground truth holds class 100"),
    ("eval", ["--data", "{dir}/empty", "--model", "{model}", "--json", "{model}"], "is the input"),
    ("eval", ["--data", "{dir}/empty", "--model", "{model}", "--limit", "0"], "--limit: must be at least 1"),
    ("eval", ["--data", "{dir}/empty", "--model", "{model}", "--plot", "/proc/iou.png"], "cannot write in /proc"),
    ("eval", ["--data", "{dir}/empty"], "one of the arguments --model --predictions is required"),
    # a file output named with a trailing slash: a folder, refused before the work (was a traceback after it)
    ("search", ["--table", "{dir}/table.json", "--dry-run", "--space-out", "{dir}/new/"],
     "--space-out {dir}/new/: ends in '/', which names a folder; name a file to write"),
    ("eval", ["--data", "{dir}/city", "--model", "{model}", "--json", "{dir}/new/"],
     "--json {dir}/new/: ends in '/', which names a folder"),
    ("eval", ["--data", "{dir}/city", "--model", "{model}", "--plot", "{dir}/new/"],
     "--plot {dir}/new/: ends in '/', which names a folder"),
    # dfseg-export
    ("export", ["df1-seg", "--size", "64x48", "-o", "/proc/m.onnx"], "cannot write in /proc"),
    ("export", ["df1-seg", "--size", "64x48", "-o", "{dir}/w.safetensors", "--weights", "{dir}/w.safetensors"],
     "is the input"),
    ("export", ["df1-seg", "--size", "64x48", "-o", "{dir}/empty"], "is a folder; name a file"),
    ("export", ["df1-seg", "--size", "64x48", "--opset", "x", "-o", "{dir}/m.onnx"], "invalid int value"),
    ("export", ["{dir}/binary.json", "--size", "64x48", "-o", "{dir}/m.onnx"], "binary.json: not a UTF-8 text file"),
    ("export", ["{dir}/deep.json", "--size", "64x48", "-o", "{dir}/m.onnx"], "deep.json: JSON nested too deeply"),
    ("export", ["{dir}/huge-classes.json", "--size", "64x48", "-o", "{dir}/m.onnx"], "classes: 2000000000 is more"),
    ("export", ["64x999999999_128x1_256x1", "--size", "64", "-o", "{dir}/m.onnx"], "more than 256 blocks"),
    ("export", ["64x\u00b2_128x1_256x1", "--size", "64", "-o", "{dir}/m.onnx"], "each run is WIDTHxCOUNT"),
    ("export", ["df1-seg", "--size", "100000x100000", "-o", "{dir}/m.onnx"], "each side at most 16384"),
    ("export", ["df1-seg", "--size", "16000x16000", "-o", "{dir}/m.onnx"], "GB, more than this machine"),
    ("export", ["df1-seg", "--size", "64x48", "-o", "{dir}/m.onnx", "--weights", "{dir}/objects.pt"],
     "(it holds pickled Python objects, not only tensors); dfseg never unpickles code"),
    ("export", ["df1-seg", "--size", "64x48", "-o", "{dir}/m.onnx", "--weights", "{dir}/garbage.pt"],
     "(it is not a torch weights file, or it is damaged)"),
    ("export", ["df1-seg", "--size", "64x48", "-o", "{dir}/m.onnx", "--weights", "{dir}/plain-pickle.pt"],
     "plain-pickle.pt: cannot read as a weights-only torch file"),
    ("export", ["df1-seg", "--summary"], "--summary lists every model; leave out MODEL"),
    # dfseg-convert
    ("convert", ["df1", "{dir}/frames", "{dir}/out.safetensors"], "frames: is a folder"),
    ("convert", ["df1", "{dir}/huge.caffemodel", "{dir}/out.safetensors"], "holds 1208925819614629174706176 values"),
    ("convert", ["df1", "{dir}/w.safetensors", "{dir}/w.safetensors"], "is the input"),
    ("convert", ["df1", "{dir}/binary.json", "{dir}/out.pt"], "must be a .safetensors file"),
    ("convert", ["df1"], "the following arguments are required"),
    ("convert", ["df1", "{dir}/negative.caffemodel", "{dir}/out.safetensors"], "has a negative dimension"),
    # dfseg-search: values that got past the checks (the trial, or the machine, met them instead)
    ("search", ["--table", "{dir}/table.json", "--replay", "{dir}/acc.csv", "--out", "{dir}/../search-ray",
                "--ray-address", ""],
     "--ray-address '': give auto, local, HOST:PORT or ray://HOST:PORT"),
    ("search", ["--table", "{dir}/table.json", "--replay", "{dir}/acc.csv", "--resume", "--out", "{dir}/journal-folder"],
     "{dir}/journal-folder/journal.jsonl: is not a file, so it cannot be a search journal"),
    ("search", ["--table", "{dir}/table.json", "--replay", "{dir}/acc.csv", "--max-trials", "1", "--out",
                "{dir}/journal-folder"],
     "{dir}/journal-folder/journal.jsonl: is not a file"),
    ("search", ["--table", "{dir}/table.json", "--trainer", "{dir}/twoclass"] + QUICK + ["--out",
                                                                                 "{dir}/twoclass/train/search"],
     "--out {dir}/twoclass/train/search: lies inside the input folder {dir}/twoclass"),
    ("search", ["--table", "{dir}/table.json", "--out", "{dir}/../search-cmd", "--max-trials", "1", "--train-cmd",
                sys.executable + " -c pass {{arch}} {{result}} {{progres}}"],
     "--train-cmd: unknown placeholder {{progres}} in"),
    ("search", ["--table", "{dir}/table.json", "--trainer", "{dir}/twoclass"] + QUICK + ["--loader-workers", "100000"],
     "--loader-workers: must be from 0 to 256, got 100000"),
    ("search", ["--table", "{dir}/table.json", "--trainer", "{dir}/twoclass", "--timeout", "60"] + QUICK,
     "--timeout 60: limits a --train-cmd command; the built-in --trainer runs its --epochs"),
    ("search", ["--table", "{dir}/table.json", "--replay", "{dir}/acc.csv", "--timeout", "60"],
     "--timeout 60: limits a --train-cmd command"),
    ("search", ["--table", "{dir}/table.json", "--trainer", "{dir}/twoclass"] + QUICK + ["--lr", "1e300"],
     "--lr: must be a finite number > 0.0 and <= 100.0, got 1e300"),
    # a --blocks range no architecture (or memory) holds: killed by the OOM killer, or a MemoryError traceback
    ("search", ["--table", "{dir}/table.json", "--dry-run", "--widths", "64,128,256", "--blocks", "1-1000000,1-1,1-1"],
     "blocks: stage 3 range (1, 1000000): at most 256 blocks a stage"),
    ("search", ["--table", "{dir}/table.json", "--dry-run", "--widths", "64,128,256", "--blocks", "1-256,1-1,1-1"],
     "blocks: stage 3 range 1-256 over 3 widths makes 2,862,208 width sequences of up to 256 blocks, more than"),
    ("search", ["--table", "{dir}/table.json", "--trainer", "{dir}/twoclass", "--scale", "1-1000"] + QUICK,
     "--scale 1.0-1000.0: scales the input size 224x224 beyond 16384 pixels a side; give MAX at most 73"),
    # dfseg-search --trainer: datasets that trained (or failed trial by trial) instead of being refused
    ("search", ["--table", "{dir}/table.json", "--trainer", "{dir}/oneclass"] + QUICK,
     "{dir}/oneclass/train: one class folder ('cat'); classification needs at least two"),
    ("search", ["--table", "{dir}/table.json", "--trainer", "{dir}/npy-flat"] + QUICK,
     "npy-flat/train/a/0.npy: expected an HxWx3 uint8 BGR image, got uint8 of shape (32,)"),
    ("search", ["--table", "{dir}/table.json", "--trainer", "{dir}/npy-float"] + QUICK,
     "npy-float/train/a/0.npy: expected an HxWx3 uint8 BGR image, got float64 of shape (32, 32, 3)"),
    ("search", ["--table", "{dir}/table.json", "--trainer", "{dir}/city-colour-label"] + QUICK,
     "aachen_000000_000019_gtFine_labelTrainIds.png: a label must be an HxW integer image (one id per pixel), "
     "got uint8 48x64x3"),
    ("search", ["--table", "{dir}/table.json", "--trainer", "{dir}/city-16bit-label"] + QUICK,
     "aachen_000000_000019_gtFine_labelTrainIds.png: label 1259 does not fit the model's 1000 classes"),
    # dfseg-eval: ground truth whose ids were changed or ignored without an error
    ("eval", ["--data", "{dir}/city-16bit-gt", "--model", "{model}", "--quiet"],
     "aachen_000000_000019_gtFine_labelTrainIds.png: holds id 259, outside the 8-bit ids 0..255"),
    ("eval", ["--data", "{dir}/city-labelid-200", "--model", "{model}", "--quiet"],
     "aachen_000000_000019_gtFine_labelIds.png: labelId 200 is outside the Cityscapes table (0..33)"),
]


def run(command, args):
    return subprocess.run([sys.executable, "-m", "dfseg.cli." + command, *args], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("command, args, message", CASES, ids=["{}-{}".format(c[0], i) for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(files, command, args, message):
    directory, model = str(files), str(files / "model.onnx")
    args = [a.format(dir=directory, model=model) for a in args]
    message = message.format(dir=directory)
    before = snapshot(files)
    proc = run(command, args)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("dfseg-{}: error: ".format(command)), proc.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert "weights_only=False" not in proc.stderr  # torch's advice to run a file's code is never passed on
    assert snapshot(files) == before  # no input, no earlier output, nothing new in the input folder


@pytest.mark.parametrize("backend, message", [
    ("tensorrt", "the tensorrt backend needs TensorRT's Python bindings"), ("trtexec", "trtexec not found on PATH")])
def test_bench_names_a_backend_that_is_not_installed_before_any_line(files, backend, message):
    """--backend tensorrt or trtexec where it is missing: one line, not after the machine warnings."""
    import importlib.util

    from dfseg.backends.tensorrt.trtexec_path import locate_trtexec

    if importlib.util.find_spec("tensorrt") if backend == "tensorrt" else locate_trtexec():
        pytest.skip("{} is installed here".format(backend))
    proc = run("bench", ["--models", "s16.16-16x1_32x1_32x1-wc19.19.32", "--sizes", "64x48", "--backend", backend,
                         "--no-progress"])
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("dfseg-bench: error: " + message), proc.stderr


def test_a_camera_password_is_never_shown(files):
    secret = "s3cretPW"
    proc = run("run", ["--model", str(files / "model.onnx"), "rtsp://admin:{}@127.0.0.1:1/stream".format(secret),
                       "none", "--reconnect-attempts", "0"])
    assert proc.returncode == 2, proc.stderr
    assert secret not in proc.stderr + proc.stdout and "rtsp://***@127.0.0.1:1/stream" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr  # no FFmpeg or OpenCV log lines around it


def tree(root):
    """Every file and folder under ``root`` (an empty folder left behind counts)."""
    return sorted(os.path.relpath(os.path.join(folder, name), str(root))
                  for folder, folders, names in os.walk(str(root)) for name in folders + names)


# Refused before the banner and before the model is loaded, leaving the output folder as it was: the
# checks that used to come once outputs were made or the model was loaded (issue 28).
BEFORE_WORK = [
    (["{dir}/badframes", "{out}/frames/"], "{dir}/badframes/a.png: cannot read this image; remove it"),
    (["{dir}/in.mp4", "none", "--precision", "int8", "--calibration", "{dir}/empty", "--engine-cache",
      "{out}/engines"], "--calibration {dir}/empty: no images"),
    (["{dir}/in.mp4", "http://256.0.0.1:8080"], "http://256.0.0.1:8080: cannot listen there"),
    (["{dir}/in.mp4", "{out}/o.avi", "display://x"], "display://x: "),
    (["{dir}/trunc.avi", "{out}/o.avi"], "{dir}/trunc.avi: cannot open it; is it a video file"),
    # outputs opened before the model is read: the folders they made go again when it cannot be
    (["{dir}/in.mp4", "{out}/new/frames/", "{out}/new/video/o.avi", "--model", "{dir}/empty.onnx"],
     "{dir}/empty.onnx: empty file (0 bytes)"),
    # an http:// output's address line waits for the model: a bad one is still the only line
    (["{dir}/in.mp4", "http://127.0.0.1:0", "{out}/o.avi", "--model", "{dir}/empty.onnx"],
     "{dir}/empty.onnx: empty file (0 bytes)"),
]


@pytest.mark.parametrize("args, message", BEFORE_WORK, ids=[str(i) for i in range(len(BEFORE_WORK))])
def test_run_refuses_before_any_work_and_leaves_no_folder(files, tmp_path, args, message):
    out = tmp_path / "out"
    out.mkdir()
    values = dict(dir=str(files), out=str(out))
    before = snapshot(files)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}  # no display here
    proc = subprocess.run([sys.executable, "-m", "dfseg.cli.run", "--model", str(files / "model.onnx")] +
                          [a.format(**values) for a in args], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, env=env)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    # One line: no banner (the work had not begun), nothing of OpenCV's own (its AVI parser's complaint)
    assert len(lines) == 1 and lines[0].startswith("dfseg-run: error: "), proc.stderr
    assert message.format(**values) in lines[0], lines[0]
    assert tree(out) == [] and snapshot(files) == before


def test_run_refuses_a_port_in_use_before_loading_the_model(files, tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    address = "http://127.0.0.1:{}".format(holder.getsockname()[1])
    try:
        proc = run("run", ["--model", str(files / "model.onnx"), str(files / "in.mp4"), str(tmp_path / "o.avi"),
                           address])
    finally:
        holder.close()
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        "dfseg-run: error: {}: cannot listen there (Address already in use); pick a free port or an address of this "
        "machine (0.0.0.0 = all)".format(address)], proc.stderr
    assert tree(tmp_path) == []


def test_a_second_run_onto_the_same_output_is_refused_before_the_banner(files, tmp_path):
    """While one dfseg-run writes out.avi, another one onto it is refused in one line and leaves the
    first one's file alone."""
    first = subprocess.Popen([sys.executable, "-m", "dfseg.cli.run", "--model", str(files / "model.onnx"),
                              str(files / "in.mp4"), str(tmp_path / "out.avi"), "--input-loop", "-1"], stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        for line in first.stderr:  # the banner: the first run holds its output
            if line.startswith("dfseg-run: {} ->".format(files / "in.mp4")):
                break
        second = run("run", ["--model", str(files / "model.onnx"), str(files / "in.mp4"), str(tmp_path / "out.avi")])
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert second.returncode == 2 and second.stderr.splitlines() == [
        "dfseg-run: error: {}: another dfseg process is writing this video; wait for it to finish or choose another "
        "output".format(tmp_path / "out.avi")], second.stderr
    assert first.returncode == 143 and count_frames(str(tmp_path / "out.avi"))[0] > 0


def test_usage_errors_are_one_line_with_a_help_pointer(files):
    for command in ("run", "bench", "search", "eval", "export", "convert"):
        proc = run(command, ["--no-such-option"])
        lines = proc.stderr.splitlines()
        assert proc.returncode == 2 and len(lines) == 1, (command, proc.stderr)
        assert "(see dfseg-{} --help)".format(command) in lines[0]


def test_a_dry_run_into_a_closed_pipe_ends_quietly(files):
    """``dfseg-search --dry-run | head -1``: the reader goes away; no BrokenPipeError traceback."""
    search = subprocess.Popen([sys.executable, "-m", "dfseg.cli.search", "--table", str(files / "table.json"),
                               "--dry-run", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.run(["head", "-1"], stdin=search.stdout, capture_output=True)
    search.stdout.close()
    _, stderr = search.communicate(timeout=120)
    assert head.stdout.startswith(b"search space:")
    assert search.returncode == 0 and b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr
