"""Faults in a search: SIGTERM to dfseg-search ends its training commands' whole process groups,
--timeout does too, failing evaluators stop the search with exit code 1 after --max-failures in a
row, and --resume --retry-failed trains them once the command is fixed.  Real subprocesses and
signals throughout; every wait is for a condition, with a generous deadline."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from search_fixtures import write_table

# Trains forever: records its own pid and a grandchild's (a background helper, like a data loader)
# in the trial directory, then waits.  MODE=fail exits 3 at once; MODE=ok writes an accuracy.
SCRIPT = r"""
import json, os, subprocess, sys, time
arch_path, result_path = sys.argv[1], sys.argv[2]
mode = os.environ.get("MODE", "hang")
if mode == "fail":
    sys.exit(3)
if mode == "ok":
    arch = json.load(open(arch_path))
    json.dump({"accuracy": float(sum(w for stage in arch["stages"] for w in stage))}, open(result_path, "w"))
    sys.exit(0)
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
directory = os.path.dirname(result_path)
with open(os.path.join(directory, "pids.tmp"), "w") as out:
    out.write("{} {}".format(os.getpid(), helper.pid))
os.replace(os.path.join(directory, "pids.tmp"), os.path.join(directory, "pids"))
time.sleep(600)
"""


def wait_until(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def alive(pid):
    try:
        with open("/proc/{}/stat".format(pid)) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False


def pid_files(out):
    found = []
    for folder, _, names in os.walk(str(out)):
        found += [os.path.join(folder, n) for n in names if n == "pids"]
    return found


@pytest.fixture
def search(tmp_path):
    table = tmp_path / "t.json"
    write_table(table)
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    command = "{} {} {{arch}} {{result}}".format(sys.executable, script)
    base = [sys.executable, "-m", "dfseg.cli.search", "--table", str(table), "--train-cmd", command,
            "--out", str(tmp_path / "out"), "--widths", "64,128,256", "--blocks", "1-2,1-3,1-2", "--t-max", "2.2",
            "--quiet", "--no-plots", "--retries", "0"]
    return tmp_path / "out", base


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_ends_the_training_process_groups(search, workers):
    out, base = search
    proc = subprocess.Popen(base + ["--workers", workers, "--max-trials", "4"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, MODE="hang"))
    try:
        assert wait_until(lambda: len(pid_files(out)) >= int(workers)), "no training started"
        pids = [int(p) for path in pid_files(out) for p in open(path).read().split()]
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143 and "dfseg-search: terminated" in stderr and "Traceback" not in stderr, stderr
    assert wait_until(lambda: not any(alive(pid) for pid in pids), 30), [p for p in pids if alive(p)]
    journal = [json.loads(line) for line in open(out / "journal.jsonl")]
    assert [r["type"] for r in journal].count("tell") == 0  # nothing finished, nothing lost or invented

    # Resumed with a working command, the interrupted trials run first and exactly once each.
    asked = sorted(r["trial"] for r in journal if r["type"] == "ask")
    done = subprocess.run(base + ["--workers", workers, "--max-trials", "4", "--resume"], capture_output=True,
                          text=True, timeout=240, env=dict(os.environ, MODE="ok"))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(open(out / "trials.csv")))
    numbers = [int(r["trial"]) for r in rows]
    assert len(numbers) == len(set(numbers)) == 4 and set(asked) <= set(numbers)


def test_timeout_ends_the_commands_grandchildren(search):
    out, base = search
    proc = subprocess.run(base + ["--timeout", "3", "--max-trials", "1", "--max-failures", "1"], capture_output=True,
                          text=True, timeout=240, env=dict(os.environ, MODE="hang"))
    assert proc.returncode == 1 and "timed out after 3.0 s" in proc.stderr, proc.stderr
    pids = [int(p) for path in pid_files(out) for p in open(path).read().split()]
    assert len(pids) == 2 and wait_until(lambda: not any(alive(pid) for pid in pids), 30)


def test_failures_in_a_row_stop_the_search_and_retry_failed_trains_them(search):
    out, base = search
    failed = subprocess.run(base + ["--max-failures", "3"], capture_output=True, text=True, timeout=240,
                            env=dict(os.environ, MODE="fail"))
    lines = [line for line in failed.stderr.splitlines() if "error" in line]
    assert failed.returncode == 1, failed.stderr
    assert len(lines) == 1 and "3 trials failed in a row, the last with: exit code 3" in lines[0], failed.stderr
    assert "--resume --retry-failed" in lines[0]
    rows = list(csv.DictReader(open(out / "trials.csv")))
    failed_archs = {r["arch"] for r in rows}
    assert len(rows) == 3 and all(r["status"] == "failed" for r in rows)

    # Resumed without --retry-failed, the failed candidates stay failed; with it they are trained.
    retried = subprocess.run(base + ["--resume", "--retry-failed", "--max-trials", "8"], capture_output=True,
                             text=True, timeout=240, env=dict(os.environ, MODE="ok"))
    assert retried.returncode == 0 and "retrying 3 failed trial(s)" in retried.stderr, retried.stderr
    rows = list(csv.DictReader(open(out / "trials.csv")))
    trained = {r["arch"] for r in rows if r["status"] == "ok"}
    assert failed_archs <= trained, (failed_archs, trained)  # retried first, before any new draw
    assert len(rows) == 3 + 5  # 3 failed, 3 retried, 2 new: the budget counts every trial


@pytest.mark.parametrize("line, message", [
    ('{"type": "tell", "trial": 0, "accuracy": 50.0, "seconds": 1}', "already has its result"),
    ('{"type": "tell", "trial": 99, "accuracy": 50.0}', "trial 99, which was not asked"),
    ('{"type": "tell", "accuracy": 50.0}', "trial None"),
    ('{"type": "tell", "trial": 1, "accuracy": "high"}', "accuracy 'high' of trial 1 is not a finite number"),
    ('[1, 2]', "unreadable journal record (not an object)"),
    ('{"type": "mystery"}', "unknown type 'mystery'"),
])
def test_a_journal_record_that_does_not_fit_is_named(search, line, message):
    out, base = search
    first = subprocess.run(base + ["--max-trials", "2"], capture_output=True, text=True, timeout=240,
                           env=dict(os.environ, MODE="ok"))
    assert first.returncode == 0, first.stderr
    journal = out / "journal.jsonl"
    records = journal.read_text().splitlines()
    asked_1 = next(i for i, r in enumerate(records) if json.loads(r).get("trial") == 1)
    edited = records[:asked_1 + 1] + [line] + records[asked_1 + 1:]  # after trial 1's ask, before its tell
    journal.write_text("\n".join(edited) + "\n")
    resumed = subprocess.run(base + ["--max-trials", "3", "--resume"], capture_output=True, text=True, timeout=240,
                             env=dict(os.environ, MODE="ok"))
    lines = resumed.stderr.splitlines()
    assert resumed.returncode == 2 and len(lines) == 1 and "Traceback" not in resumed.stderr, resumed.stderr
    assert str(journal) in lines[0], lines[0]
    assert message in lines[0], lines[0]
