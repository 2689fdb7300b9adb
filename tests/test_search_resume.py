"""Journal durability and --resume: a killed search loses no finished trial and ends where an
uninterrupted one would."""

import csv
import json
import os
import subprocess
import sys

import pytest
from search_fixtures import write_table, write_train_script

from dfseg.journal import Journal, JournalError
from dfseg.search.candidates import enumerate_space
from dfseg.search.landscapes import accuracy_landscape, synthetic_table, tiny_space
from dfseg.search.study import Study

SPACE_ARGS = ["--widths", "64,128,256", "--blocks", "1-2,1-3,1-2", "--t-max", "2.2"]


def test_torn_last_line_is_dropped_and_lock_is_exclusive(tmp_path):
    path = str(tmp_path / "j.jsonl")
    journal = Journal(path)
    assert journal.open() == []
    journal.append({"type": "start", "n": 1})
    journal.append({"type": "tell", "n": 2})
    with pytest.raises(JournalError):
        Journal(path).open()  # locked by the first
    journal.close()
    with open(path, "ab") as handle:
        handle.write(b'{"type": "tell", "n"')  # a record cut short by a crash
    again = Journal(path)
    assert [r["n"] for r in again.open()] == [1, 2]
    again.append({"type": "tell", "n": 3})
    again.close()
    assert [json.loads(line)["n"] for line in open(path)] == [1, 2, 3]
    with open(path, "ab") as handle:
        handle.write(b"garbage\n" + b'{"type": "tell", "n": 4}\n')
    with pytest.raises(JournalError, match="line 4"):
        Journal(path).open()


@pytest.mark.parametrize("content, line", [(b"5\n", 1), (b'{"n": 1}\n[1, 2]\n', 2), (b"\x00\xff\x13binary", 1),
                                           (b'{"n": 1}\n{"n": 2}\n\n\x00\x00\x00', 4), (b'{"n": 1}\n{"n": 2', None)])
def test_only_a_torn_record_of_ours_is_dropped_anything_else_is_refused_and_kept(tmp_path, content, line):
    """A corrupt or foreign journal is an error naming it and its line; it is never cut away unseen."""
    path = tmp_path / "j.jsonl"
    path.write_bytes(content)
    journal = Journal(str(path))
    if line is None:
        assert journal.open() == [{"n": 1}]
        journal.close()
        assert path.read_bytes() == b'{"n": 1}\n'
        return
    with pytest.raises(JournalError, match="j.jsonl line {}: unreadable journal record".format(line)):
        journal.open()
    assert path.read_bytes() == content


@pytest.mark.parametrize("select", ["random", "guided"])
def test_replayed_study_matches_the_original(tmp_path, select):
    space = tiny_space(t_max=2.2)
    candidates = enumerate_space(space, synthetic_table(space.all_parts()))
    accuracy = accuracy_landscape(candidates.codes, seed=4)
    path = str(tmp_path / "journal.jsonl")
    journal = Journal(path)
    original = Study(candidates, seed=9, patience=6, journal=journal, select=select)
    original.start_journal(journal.open())
    in_flight = [original.ask() for _ in range(3)]
    original.tell(in_flight[1].number, accuracy[in_flight[1].index])
    journal.close()  # "killed" with two trials in flight; the original goes on without a journal
    original.journal = None
    for trial in (in_flight[0], in_flight[2]):  # what the uninterrupted search does next
        original.tell(trial.number, accuracy[trial.index])
    resumed_journal = Journal(path)
    resumed = Study(candidates, seed=9, patience=6, journal=resumed_journal, select=select)
    resumed.start_journal(resumed_journal.open())
    assert sorted(resumed.in_flight) == [in_flight[0].number, in_flight[2].number]
    for study in (original, resumed):
        while (trial := study.ask()) is not None:
            study.tell(trial.number, accuracy[trial.index])
    resumed_journal.close()
    assert resumed.state() == original.state()
    with pytest.raises(JournalError, match="seed"):
        Study(candidates, seed=10, journal=Journal(path), select=select).start_journal(Journal(path).open())
    other = "random" if select == "guided" else "guided"
    with pytest.raises(JournalError, match="select"):
        Study(candidates, seed=9, journal=Journal(path), select=other).start_journal(Journal(path).open())


def search(tmp_path, table, command, out, *extra, env=None):
    argv = [sys.executable, "-m", "dfseg.cli.search", "--table", str(table), "--train-cmd", command,
            "--out", str(out), "--seed", "3", "--patience", "1000", "--max-trials", "16", "--quiet", "--no-plots", *SPACE_ARGS, *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=240, env=dict(os.environ, **(env or {})))


def finished(out):
    rows = list(csv.DictReader(open(out / "trials.csv")))
    return [(r["trial"], r["arch"], r["accuracy"], r["status"]) for r in rows]


@pytest.mark.parametrize("select", ["random", "guided"])
def test_killed_search_resumes_to_the_same_state(tmp_path, select):
    table = tmp_path / "t.json"
    write_table(table)
    command = write_train_script(tmp_path)
    straight = search(tmp_path, table, command, tmp_path / "straight", "--select", select)
    assert straight.returncode == 0, straight.stderr

    marker = tmp_path / "kill-once"
    marker.write_text("0")
    out = tmp_path / "killed"
    killed = search(tmp_path, table, command, out, "--select", select,
                    env={"KILL_MARKER": str(marker), "KILL_AT": "6"})
    assert killed.returncode == -9 and not marker.exists()
    records = [json.loads(line) for line in open(out / "journal.jsonl")]
    assert sum(r["type"] == "tell" for r in records) == 5
    # Outputs are kept current during the search, so the kill leaves the five finished trials in them.
    assert finished(out) == finished(tmp_path / "straight")[:5]
    assert json.loads((out / "summary.json").read_text())["trained"] == 5

    refused = search(tmp_path, table, command, out, "--select", select)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = search(tmp_path, table, command, out, "--select", select, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed 5 finished trial(s)" in resumed.stderr
    assert finished(out) == finished(tmp_path / "straight")
    assert (out / "front.json").read_text() == (tmp_path / "straight" / "front.json").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trained"] == len(finished(out)) and summary["stop_reason"] == "trial budget reached"
