"""A sweep of bad inputs and faults a new user would hit, against every console entry point and the
Python API (issue 28: "the suite of unseen cases ... is run again at the end").

Not a pytest module (the name matches neither test_*.py nor *_test.py): run it by hand, one case at
a time (cases are small: a 64x48 model, 3-frame videos), from any folder:

    PYTHONPATH=/work/wt-sweep /work/main/.venv/bin/python tests/sweep/bad_input_sweep.py [-k SUBSTRING]

Inputs live in /tmp/sweep/inputs (built once), each case writes under /tmp/sweep/out/<case>/, and
the results go to /tmp/sweep/results.json ($DFSEG_SWEEP_DIR moves /tmp/sweep) with a table on stdout.  The rule for a bad-input case:
exit code 2, exactly one stderr line ``PROG: error: ...`` naming the file, option or value, no
traceback, no input changed and nothing left in the output folder.  Signal cases want 130/143 and
finalised outputs; race cases want a valid output and at most a one-line refusal; "ok" cases (unicode
and spaces in paths) want exit 0 and the output.  Mounting a read-only tmpfs needs root.
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SWEEP = os.environ.get("DFSEG_SWEEP_DIR", "/tmp/sweep")  # one folder per concurrent sweeper
INPUTS = os.path.join(SWEEP, "inputs")
OUT = os.path.join(SWEEP, "out")
PY = sys.executable
TINY = "s16.16-16x1_32x1_32x1-wc19.19.32"
SPACE = ["--widths", "64,128,256", "--blocks", "1-2,1-3,1-2"]
UNI_DIR = "dír ü ☃"
TRAIN = r'''
import json, sys, time
arch, result = sys.argv[1], sys.argv[2]
time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 0)
widths = [w for stage in json.load(open(arch))["stages"] for w in stage]
json.dump({"accuracy": 50 + sum(widths) / 100.0}, open(result, "w"))
'''


def env() -> Dict[str, str]:
    result = dict(os.environ)
    result["PYTHONPATH"] = ROOT
    result.pop("DFSEG_HTTP_TOKEN", None)
    return result


# ------------------------------------------------------------------------------------------ inputs
def build_inputs() -> None:
    """Every input file once (a marker file says they are complete)."""
    marker = os.path.join(INPUTS, ".complete")
    if os.path.exists(marker):
        return
    shutil.rmtree(INPUTS, ignore_errors=True)
    os.makedirs(INPUTS)
    code = "import sys; sys.path.insert(0, {!r}); sys.path.insert(0, {!r}); from bad_input_sweep import _build; _build()"
    subprocess.run([PY, "-c", code.format(os.path.join(ROOT, "tests"), os.path.dirname(os.path.abspath(__file__)))],
                   check=True, env=env(), cwd=INPUTS)
    open(marker, "w").close()


def _w(name: str, data: Any) -> str:
    path = os.path.join(INPUTS, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _build() -> None:  # runs in a child with tests/ on sys.path (torch, cv2 imported only here)
    import cv2
    import numpy as np
    import onnx
    import torch
    from onnx import TensorProto, helper
    from safetensors.torch import save_file
    from search_fixtures import write_table
    from test_live_pipeline import tiny_onnx, write_video

    from dfseg.models import create_model

    i = INPUTS
    tiny_onnx(os.path.join(i, "model.onnx"))
    write_video(os.path.join(i, "in.avi"), frames=3)
    write_video(os.path.join(i, "long.avi"), frames=40)
    rng = np.random.RandomState(0)
    os.makedirs(os.path.join(i, "frames"))
    for name in ("a", "b"):
        cv2.imwrite(os.path.join(i, "frames", name + ".png"), rng.randint(0, 255, (48, 64, 3)).astype(np.uint8))
    write_table(os.path.join(i, "table.json"))
    _w("acc.csv", "arch,accuracy\n64x1_64x1_64x1,50\n")
    _w("train.py", TRAIN)
    for kind, name, value in (("leftImg8bit", "leftImg8bit", 80), ("gtFine", "gtFine_labelTrainIds", 1)):
        folder = os.path.join(i, "city", kind, "val", "aachen")
        os.makedirs(folder)
        image = np.full((48, 64, 3) if kind == "leftImg8bit" else (48, 64), value, np.uint8)
        cv2.imwrite(os.path.join(folder, "aachen_000000_000019_{}.png".format(name)), image)
    os.makedirs(os.path.join(i, "city-noGT", "leftImg8bit", "val", "aachen"))
    shutil.copy(os.path.join(i, "city", "leftImg8bit", "val", "aachen", "aachen_000000_000019_leftImg8bit.png"),
                os.path.join(i, "city-noGT", "leftImg8bit", "val", "aachen"))
    for split in ("train", "val"):  # an image-folder dataset for the built-in trainer
        for label in ("cat", "dog"):
            folder = os.path.join(i, "cls", split, label)
            os.makedirs(folder)
            for k in range(2):
                cv2.imwrite(os.path.join(folder, "{}.png".format(k)), rng.randint(0, 255, (32, 32, 3)).astype(np.uint8))
    os.makedirs(os.path.join(i, "empty"))
    _w("notes.txt", "a regular file\n")
    # ONNX files
    model = open(os.path.join(i, "model.onnx"), "rb").read()
    _w("empty.onnx", b"")
    _w("trunc.onnx", model[: len(model) // 2])
    _w("text.onnx", "this is not an onnx file\n")
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 10])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), os.path.join(i, "notseg.onnx"))
    graph = helper.make_graph([helper.make_node("Cast", ["input"], ["output"], to=TensorProto.INT32)], "g",
                              [helper.make_tensor_value_info("input", TensorProto.STRING, [1, 3, 48, 64])],
                              [helper.make_tensor_value_info("output", TensorProto.INT32, [1, 3, 48, 64])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), os.path.join(i, "strinput.onnx"))
    # videos and image folders
    video = open(os.path.join(i, "in.avi"), "rb").read()
    _w("empty.avi", b"")
    _w("trunc.avi", video[:600])
    _w("text.avi", "not a video\n")
    _w("badframes/a.png", b"")
    _w("badframes/b.png", "text, not a PNG\n")
    _w("gray/a.png", b"")
    cv2.imwrite(os.path.join(i, "gray", "a.png"), np.zeros((48, 64), np.uint8))
    cv2.imwrite(os.path.join(i, "tiny-image.png"), np.zeros((1, 1, 3), np.uint8))
    # JSON of the wrong shape
    table = open(os.path.join(i, "table.json")).read()
    for name, text in (("empty.json", ""), ("list.json", "[]"), ("string.json", '"df1"'), ("null.json", "null"),
                       ("table-trunc.json", table[: len(table) // 2]),
                       ("table-nan.json", table.replace('"median_ms": 0.', '"median_ms": NaN, "x": 0.', 1)),
                       ("table-neg.json", table.replace('"median_ms": 0.', '"median_ms": -0.', 1)),
                       ("table-entries-list.json", json.dumps(dict(json.loads(table), entries=[1, 2]))),
                       ("table-str-ms.json", table.replace('"median_ms": 0.2', '"median_ms": "0.2', 1).replace(
                           '"median_ms": "0.2', '"median_ms": "fast", "y": 0.2', 1)),
                       ("arch-stages-str.json", '{"stages": "abc", "decoder": [19, 32, 32], "classes": 19}'),
                       ("arch-2stages.json", '{"stages": [[64], [128]], "decoder": [19, 32, 32], "classes": 19}'),
                       ("arch-negwidth.json", '{"stages": [[-64], [128], [256]], "decoder": [19, 32, 32], "classes": 19}'),
                       ("arch-zerowidth.json", '{"stages": [[0], [128], [256]], "decoder": [19, 32, 32], "classes": 19}'),
                       ("arch-classes-str.json", '{"stages": [[64], [128], [256]], "decoder": [19, 32, 32], "classes": "19"}'),
                       ("arch-classes0.json", '{"stages": [[64], [128], [256]], "decoder": [19, 32, 32], "classes": 0}'),
                       ("arch-true.json", "true"), ("arch-floatwidth.json", '{"stages": [[64.5], [128], [256]]}')):
        _w(name, text)
    # weights
    torch.manual_seed(0)
    state = create_model(TINY).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(i, "tiny.safetensors"))
    torch.save(state, os.path.join(i, "tiny.pt"))
    weights = open(os.path.join(i, "tiny.safetensors"), "rb").read()
    pt = open(os.path.join(i, "tiny.pt"), "rb").read()
    _w("empty.safetensors", b"")
    _w("trunc.safetensors", weights[: len(weights) // 2])
    _w("hugeheader.safetensors", b"\xff" * 8 + b"{}")
    save_file({"x": torch.zeros(3)}, os.path.join(i, "other-keys.safetensors"))
    _w("empty.pt", b"")
    _w("trunc.pt", pt[: len(pt) // 2])
    torch.save([1, 2, 3], os.path.join(i, "list.pt"))
    torch.save(torch.zeros(3), os.path.join(i, "tensor.pt"))
    # Caffe models
    _w("empty.caffemodel", b"")
    _w("text.caffemodel", "not protobuf at all \xff\n")
    from dfseg.convert.caffe_schema import message_classes

    net = message_classes()[0](name="tiny")
    blob = net.layer.add(name="conv1", type="Convolution").blobs.add()
    blob.shape.dim.extend([4, 3, 3, 3])
    blob.data.extend([0.5] * 108)
    data = net.SerializeToString()
    _w("trunc.caffemodel", data[: len(data) // 2])
    # replay files and token files
    _w("empty.csv", "")
    _w("header-only.csv", "arch,accuracy\n")
    _w("acc-nan.csv", "arch,accuracy\n64x1_64x1_64x1,nan\n")
    _w("acc-str.csv", "arch,accuracy\n64x1_64x1_64x1,high\n")
    _w("acc-nocol.csv", "name,score\n64x1_64x1_64x1,50\n")
    _w("acc-badarch.csv", "arch,accuracy\nnot-an-arch,50\n")
    _w("token-empty.txt", "")
    _w("token-binary.txt", b"\xff\xfe\x00\x01")
    # bundles: a real tiny one, and damaged copies
    from dfseg.bench.bundle import write_bundle
    from dfseg.bench.model_files import resolve_model
    from dfseg.sizes import parse_size

    spec = resolve_model(TINY, parse_size("64x48"))
    write_bundle(os.path.join(i, "bundle"), [spec], [], show_progress=False)
    os.makedirs(os.path.join(i, "bundle-empty"))
    _w("bundle-garbage/manifest.json", "{not json")
    _w("bundle-schema/manifest.json", '{"schema": "something/9"}')
    _w("bundle-list/manifest.json", "[]")
    manifest = json.load(open(os.path.join(i, "bundle", "manifest.json")))
    shutil.copytree(os.path.join(i, "bundle"), os.path.join(i, "bundle-badsha"))
    entry = manifest["models"][0]
    with open(os.path.join(i, "bundle-badsha", entry["file"]), "r+b") as handle:
        handle.truncate(100)
    shutil.copytree(os.path.join(i, "bundle"), os.path.join(i, "bundle-escape"))
    escape = dict(manifest)
    escape["models"] = [dict(entry, file="../model.onnx",
                             sha256=hashlib.sha256(open(os.path.join(i, "model.onnx"), "rb").read()).hexdigest())]
    _w("bundle-escape/manifest.json", json.dumps(escape))
    shutil.copytree(os.path.join(i, "bundle"), os.path.join(i, "bundle-missing"))
    os.remove(os.path.join(i, "bundle-missing", entry["file"]))
    # a finished search journal, and a damaged copy
    search = os.path.join(i, "search-good")
    subprocess.run([PY, "-m", "dfseg.cli.search", "--table", os.path.join(i, "table.json"), *SPACE, "--max-trials", "2",
                    "--train-cmd", "{} {} {{arch}} {{result}}".format(PY, os.path.join(i, "train.py")),
                    "--out", search, "--quiet", "--no-plots"], check=True, env=env(), capture_output=True)
    journal = open(os.path.join(search, "journal.jsonl")).read().splitlines(True)
    shutil.copytree(search, os.path.join(i, "search-midgarbage"))
    _w("search-midgarbage/journal.jsonl", "".join(journal[:1] + ["{garbage\n"] + journal[1:]))
    shutil.copytree(search, os.path.join(i, "search-nanrecord"))
    _w("search-nanrecord/journal.jsonl", "".join(journal) + json.dumps(
        dict(json.loads(journal[-1]), accuracy=float("nan"))) + "\n")
    for path in list(os.listdir(i)):
        if path.endswith(".lock"):
            os.remove(os.path.join(i, path))
    # unicode and spaces in paths
    os.makedirs(os.path.join(i, UNI_DIR))
    shutil.copy(os.path.join(i, "in.avi"), os.path.join(i, UNI_DIR, "vídeo ☃ 1.avi"))
    shutil.copy(os.path.join(i, "model.onnx"), os.path.join(i, UNI_DIR, "mödel 1.onnx"))
    shutil.copy(os.path.join(i, "table.json"), os.path.join(i, UNI_DIR, "täble 1.json"))
    shutil.copytree(os.path.join(i, "city"), os.path.join(i, UNI_DIR, "cíty"))


# ------------------------------------------------------------------------------------------ checks
def snapshot(root: str) -> Dict[str, str]:
    state = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs:
            state[os.path.relpath(os.path.join(folder, name), root) + "/"] = "dir"
        for name in names:
            if name.endswith(".lock"):
                continue  # a lock file says nothing about the data
            path = os.path.join(folder, name)
            try:
                with open(path, "rb") as handle:
                    state[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
            except OSError:
                state[os.path.relpath(path, root)] = "unreadable"
    return state


def temp_files(root: str) -> List[str]:
    found = []
    for folder, _, names in os.walk(root):
        found += [os.path.join(folder, n) for n in names if n.startswith(".tmp-") or n.endswith(".partial")]
    return found


def video_frames(path: str) -> int:
    import cv2

    capture = cv2.VideoCapture(path)
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def pngs_ok(folder: str) -> Optional[str]:
    import cv2

    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    if not names:
        return "no PNG in {}".format(folder)
    for name in names:
        if cv2.imread(os.path.join(folder, name), cv2.IMREAD_UNCHANGED) is None:
            return "{} is not a whole PNG".format(name)
    return None


def json_ok(path: str) -> Optional[str]:
    try:
        with open(path) as handle:
            json.load(handle)
    except (OSError, ValueError) as exc:
        return "{}: {}".format(path, exc)
    return None


def journal_ok(path: str) -> Optional[str]:
    try:
        with open(path) as handle:
            for number, line in enumerate(handle, 1):
                if not isinstance(json.loads(line), dict):
                    return "{} line {}: not an object".format(path, number)
    except (OSError, ValueError) as exc:
        return "{}: {}".format(path, exc)
    return None


# ------------------------------------------------------------------------------------------ cases
class Case:
    def __init__(self, name: str, prog: str, args: List[str], want: Any = (), kind: str = "error",
                 pre: Optional[Callable[[Dict[str, str]], None]] = None,
                 post: Optional[Callable[[Dict[str, str]], None]] = None,
                 check: Optional[Callable[[Dict[str, str]], Optional[str]]] = None,
                 signals: Any = (), wait_for: Optional[str] = None, should: str = "") -> None:
        self.name, self.prog, self.args, self.kind = name, prog, args, kind
        self.want = [want] if isinstance(want, str) else list(want)  # the message names one of these
        self.pre, self.post, self.check = pre, post, check
        self.signals, self.wait_for, self.should = list(signals), wait_for, should


def api(code: str) -> List[str]:
    return ["-c", API_PRELUDE + code]


API_PRELUDE = """
import sys
import numpy as np
import dfseg
from dfseg.errors import UserError
try:
"""


def api_case(name: str, body: str, want: Any, should: str = "") -> Case:
    lines = "".join("    " + line + "\n" for line in body.strip().splitlines())
    code = lines + "except UserError as exc:\n    print('api: error: ' + str(exc), file=sys.stderr)\n    sys.exit(2)\n"
    return Case(name, "api", api(code), want, should=should)


def mount_ro(paths: Dict[str, str]) -> None:
    os.makedirs(paths["ro"], exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", paths["ro"]], check=True)


def umount_ro(paths: Dict[str, str]) -> None:
    subprocess.run(["umount", "-l", paths["ro"]], check=False)


def copy_in(name: str, target: str = "s") -> Callable[[Dict[str, str]], None]:
    def pre(paths: Dict[str, str]) -> None:
        shutil.copytree(os.path.join(INPUTS, name), os.path.join(paths["out"], target))
    return pre


BUSY: List[socket.socket] = []


def hold_port(paths: Dict[str, str]) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    BUSY.append(sock)
    paths["port"] = str(sock.getsockname()[1])


def free_port(paths: Dict[str, str]) -> None:
    while BUSY:
        BUSY.pop().close()


def check_run_outputs(paths: Dict[str, str]) -> Optional[str]:
    out = os.path.join(paths["out"], "out.avi")
    if os.path.exists(out) and video_frames(out) < 1:
        return "out.avi has no readable frame"
    if not os.path.exists(out):
        return "out.avi missing"
    return pngs_ok(os.path.join(paths["out"], "labels"))


def check_frames_folder(paths: Dict[str, str]) -> Optional[str]:
    return pngs_ok(os.path.join(paths["out"], "frames"))


def check_json_if_any(name: str) -> Callable[[Dict[str, str]], Optional[str]]:
    def check(paths: Dict[str, str]) -> Optional[str]:
        path = os.path.join(paths["out"], name)
        return json_ok(path) if os.path.exists(path) else None
    return check


def check_onnx_if_any(paths: Dict[str, str]) -> Optional[str]:
    path = os.path.join(paths["out"], "m.onnx")
    if not os.path.exists(path):
        return None
    import onnx

    try:
        onnx.checker.check_model(onnx.load(path))
    except Exception as exc:  # noqa: BLE001 - any failure means a damaged file
        return "m.onnx damaged: {}".format(exc)
    return None


def check_search_journal(paths: Dict[str, str]) -> Optional[str]:
    return journal_ok(os.path.join(paths["out"], "s", "journal.jsonl"))


def check_video_if_any(paths: Dict[str, str]) -> Optional[str]:
    path = os.path.join(paths["out"], "out.avi")
    if os.path.exists(path) and video_frames(path) < 1:
        return "out.avi has no readable frame"
    return None


def cases() -> List[Case]:
    M = "{model}"
    run_ok = ["--model", M, "{in}/in.avi"]
    train = "{py} {in}/train.py {{arch}} {{result}}"
    slow_train = "{py} {in}/train.py {{arch}} {{result}} 3"
    sr = ["--table", "{in}/table.json", *SPACE]
    tr = sr + ["--trainer", "{in}/cls", "--batch-size", "2", "--max-trials", "1", "--out", "{out}/s", "--quiet",
               "--no-plots"]
    ex = [TINY, "--size", "64x48", "-o", "{out}/m.onnx"]
    bm = ["--models", TINY, "--sizes", "64x48", "--rounds", "1", "--warmup", "0", "--runs-per-round", "1",
          "--no-progress", "--backend", "onnxruntime"]
    ev = ["--data", "{in}/city", "--model", M, "--quiet"]
    c: List[Case] = []
    add = c.append

    # --- dfseg-run: corrupt and wrong files
    for f in ("empty.onnx", "trunc.onnx", "text.onnx", "notseg.onnx", "strinput.onnx", "tiny.safetensors"):
        add(Case("run-model-" + f, "run", ["--model", "{in}/" + f, "{in}/in.avi", "none"], f))
    for f in ("empty.avi", "trunc.avi", "text.avi"):
        add(Case("run-input-" + f, "run", ["--model", M, "{in}/" + f, "{out}/o.avi"], f))
    add(Case("run-input-badframes", "run", ["--model", M, "{in}/badframes", "{out}/frames/"], ["a.png", "b.png"]))
    add(Case("run-input-gray-png", "run", ["--model", M, "{in}/gray", "{out}/frames/"], "a.png", kind="ok_or_error",
             check=lambda p: pngs_ok(os.path.join(p["out"], "frames"))))
    add(Case("run-input-1x1-image", "run", ["--model", M, "{in}/tiny-image.png", "{out}/frames/"], "tiny-image.png",
             kind="ok_or_error"))
    for f in ("empty.safetensors", "trunc.safetensors", "hugeheader.safetensors", "other-keys.safetensors",
              "empty.pt", "trunc.pt", "list.pt", "tensor.pt"):
        add(Case("run-weights-" + f, "run", ["--model", TINY, "--weights", "{in}/" + f, "--size", "64x48",
                                             "{in}/in.avi", "none"], f))
    add(Case("run-weights-wrong-arch", "run", ["--model", "df1-seg", "--weights", "{in}/tiny.safetensors",
                                               "--size", "64x48", "{in}/in.avi", "none"], "tiny.safetensors"))
    add(Case("run-token-empty", "run", run_ok + ["http://127.0.0.1:0", "--http-token-file", "{in}/token-empty.txt"],
             "token-empty.txt"))
    add(Case("run-token-binary", "run", run_ok + ["http://127.0.0.1:0", "--http-token-file", "{in}/token-binary.txt"],
             "token-binary.txt"))
    add(Case("run-token-dir", "run", run_ok + ["http://127.0.0.1:0", "--http-token-file", "{in}/empty"], "empty"))
    add(Case("run-calibration-text", "run", run_ok + ["none", "--precision", "int8", "--calibration", "{in}/notes.txt",
                                                     "--engine-cache", "{out}/engines"], "notes.txt"))
    add(Case("run-calibration-empty-dir", "run", run_ok + ["none", "--precision", "int8", "--calibration",
                                                          "{in}/empty", "--engine-cache", "{out}/engines"], "empty"))
    add(Case("run-engine-cache-is-file", "run", run_ok + ["none", "--precision", "fp16", "--engine-cache",
                                                         "{in}/notes.txt"], "notes.txt"))
    # --- dfseg-run: numbers
    for flag, value in (("--max-frames", "0"), ("--max-frames", "-1"), ("--camera-fps", "0"), ("--camera-fps", "nan"),
                        ("--queue-size", "0"), ("--queue-size", "1000000000000"), ("--reconnect-attempts", "-2"),
                        ("--alpha", "1.5"), ("--alpha", "-0.1"), ("--output-fps", "inf"), ("--output-fps", "1e308"),
                        ("--threads", "100000"), ("--calibration-images", "0"), ("--camera", "-1"),
                        ("--workspace-mb", "0")):
        add(Case("run-num{}={}".format(flag, value), "run", run_ok + ["{out}/o.avi", flag, value],
                 [flag, "v4l2://" + value]))
    add(Case("run-size-0x0", "run", run_ok + ["none", "--size", "0x0"], "0x0"))
    add(Case("run-camera-size-neg", "run", run_ok + ["none", "--camera-size=-64x48"], "-64x48"))
    # --- dfseg-run: paths
    add(Case("run-model-under-file", "run", ["--model", "{in}/notes.txt/m.onnx", "{in}/in.avi", "none"], "notes.txt"))
    add(Case("run-input-under-file", "run", ["--model", M, "{in}/notes.txt/in.avi", "none"], "notes.txt"))
    add(Case("run-out-equals-model", "run", run_ok + ["{model}"], "model.onnx"))
    add(Case("run-save-labels-equals-model", "run", run_ok + ["none", "--save-labels", "{model}"], "model.onnx"))
    add(Case("run-out-equals-token", "run", run_ok + ["{in}/notes.txt.avi", "--http-token-file", "{in}/notes.txt"],
             "notes", kind="ok_or_error"))
    add(Case("run-out-ro", "run", run_ok + ["{ro}/o.avi"], "ro", pre=mount_ro, post=umount_ro))
    add(Case("run-labels-ro", "run", run_ok + ["none", "--save-labels", "{ro}/labels"], "ro", pre=mount_ro,
             post=umount_ro))
    add(Case("run-frames-ro", "run", run_ok + ["{ro}/frames/"], "ro", pre=mount_ro, post=umount_ro))
    add(Case("run-out-nonexistent-dir", "run", run_ok + ["{out}/no/such/dir/o.avi"], "no/such/dir",
             kind="ok_or_error", check=lambda p: None if os.path.exists(os.path.join(p["out"], "no/such/dir/o.avi"))
             else "exit 0 but no output"))
    # --- dfseg-run: URLs
    for url in ("rtsp://[::1", "rtsp://", "rtsp://127.0.0.1:99999/s", "ftp://127.0.0.1/v.avi",
                "file:///nonexistent/v.avi", "http://127.0.0.1:1/video", "csi://abc", "/dev/video99", "v4l2://-1"):
        add(Case("run-input-url " + url, "run", ["--model", M, url, "none", "--reconnect-attempts", "0"],
                 url.split("//")[-1].split("/")[0][:8] or url))
    for url in ("http://127.0.0.1:99999", "http://256.0.0.1:8080", "rtsp://127.0.0.1:8554/out", "display://x",
                "http://:abc", "http://127.0.0.1:{port}"):
        add(Case("run-output-url " + url, "run", run_ok + [url], [url.split("//")[-1][:9] or url, url.split("//")[0]],
                 pre=hold_port if "{port}" in url else None, post=free_port if "{port}" in url else None))
    add(Case("run-camera-abc", "run", ["--model", M, "--camera", "abc", "none"], ["--camera", "abc"]))
    # --- dfseg-export
    for f in ("empty.json", "list.json", "string.json", "null.json", "arch-stages-str.json", "arch-2stages.json",
              "arch-negwidth.json", "arch-zerowidth.json", "arch-classes-str.json", "arch-classes0.json",
              "arch-true.json", "arch-floatwidth.json"):
        add(Case("export-arch-" + f, "export", ["{in}/" + f, "--size", "64x48", "-o", "{out}/m.onnx"],
                 [f, "stages", "classes", "width"]))
    for f in ("empty.safetensors", "trunc.safetensors", "hugeheader.safetensors", "other-keys.safetensors",
              "empty.pt", "trunc.pt", "list.pt", "tensor.pt"):
        add(Case("export-weights-" + f, "export", ex + ["--weights", "{in}/" + f], f))
    add(Case("export-weights-dir", "export", ex + ["--weights", "{in}/empty"], "empty"))
    add(Case("export-weights-missing", "export", ex + ["--weights", "{in}/nope.safetensors"], "nope.safetensors"))
    for flag, value in (("--opset", "0"), ("--opset", "-1"), ("--opset", "999"), ("--calibration-images", "-1")):
        add(Case("export-num{}={}".format(flag, value), "export", ex + [flag + "=" + value], [flag, flag[2:]]))
    for size in ("0x0", "64x48.5", "nanxnan", "-64x48", "1e9x1", "64x"):
        add(Case("export-size " + size, "export", [TINY, "--size=" + size, "-o", "{out}/m.onnx"], size))
    add(Case("export-out-equals-arch", "export", ["{in}/arch-floatwidth.json", "--size", "64x48", "-o",
                                                  "{in}/arch-floatwidth.json"], "arch-floatwidth.json"))
    add(Case("export-out-ro", "export", [TINY, "--size", "64x48", "-o", "{ro}/m.onnx"], "ro", pre=mount_ro,
             post=umount_ro))
    add(Case("export-out-nonexistent-dir", "export", [TINY, "--size", "64x48", "-o", "{out}/a/b/m.onnx"], "a/b",
             kind="ok_or_error"))
    add(Case("export-out-under-file", "export", [TINY, "--size", "64x48", "-o", "{in}/notes.txt/m.onnx"], "notes.txt"))
    add(Case("export-bundle-ro", "export", [TINY, "--size", "64x48", "--bundle", "{ro}/b"], "ro", pre=mount_ro,
             post=umount_ro))
    add(Case("export-bundle-is-file", "export", [TINY, "--size", "64x48", "--bundle", "{in}/notes.txt"], "notes.txt"))
    add(Case("export-int8-calibration-broken", "export", ex + ["--precision", "int8", "--calibration",
                                                               "{in}/badframes"], ["badframes", "a.png", "b.png"]))
    add(Case("export-int8-calibration-missing", "export", ex + ["--precision", "int8"], "--calibration"))
    # --- dfseg-bench
    for d in ("bundle-empty", "bundle-garbage", "bundle-schema", "bundle-list", "bundle-badsha", "bundle-escape",
              "bundle-missing", "notes.txt"):
        add(Case("bench-bundle-" + d, "bench", ["--bundle", "{in}/" + d] + bm[:4] + bm[4:], [d, "manifest", ".onnx"]))
    for f in ("empty.json", "list.json", "null.json", "table-trunc.json", "table-nan.json", "table-neg.json",
              "table-entries-list.json", "table-str-ms.json"):
        add(Case("bench-validate-" + f, "bench", ["--validate-table", "{in}/" + f, *SPACE, "--random", "1",
                                                  "--no-progress"], f))
        add(Case("search-table-" + f, "search", ["--table", "{in}/" + f, *SPACE, "--dry-run", "--quiet"], f))
    add(Case("bench-models-json-broken", "bench", ["--models", "{in}/arch-negwidth.json"] + bm[2:],
             ["arch-negwidth.json", "width"]))
    for flag, value in (("--rounds", "0"), ("--runs-per-round", "0"), ("--warmup", "-1"), ("--warmup", "inf"),
                        ("--pin-cpu", "999"), ("--pin-cpu", "-1"), ("--pin-cpu", "x"), ("--workspace-mb", "0"),
                        ("--seed", "1e3"), ("--classes", "0")):
        add(Case("bench-num{}={}".format(flag, value), "bench", bm + [flag, value], flag))
    for size in ("0x0", "-64x48"):
        add(Case("bench-sizes " + size, "bench", ["--models", TINY, "--sizes=" + size, "--no-progress"], size))
    add(Case("bench-json-ro", "bench", bm + ["--json", "{ro}/r.json"], "ro", pre=mount_ro, post=umount_ro))
    add(Case("bench-table-ro", "bench", ["--table", "{ro}/t.json", "--models", TINY, "--no-space", "--no-progress"],
             "ro", pre=mount_ro, post=umount_ro))
    add(Case("bench-csv-equals-models-json", "bench", ["--models", "{in}/arch-floatwidth.json", "--csv",
                                                       "{in}/arch-floatwidth.json", "--no-progress"],
             "arch-floatwidth.json"))
    add(Case("bench-work-dir-is-file", "bench", bm + ["--work-dir", "{in}/notes.txt"], "notes.txt"))
    add(Case("bench-png-under-file", "bench", ["--validate-table", "{in}/table.json", *SPACE, "--random", "1",
                                               "--png", "{in}/notes.txt/p.png", "--no-progress"], "notes.txt"))
    # --- dfseg-search
    for f in ("empty.csv", "header-only.csv", "acc-nan.csv", "acc-str.csv", "acc-nocol.csv", "acc-badarch.csv"):
        add(Case("search-replay-" + f, "search", sr + ["--replay", "{in}/" + f, "--out", "{out}/s", "--quiet",
                                                       "--no-plots", "--max-trials", "1"], f))
    add(Case("search-resume-midgarbage", "search", sr + ["--resume", "--out", "{out}/s", "--train-cmd", train,
                                                         "--max-trials", "3", "--quiet", "--no-plots"],
             "journal.jsonl", pre=copy_in("search-midgarbage")))
    add(Case("search-resume-nan", "search", sr + ["--resume", "--out", "{out}/s", "--train-cmd", train,
                                                  "--max-trials", "3", "--quiet", "--no-plots"],
             "journal.jsonl", pre=copy_in("search-nanrecord")))
    add(Case("search-resume-other-space", "search", ["--table", "{in}/table.json", "--widths", "64,128", "--blocks",
                                                     "1-2,1-2,1-2", "--resume", "--out", "{out}/s", "--train-cmd",
                                                     train, "--max-trials", "3", "--quiet", "--no-plots"],
             ["--widths", "space", "journal"], pre=copy_in("search-good")))
    for flag, value in (("--epochs", "0"), ("--batch-size", "0"), ("--lr", "nan"), ("--lr", "-1"),
                        ("--val-every", "-1"), ("--loader-workers", "-1"), ("--steps-per-epoch", "0"),
                        ("--devices-per-trial", "0"), ("--gpus-per-trial", "-1"), ("--cpus-per-trial", "0"),
                        ("--scale", "2-1"), ("--scale", "nan-1"), ("--crop", "0x0"), ("--patience", "0"),
                        ("--max-trials", "0"), ("--min-epochs", "0"), ("--stop-margin", "nan"),
                        ("--min-curves", "0"), ("--seed", "99999999999999999999999"), ("--classes", "0")):
        add(Case("search-num{}={}".format(flag, value), "search", tr + [flag, value], flag))
    add(Case("search-tmin-above-tmax", "search", sr + ["--dry-run", "--t-min", "5", "--t-max", "1", "--quiet"],
             ["--t-min", "--t-max", "t_min"]))
    add(Case("search-device-bogus", "search", tr + ["--device", "tpu:7"], ["--device", "tpu"]))
    add(Case("search-trainer-is-file", "search", sr + ["--trainer", "{in}/notes.txt", "--out", "{out}/s",
                                                       "--quiet", "--no-plots"], "notes.txt"))
    add(Case("search-train-cmd-missing-binary", "search", sr + ["--train-cmd", "/no/such/trainer {arch} {result}",
                                                                "--out", "{out}/s", "--quiet", "--no-plots"],
             "/no/such/trainer"))
    add(Case("search-train-cmd-no-placeholders", "search", sr + ["--train-cmd", "{py} -c pass", "--out", "{out}/s",
                                                                 "--quiet", "--no-plots"], ["{arch}", "{result}"]))
    add(Case("search-out-ro", "search", sr + ["--train-cmd", train, "--out", "{ro}/s", "--quiet", "--no-plots"],
             "ro", pre=mount_ro, post=umount_ro))
    add(Case("search-space-out-ro", "search", sr + ["--dry-run", "--space-out", "{ro}/space.jsonl", "--quiet"], "ro",
             pre=mount_ro, post=umount_ro))
    add(Case("search-out-equals-table-dir", "search", ["--table", "{out}/t/table.json", *SPACE, "--train-cmd", train,
                                                       "--out", "{out}/t", "--max-trials", "1", "--quiet",
                                                       "--no-plots"], "table.json", kind="ok_or_error",
             pre=lambda p: (os.makedirs(os.path.join(p["out"], "t")),
                            shutil.copy(os.path.join(INPUTS, "table.json"), os.path.join(p["out"], "t")))[0],
             check=lambda p: json_ok(os.path.join(p["out"], "t", "table.json"))))
    add(Case("search-backbone-broken", "search", sr + ["--decoder-search", "--backbone", "{in}/arch-negwidth.json",
                                                       "--dry-run", "--quiet"], ["arch-negwidth.json", "width"]))
    # --- dfseg-eval
    add(Case("eval-data-is-file", "eval", ["--data", "{in}/notes.txt", "--model", M, "--quiet"], "notes.txt"))
    add(Case("eval-data-no-gt", "eval", ["--data", "{in}/city-noGT", "--model", M, "--quiet"], ["gtFine", "city-noGT"]))
    add(Case("eval-split-escape", "eval", ev + ["--split", "../../etc"], "--split"))
    add(Case("eval-model-trunc", "eval", ["--data", "{in}/city", "--model", "{in}/trunc.onnx", "--quiet"],
             "trunc.onnx"))
    add(Case("eval-model-notseg", "eval", ["--data", "{in}/city", "--model", "{in}/notseg.onnx", "--quiet"],
             "notseg.onnx"))
    add(Case("eval-predictions-missing", "eval", ["--data", "{in}/city", "--predictions", "{in}/nope", "--quiet"],
             "nope"))
    add(Case("eval-predictions-file", "eval", ["--data", "{in}/city", "--predictions", "{in}/notes.txt", "--quiet"],
             "notes.txt"))
    add(Case("eval-predictions-badpng", "eval", ["--data", "{in}/city", "--predictions", "{out}/p", "--quiet"],
             "aachen_000000_000019", pre=lambda p: _bad_prediction(p["out"])))
    for flag, value in (("--limit", "-1"), ("--limit", "1.5"), ("--size", "0x0")):
        add(Case("eval-num{}={}".format(flag, value), "eval", ev + [flag, value], [flag, value]))
    add(Case("eval-json-ro", "eval", ev + ["--json", "{ro}/e.json"], "ro", pre=mount_ro, post=umount_ro))
    add(Case("eval-plot-under-file", "eval", ev + ["--plot", "{in}/notes.txt/p.png"], "notes.txt"))
    # --- dfseg-convert
    for f in ("empty.caffemodel", "text.caffemodel", "trunc.caffemodel"):
        add(Case("convert-" + f, "convert", ["df1", "{in}/" + f, "{out}/w.safetensors"], f))
    add(Case("convert-out-ro", "convert", ["df1", "{in}/trunc.caffemodel", "{ro}/w.safetensors"],
             ["ro", "trunc.caffemodel"], pre=mount_ro, post=umount_ro))
    add(Case("convert-bad-model", "convert", ["df9", "{in}/trunc.caffemodel", "{out}/w.safetensors"], "df9"))
    add(Case("convert-out-is-dir", "convert", ["df1", "{in}/trunc.caffemodel", "{in}/empty"],
             ["empty", "trunc.caffemodel"]))
    # --- unicode and spaces in paths (these must work)
    uni = "{in}/" + UNI_DIR
    add(Case("ok-run-unicode", "run", ["--model", uni + "/mödel 1.onnx", uni + "/vídeo ☃ 1.avi", "{out}/ré sult ☃.avi",
                                      "--save-labels", "{out}/lä bels"], kind="ok",
             check=lambda p: None if video_frames(os.path.join(p["out"], "ré sult ☃.avi")) == 3
             else "output lacks frames"))
    add(Case("ok-export-unicode", "export", [TINY, "--size", "64x48", "-o", "{out}/mö del ☃.onnx"], kind="ok"))
    add(Case("ok-search-unicode", "search", ["--table", uni + "/täble 1.json", *SPACE, "--train-cmd", train,
                                            "--max-trials", "1", "--out", "{out}/sé arch", "--quiet"], kind="ok"))
    add(Case("ok-eval-unicode", "eval", ["--data", uni + "/cíty", "--model", uni + "/mödel 1.onnx", "--json",
                                        "{out}/é val.json", "--quiet"], kind="ok"))
    add(Case("missing-unicode-model", "run", ["--model", uni + "/nö.onnx", "{in}/in.avi", "none"], "nö.onnx"))
    # --- the Python API
    add(api_case("api-load-missing", "dfseg.load('{in}/nope.onnx')", "nope.onnx"))
    add(api_case("api-load-dir", "dfseg.load('{in}/empty')", "empty"))
    add(api_case("api-load-trunc", "dfseg.load('{in}/trunc.onnx')", "trunc.onnx"))
    add(api_case("api-load-threads0", "dfseg.load('{model}', threads=0)", "threads"))
    add(api_case("api-load-threads-str", "dfseg.load('{model}', threads='2')", "threads"))
    add(api_case("api-load-backend", "dfseg.load('{model}', backend='foo')", "foo"))
    add(api_case("api-load-size", "dfseg.load('{model}', size='0x0')", "0x0"))
    add(api_case("api-load-precision", "dfseg.load('{model}', precision='fp64')", "fp64"))
    add(api_case("api-load-providers", "dfseg.load('{model}', providers=['bogus'])", "bogus"))
    add(api_case("api-load-weights", "dfseg.load('" + TINY + "', weights='{in}/trunc.safetensors', size='64x48')",
                 "trunc.safetensors"))
    add(api_case("api-call-empty-frame", "m = dfseg.load('{model}')\nm(np.zeros((0, 0, 3), np.uint8))", "frame"))
    add(api_case("api-call-float-frame", "m = dfseg.load('{model}')\nm(np.zeros((48, 64, 3), np.float32))", "frame"))
    add(api_case("api-call-list", "m = dfseg.load('{model}')\nm([[1, 2, 3]])", "frame"))
    add(api_case("api-call-closed", "m = dfseg.load('{model}')\nm.close()\nm(np.zeros((48, 64, 3), np.uint8))",
                 "closed"))
    add(api_case("api-stream-missing", "m = dfseg.load('{model}')\nm.stream('{in}/nope.avi')", "nope.avi"))
    add(api_case("api-stream-out-is-input", "m = dfseg.load('{model}')\nm.stream('{in}/in.avi', outputs=['{in}/in.avi'])",
                 "in.avi"))
    add(api_case("api-stream-max-frames", "m = dfseg.load('{model}')\nm.stream('{in}/in.avi', max_frames=0)",
                 "max_frames"))
    add(api_case("api-stream-alpha-nan", "m = dfseg.load('{model}')\nm.stream('{in}/in.avi', outputs=['{out}/o.avi'], "
                                         "alpha=float('nan'))", "alpha"))
    add(api_case("api-stream-queue0", "m = dfseg.load('{model}')\ns = m.stream('{in}/in.avi', queue_size=0)\n"
                                      "list(s)", "queue_size"))
    add(api_case("api-stream-latency", "m = dfseg.load('{model}')\nm.stream('{in}/in.avi', latency='fast')", "fast"))
    add(api_case("api-stream-loops", "m = dfseg.load('{model}')\nm.stream('{in}/in.avi', loops=-7)", "loops"))
    add(api_case("api-stream-rtsp", "m = dfseg.load('{model}')\nm.stream('rtsp://127.0.0.1:1/x')", "rtsp://"))
    add(api_case("api-stream-output-ro", "m = dfseg.load('{model}')\nm.stream('{in}/in.avi', outputs=['/proc/o.avi'])",
                 "/proc"))
    add(api_case("api-overlay-shape", "from dfseg.api import overlay\noverlay(np.zeros((48, 64, 3), np.uint8), "
                                      "np.zeros((10, 10), np.uint8))", ["classmap", "shape"]))
    add(api_case("api-colorize-float", "from dfseg.api import colorize\ncolorize(np.full((4, 4), 99.5))",
                 ["classmap", "99"]))
    # --- signals: outputs finalised, exit 130/143
    looping = ["--model", M, "{in}/long.avi", "{out}/out.avi", "--save-labels", "{out}/labels", "--input-loop", "-1"]
    add(Case("sig-run-SIGINT", "run", looping, kind="signal", signals=[signal.SIGINT], wait_for="labels",
             check=check_run_outputs))
    add(Case("sig-run-SIGTERM", "run", looping, kind="signal", signals=[signal.SIGTERM], wait_for="labels",
             check=check_run_outputs))
    add(Case("sig-run-SIGINT-twice", "run", looping, kind="signal", signals=[signal.SIGINT, signal.SIGINT],
             wait_for="labels", check=check_run_outputs))
    add(Case("sig-run-frames-folder-SIGTERM", "run", ["--model", M, "{in}/long.avi", "{out}/frames/", "--input-loop",
                                                      "-1"], kind="signal", signals=[signal.SIGTERM],
             wait_for="frames", check=check_frames_folder))
    add(Case("sig-search-SIGTERM", "search", sr + ["--train-cmd", slow_train, "--out", "{out}/s", "--quiet",
                                                   "--no-plots", "--max-trials", "5"], kind="signal",
             signals=[signal.SIGTERM], wait_for="s/journal.jsonl", check=check_search_journal))
    add(Case("sig-bench-SIGINT", "bench", bm[:4] + ["--rounds", "1000", "--warmup", "0", "--no-progress",
                                                     "--backend", "onnxruntime", "--json", "{out}/r.json"],
             kind="signal", signals=[signal.SIGINT], wait_for="@8", check=check_json_if_any("r.json")))
    add(Case("sig-export-SIGTERM", "export", ["df1-seg", "--size", "1024x512", "-o", "{out}/m.onnx"], kind="signal",
             signals=[signal.SIGTERM], wait_for="@2", check=check_onnx_if_any))
    # --- two processes writing the same output
    add(Case("race-run-same-out", "run", ["--model", M, "{in}/long.avi", "{out}/out.avi"], kind="race",
             check=check_video_if_any))
    add(Case("race-export-same-out", "export", [TINY, "--size", "64x48", "-o", "{out}/m.onnx"], kind="race",
             check=check_onnx_if_any))
    add(Case("race-search-same-out", "search", sr + ["--train-cmd", slow_train, "--out", "{out}/s", "--quiet",
                                                     "--no-plots", "--max-trials", "2"], kind="race",
             check=check_search_journal))
    add(Case("race-bench-same-json", "bench", bm + ["--json", "{out}/r.json"], kind="race",
             check=check_json_if_any("r.json")))
    return c


def _bad_prediction(out: str) -> None:
    os.makedirs(os.path.join(out, "p"))
    with open(os.path.join(out, "p", "aachen_000000_000019.png"), "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n broken")


# ------------------------------------------------------------------------------------------ running
def command(case: Case, paths: Dict[str, str]) -> List[str]:
    fields = dict(paths, model=os.path.join(INPUTS, "model.onnx"), py=PY)
    fields.setdefault("port", "1")

    def fill(text: str) -> str:
        for key, value in fields.items():
            text = text.replace("{" + key + "}", value)
        return text.replace("{{", "{").replace("}}", "}")

    args = [fill(a) for a in case.args]
    if case.prog == "api":
        return [PY] + args
    return [PY, "-m", "dfseg.cli." + case.prog] + args


def stderr_lines(text: str) -> List[str]:
    return [line for line in text.splitlines() if line.strip()]


def judge_error(case: Case, rc: int, err: str, changed: List[str], leftover: List[str]) -> List[str]:
    lines = stderr_lines(err)
    prefix = "api: error: " if case.prog == "api" else "dfseg-{}: error: ".format(case.prog)
    faults = []
    if rc != 2:
        faults.append("exit {}".format(rc))
    if len(lines) != 1:
        faults.append("{} stderr lines".format(len(lines)))
    if "Traceback" in err:
        faults.append("traceback")
    error_lines = [line for line in lines if line.startswith(prefix)]
    if not error_lines:
        faults.append("no '{}' line".format(prefix.strip()))
    elif case.want and not any(w in error_lines[-1] for w in case.want):
        faults.append("names none of {}".format(case.want))
    if changed:
        faults.append("changed: {}".format(", ".join(changed[:3])))
    if leftover:
        faults.append("left behind: {}".format(", ".join(leftover[:3])))
    return faults


def run_case(case: Case, timeout: float) -> Dict[str, Any]:
    out = os.path.join(OUT, case.name.replace("/", "_").replace(" ", "_"))
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    paths = {"in": INPUTS, "out": out, "ro": os.path.join(out, "ro")}
    if case.pre:
        case.pre(paths)
    argv = command(case, paths)
    before_in, before_out = snapshot(INPUTS), snapshot(out)
    started = time.monotonic()
    record: Dict[str, Any] = {"case": case.name, "command": argv, "kind": case.kind}
    try:
        if case.kind == "race":
            procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, encoding="utf-8", errors="backslashreplace", env=env(),
                                      cwd=out, stdin=subprocess.DEVNULL) for _ in range(2)]
            results = [p.communicate(timeout=timeout) for p in procs]
            rcs = [p.returncode for p in procs]
            err = "\n--- second process ---\n".join(r[1] for r in results)
            rc = max(rcs)
            record["exit_codes"] = rcs
        elif case.kind == "signal":
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, encoding="utf-8", errors="backslashreplace", env=env(),
                                    cwd=out, stdin=subprocess.DEVNULL, start_new_session=True)
            _wait_for(case.wait_for, out, proc, timeout / 2)
            for signum in case.signals:
                if proc.poll() is None:
                    proc.send_signal(signum)
                time.sleep(0.2)
            _, err = proc.communicate(timeout=timeout)
            rc = proc.returncode
        else:
            proc = subprocess.run(argv, capture_output=True, encoding="utf-8", errors="backslashreplace", env=env(), cwd=out, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
            rc, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired:
        rc, err = None, "(timed out after {:.0f} s)".format(timeout)
        for p in locals().get("procs", []) or [locals().get("proc")]:
            if p is not None and hasattr(p, "kill"):
                p.kill()
    finally:
        if case.post:
            case.post(paths)
    record["seconds"] = round(time.monotonic() - started, 1)
    after_in = snapshot(INPUTS)
    changed = sorted(k for k in set(before_in) | set(after_in) if before_in.get(k) != after_in.get(k))
    after_out = snapshot(out)
    leftover = sorted(k for k in set(before_out) | set(after_out) if before_out.get(k) != after_out.get(k))
    lines = stderr_lines(err)
    record.update(exit_code=rc, stderr_lines=len(lines), stderr_head=lines[:5], should=case.should)
    faults: List[str] = []
    if rc is None:
        faults.append("timed out")
    elif case.kind == "error":
        faults = judge_error(case, rc, err, changed, leftover)
    elif case.kind == "ok_or_error":
        if rc == 0:
            problem = case.check(paths) if case.check else None
            faults = [problem] if problem else []
            if changed:
                faults.append("changed: {}".format(", ".join(changed[:3])))
        else:
            faults = judge_error(case, rc, err, changed, leftover)
    elif case.kind == "ok":
        if rc != 0:
            faults.append("exit {}".format(rc))
        if "Traceback" in err:
            faults.append("traceback")
        problem = case.check(paths) if case.check and rc == 0 else None
        if problem:
            faults.append(problem)
    elif case.kind == "signal":
        expected = 130 if case.signals[0] == signal.SIGINT else 143
        if rc != expected:
            faults.append("exit {} (want {})".format(rc, expected))
        if "Traceback" in err:
            faults.append("traceback")
        problem = case.check(paths) if case.check else None
        if problem:
            faults.append(problem)
        faults += ["temporary file left: " + t for t in temp_files(out)]
    elif case.kind == "race":
        rcs = record["exit_codes"]
        if not all(code in (0, 2) for code in rcs) or 0 not in rcs:
            faults.append("exit codes {}".format(rcs))
        if "Traceback" in err:
            faults.append("traceback")
        for proc_err, code in zip(err.split("\n--- second process ---\n"), rcs):
            if code == 2 and len(stderr_lines(proc_err)) != 1:
                faults.append("refusal is {} lines".format(len(stderr_lines(proc_err))))
        problem = case.check(paths) if case.check else None
        if problem:
            faults.append(problem)
        faults += ["temporary file left: " + t for t in temp_files(out)]
    if case.kind != "error" and changed:
        faults.append("input changed: {}".format(", ".join(changed[:3])))
    record["faults"] = faults
    record["verdict"] = "handled" if not faults else "NOT handled"
    return record


def _wait_for(what: Optional[str], out: str, proc: "subprocess.Popen[str]", limit: float) -> None:
    if what and what.startswith("@"):
        time.sleep(float(what[1:]))
        return
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        path = os.path.join(out, what or "")
        if os.path.isfile(path) and os.path.getsize(path) > 0:
            return
        if os.path.isdir(path) and len(os.listdir(path)) >= 3:
            return
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="run only cases whose name holds this text")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per case")
    parser.add_argument("--list", action="store_true", help="list the cases and stop")
    options = parser.parse_args()
    selected = [case for case in cases() if options.k in case.name]
    if options.list:
        for case in selected:
            print(case.name)
        return 0
    build_inputs()
    os.makedirs(OUT, exist_ok=True)
    results = []
    print("{:<46} {:>5} {:>5}  {}".format("case", "exit", "lines", "verdict"))
    for case in selected:
        record = run_case(case, options.timeout)
        results.append(record)
        print("{:<46} {:>5} {:>5}  {}{}".format(case.name[:46], str(record["exit_code"]), record["stderr_lines"],
                                                record["verdict"],
                                                "" if not record["faults"] else ": " + "; ".join(record["faults"])),
              flush=True)
    handled = sum(r["verdict"] == "handled" for r in results)
    summary = {"handled": handled, "not_handled": len(results) - handled, "cases": results}
    path = os.path.join(SWEEP, "results.json" if not options.k else "results-{}.json".format(
        "".join(ch if ch.isalnum() else "_" for ch in options.k)))
    with open(path, "w") as handle:
        json.dump(summary, handle, indent=2, ensure_ascii=False)
    print("{} cases: {} handled, {} not handled; details in {}".format(len(results), handled,
                                                                        len(results) - handled, path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
