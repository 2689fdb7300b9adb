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
from signals import like_a_terminal

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
@pytest.mark.parametrize("signum, exit_code, said", [(signal.SIGTERM, 143, "terminated"),
                                                     (signal.SIGINT, 130, "interrupted")])
def test_a_signal_ends_the_training_process_groups(search, workers, signum, exit_code, said):
    out, base = search
    proc = subprocess.Popen(base + ["--workers", workers, "--max-trials", "4"], preexec_fn=like_a_terminal,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, MODE="hang"))
    try:
        assert wait_until(lambda: len(pid_files(out)) >= int(workers)), "no training started"
        pids = [int(p) for path in pid_files(out) for p in open(path).read().split()]
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == exit_code and "dfseg-search: " + said in stderr and "Traceback" not in stderr, stderr
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
    proc = subprocess.run(base + ["--timeout", "6", "--max-trials", "1", "--max-failures", "1"], capture_output=True,
                          text=True, timeout=240, env=dict(os.environ, MODE="hang"))
    assert proc.returncode == 1 and "timed out after 6.0 s" in proc.stderr, proc.stderr
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
    ('[1, 2]', "unreadable journal record (a JSON list, not an object)"),
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


# ------------------------------------------------------------------ a latency table run, killed and resumed

TABLE_ARGS = ["--models", "64x1_64x1_64x1-wc19.19.19", "--sizes", "64x64", "--space-widths", "64",
              "--space-blocks", "1-1,1-2,1-1", "--rounds", "2", "--runs-per-round", "1", "--warmup", "0",
              "--chunk", "2", "--no-progress", "--backend", "onnxruntime"]


def journal_entries(path):
    """The entries of every complete journal line (a torn last line is not finished)."""
    if not os.path.exists(path):
        return {}
    with open(path, "rb") as handle:
        lines = handle.read().split(b"\n")[:-1]  # what follows the last newline may be torn
    return {r["key"]: r["entry"] for r in map(json.loads, lines) if r.get("type") == "entry"}


def test_sigkill_at_random_points_loses_no_finished_table_entry(tmp_path):
    import random

    table, work = str(tmp_path / "t.json"), str(tmp_path / "onnx")
    journal = table + ".journal.jsonl"
    argv = [sys.executable, "-m", "dfseg.cli.bench", "--table", table, "--work-dir", work] + TABLE_ARGS
    finished = {}
    for _ in range(4):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        target = len(journal_entries(journal)) + random.randint(1, 4)
        reached = wait_until(lambda p=proc, t=target: len(journal_entries(journal)) >= t or p.poll() is not None, 240)
        proc.kill()
        proc.wait()
        stderr = proc.stderr.read().decode("utf-8", "replace")
        proc.stderr.close()
        # 4 kills at most 4 entries apart stop a 19-part run before its end: every run dies by SIGKILL.
        assert reached and proc.returncode == -signal.SIGKILL, stderr
        now = journal_entries(journal)
        assert all(now.get(key) == entry for key, entry in finished.items())  # nothing finished was lost
        assert len(now) >= target
        finished = now
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    entries = json.load(open(table))["entries"]
    assert json.load(open(table))["complete"] is True and not os.path.exists(journal)
    # the table keeps each journalled (relative) entry as it was, with its ms beside it
    assert finished and all({f: entries[key][f] for f in entry} == entry for key, entry in finished.items())


def test_two_table_runs_on_one_file_do_not_both_measure(tmp_path):
    table, work = str(tmp_path / "t.json"), str(tmp_path / "onnx")
    argv = [sys.executable, "-m", "dfseg.cli.bench", "--table", table, "--work-dir", work] + TABLE_ARGS
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: os.path.exists(table + ".journal.jsonl") or first.poll() is not None, 240)
        if first.poll() is not None:
            pytest.skip("the first run finished before the second could start")
        second = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2 and "is in use by another dfseg process" in second.stderr, second.stderr
    errors = [line for line in second.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0] == second.stderr.splitlines()[-1]  # refused before measuring anything


