"""dfseg-search on a disk that fills (a 4 MB tmpfs, ``small_disk`` in conftest): one line naming the
file, exit code 2, the journal whole, no broken file under a final name, and once space is freed
--resume ends where an uninterrupted search does, without losing a journalled trial."""

import csv
import json
import os
import re
import subprocess
import sys

import pytest
from search_fixtures import write_table, write_train_script

from dfseg.journal import Journal, read_records

SPACE_ARGS = ["--widths", "64,128,256", "--blocks", "1-2,1-3,1-2", "--t-max", "2.2"]


def search(table, command, out, *extra, env=None):
    argv = [sys.executable, "-m", "dfseg.cli.search", "--table", str(table), "--train-cmd", command, "--out", str(out),
            "--seed", "3", "--patience", "1000", "--max-trials", "16", "--quiet", *SPACE_ARGS, *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=dict(os.environ, **(env or {})))


def finished(out):
    with open(str(out / "trials.csv")) as handle:
        return [(r["trial"], r["arch"], r["accuracy"], r["status"]) for r in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The table, the training command and the outputs of the same search on a disk with room."""
    root = tmp_path_factory.mktemp("straight")
    table = root / "t.json"
    write_table(table)
    command = write_train_script(root)
    done = search(table, command, root / "out")
    assert done.returncode == 0, done.stderr
    return table, command, root / "out"


def assert_whole(out):
    """Every file dfseg wrote under a final name is complete; no temporary file is left."""
    for folder, _, names in os.walk(str(out)):
        assert not [n for n in names if n.startswith(".tmp-")], (folder, names)
    records, good = read_records(str(out / "journal.jsonl"))
    assert good == os.path.getsize(str(out / "journal.jsonl"))  # ends on a whole record
    for name in os.listdir(str(out)):
        path = str(out / name)
        if name.endswith(".json"):
            with open(path) as handle:
                json.load(handle)
        elif name.endswith(".csv"):
            with open(path) as handle:
                rows = list(csv.reader(handle))
            assert rows and all(len(row) == len(rows[0]) for row in rows), path
        elif name.endswith(".png"):
            with open(path, "rb") as handle:
                assert handle.read()[-8:] == b"IEND\xaeB`\x82", path  # a PNG's last chunk
    for trial in os.listdir(str(out / "trials")):
        arch = out / "trials" / trial / "arch.json"
        if arch.exists():
            json.loads(arch.read_text())
    return records


# Where the disk fills: how much is left when the search starts (the files it writes after each result,
# a trial's files), or the training command filling it (it then fails writing its result).
@pytest.mark.parametrize("leave_kb, filled_by_trial", [(48, None), (64, None), (112, None), (160, "00006")],
                         ids=["outputs", "trial-log", "later-trial", "training-command"])
def test_a_search_on_a_full_disk_stops_with_one_line_and_resumes_without_loss(straight, tmp_path, small_disk,
                                                                              fill_disk, leave_kb, filled_by_trial):
    table, command, expected = straight
    out = small_disk / "out"
    filler = small_disk / "filler"
    env = None
    if filled_by_trial:
        marker = tmp_path / "fill-once"
        marker.write_text("")
        env = {"FILL_MARKER": str(marker), "FILL_TRIAL": filled_by_trial, "FILL_DISK": str(filler)}
    else:
        fill_disk(filler, leave_kb=leave_kb)
    stopped = search(table, command, out, env=env)
    assert stopped.returncode == 2, stopped.stderr
    lines = stopped.stderr.strip().splitlines()
    assert "Traceback" not in stopped.stderr and lines[-1].startswith("dfseg-search: error: "), stopped.stderr
    match = re.match(r"dfseg-search: error: (\S+): the disk is full, [\d.]+ MB left; .*continue with --resume$",
                     lines[-1])
    assert match and match.group(1).startswith(str(out)), lines[-1]
    if filled_by_trial:
        assert match.group(1) == str(out / "trials" / filled_by_trial)
        assert "the training command failed: " in lines[-1]
    records = assert_whole(out)
    told = [r["trial"] for r in records if r["type"] == "tell"]
    assert not [r for r in records if r["type"] == "fail"]  # a full disk is no failure of a trial
    assert told == [int(row[0]) for row in finished(expected)[:len(told)]]
    if told and (out / "trials.csv").exists():
        assert finished(out) == finished(expected)[:len(finished(out))]

    filler.unlink()
    resumed = search(table, command, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed {} finished trial(s)".format(len(told)) in resumed.stderr
    assert finished(out) == finished(expected)
    assert (out / "front.json").read_text() == (expected / "front.json").read_text()
    assert_whole(out)


def test_a_journal_append_on_a_full_disk_is_cut_back_and_the_journal_goes_on(small_disk, fill_disk):
    path = str(small_disk / "journal.jsonl")
    journal = Journal(path)
    assert journal.open() == []
    journal.append({"n": 1})
    fill_disk(small_disk / "filler")
    before = open(path, "rb").read()
    with pytest.raises(Exception) as raised:
        journal.append({"n": 2, "pad": "x" * 20000})  # more than the page the journal has
    assert type(raised.value).__name__ == "DiskFullError"
    assert str(raised.value).startswith(path + ": the disk is full") and "\n" not in str(raised.value)
    assert open(path, "rb").read() == before  # no torn record left behind
    (small_disk / "filler").unlink()
    journal.append({"n": 3})
    journal.close()
    assert [r["n"] for r in Journal(path).open()] == [1, 3]
