"""Shared helpers for the dfseg-search tests: a synthetic table on disk and a training script."""

import sys

from dfseg.search.landscapes import synthetic_table, tiny_space

# A stand-in training command: its accuracy grows with every block's width (the partial-order
# assumption holds), it fails on purpose when stage 3 is FAIL_STAGE3 (e.g. 64+64), with
# KILL_AT=N it kills its parent (the search) once, while training trial N, and with FILL_MARKER (a file it
# deletes: once) and FILL_TRIAL=00005 it fills the disk with the file FILL_DISK while training that trial,
# then fails writing its result as a training program on a full disk does.
TRAIN_SCRIPT = r'''
import json, math, os, signal, sys
arch_path, result_path = sys.argv[1], sys.argv[2]
arch = json.load(open(arch_path))
widths = [w for stage in arch["stages"] for w in stage]
if os.environ.get("FAIL_STAGE3") == "+".join(str(w) for w in arch["stages"][0]):
    sys.exit(3)
marker = os.environ.get("KILL_MARKER")
if marker and os.path.exists(marker):
    count = int(open(marker).read() or 0) + 1
    if count >= int(os.environ["KILL_AT"]):
        os.unlink(marker)
        os.kill(os.getppid(), signal.SIGKILL)
        sys.exit(1)
    open(marker, "w").write(str(count))
fill_marker = os.environ.get("FILL_MARKER")
if fill_marker and os.path.exists(fill_marker) and os.path.basename(
        os.path.dirname(os.path.abspath(result_path))) == os.environ["FILL_TRIAL"]:
    os.unlink(fill_marker)
    fd = os.open(os.environ["FILL_DISK"], os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        os.close(fd)
if os.environ.get("RECORD_PARENT"):  # which process ran this training (e.g. a Ray worker)
    with open(result_path + ".parent", "wb") as out:
        out.write(open("/proc/{}/cmdline".format(os.getppid()), "rb").read())
accuracy = 40 + sum(math.log2(w / 32.0) * (1 + 0.1 * (i % 3)) for i, w in enumerate(widths))
json.dump({"accuracy": round(accuracy, 4)}, open(result_path, "w"))
'''


def write_table(path, **space_options):
    space = tiny_space(**space_options)
    synthetic_table(space.all_parts()).save(str(path))
    return space


def write_train_script(directory):
    path = directory / "train.py"
    path.write_text(TRAIN_SCRIPT)
    return "{} {} {{arch}} {{result}}".format(sys.executable, path)


class DyingEvaluator:
    """Kills its worker process the first time it sees a trial whose row is a multiple of ``every``
    (and every time for rows listed in ``always``); otherwise returns the landscape's accuracy."""

    def __init__(self, accuracy, every=4, always=()):
        self.accuracy, self.every, self.always = accuracy, every, set(always)

    def __call__(self, trial, directory):
        import os

        os.makedirs(directory, exist_ok=True)
        marker = os.path.join(directory, "died")
        if trial.index in self.always or (trial.index % self.every == 0 and not os.path.exists(marker)):
            open(marker, "w").close()
            os._exit(1)
        if trial.index % 7 == 3:
            raise ValueError("evaluator bug for row {}".format(trial.index))
        return float(self.accuracy[trial.index])