@pytest.mark.parametrize("record, message", [
    ('{"type": "entry"}', 'an entry needs "key"'),
    ('{"type": "entry", "key": "k", "entry": {"relative": "garbage", "p90_relative": 1}}', "relative 'garbage'"),
    ('{"type": "overhead", "relative": -1, "reference_ms": 5}', 'an overhead needs "relative"'),
    ('{"type": "overhead", "relative": 0.001, "reference_ms": 0}', '"reference_ms" \\(a time in ms\\)'),
    ('5', r"line 2: unreadable journal record \(a JSON int, not an object\)"),
    ('{"type": "boundary", "shape": "x"}', 'a boundary needs "shape"'),
    ('{"type": "calibration", "factors": {"other": -1}, "networks": []}', 'a calibration needs "factors"'),
    ('{"type": "calibration", "factors": {"other": 1.1}, "networks": [], "cache": {"capacity_mb": 1}}',
     'a calibration\'s "cache" needs "capacity_mb" and "relative_per_mb"'),
])
def test_a_table_journal_record_of_the_wrong_shape_is_named(tmp_path, record, message):
    from dfseg.bench.table_journal import TIMING, TableJournal
    from dfseg.errors import UserError
    from dfseg.latency.table import SCHEMA

    journal = str(tmp_path / "t.json.journal.jsonl")
    header = {"schema": SCHEMA, "backend": "onnxruntime", "precision": "fp32", "threads": 1, "device": "cpu",
              "clock": "thread", "timing": TIMING}
    with open(journal, "w") as out:
        out.write(json.dumps(dict(header, type="header")) + "\n" + record + "\n")
        out.write('{"type": "overhead", "relative": 0.001, "reference_ms": 5.0}\n')
    with pytest.raises(UserError, match=message) as raised:
        TableJournal(journal, header)
    assert journal in str(raised.value) and "\n" not in str(raised.value)


def test_a_trial_log_keeps_its_head_and_tail_only():
    import io

    from dfseg.search.evaluators import copy_capped

    output = b"".join(b"line %07d\n" % i for i in range(200000))  # 2.6 MB
    log = io.BytesIO()
    copy_capped(io.BufferedReader(io.BytesIO(output)), log, head=100000, tail=50000)
    text = log.getvalue()
    assert text.startswith(output[:100000]) and text.endswith(output[-50000:])
    assert b"[dfseg: %d bytes of output left out" % (len(output) - 150000) in text
    assert len(text) < 150000 + 200
    small = io.BytesIO()
    copy_capped(io.BufferedReader(io.BytesIO(b"short\n")), small, head=100000, tail=50000)
    assert small.getvalue() == b"short\n"


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)] * 2)
def test_a_signal_to_a_table_run_keeps_a_valid_partial_table(tmp_path, signum, exit_code):
    """At a random point (1 to 8 finished entries: the order seed picks it), twice per signal."""
    import random

    table, work = str(tmp_path / "t.json"), str(tmp_path / "onnx")
    journal = table + ".journal.jsonl"
    argv = [sys.executable, "-m", "dfseg.cli.bench", "--table", table, "--work-dir", work] + TABLE_ARGS
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=like_a_terminal)
    try:
        target = random.randint(1, 8)
        assert wait_until(lambda: len(journal_entries(journal)) >= target or proc.poll() is not None, 240)
        assert proc.poll() is None, "the run ended before the signal"
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == exit_code and "Traceback" not in stderr, stderr
    from dfseg.latency.table import LatencyTable

    partial = json.load(open(table))
    assert partial["complete"] is False and LatencyTable.load(table, allow_incomplete=True).entries
    finished = journal_entries(journal)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    entries = json.load(open(table))["entries"]
    assert all({f: entries[key][f] for f in entry} == entry for key, entry in finished.items())


def finished(folder) -> list:
    """The frames written to ``folder`` (no hidden temporary file of one being written); none before it exists."""
    return [n for n in os.listdir(folder) if not n.startswith(".")] if folder.exists() else []


def test_sigkill_of_a_live_run_leaves_only_whole_frames_and_no_process(tmp_path):
    import random

    import cv2
    from test_live_pipeline import tiny_onnx, write_video

    model = tiny_onnx(str(tmp_path / "tiny.onnx"))
    video = write_video(str(tmp_path / "clip.avi"))
    frames = tmp_path / "frames"
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "dfseg.cli.run", "--model", model, video, str(frames) + "/",
                                 str(tmp_path / "out.avi"), "--input-loop", "-1"], stderr=subprocess.DEVNULL)
        # Finished frames only: a frame being written shows as a hidden temporary file for a moment, and
        # counting it could kill this run before it rewrote (and so cleaned) an earlier run's leftover.
        target = len(finished(frames)) + random.randint(1, 20)
        assert wait_until(lambda p=proc, t=target: len(finished(frames)) >= t or p.poll() is not None, 120)
        proc.kill()
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        names = os.listdir(frames)
        # Each frame is written atomically: every finished name decodes; at most the one in flight is
        # a hidden temporary file (cleaned by the next write of that name).
        assert all(cv2.imread(str(frames / n)) is not None for n in names if not n.startswith("."))
        assert len([n for n in names if n.startswith(".")]) <= 1
        assert not (tmp_path / "out.avi").exists()  # the video becomes out.avi only when it is finalised
