"""dfseg-search end to end: dry run, bad input, replay and command evaluators, outputs."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from search_fixtures import write_table, write_train_script

from dfseg.arch import Arch
from dfseg.cli.search import main
from dfseg.search.candidates import enumerate_space
from dfseg.search.landscapes import accuracy_landscape, synthetic_table

SPACE_ARGS = ["--widths", "64,128,256", "--blocks", "1-2,1-3,1-2"]


def test_dry_run_writes_every_candidate(tmp_path, capsys):
    table = tmp_path / "t.json"
    write_table(table)
    out = tmp_path / "space.jsonl"
    assert main(["--table", str(table), "--dry-run", "--space-out", str(out), "--t-max", "2.5", "--quiet"]
                + SPACE_ARGS) == 0
    printed = capsys.readouterr().out
    lines = out.read_text().splitlines()
    assert "|S^| = {:,}".format(len(lines)) in printed and "latency histogram" in printed and "df1" in printed
    latencies = []
    for line in lines:
        record = json.loads(line)
        arch = Arch.from_json(record["arch"])
        assert json.dumps(record["arch"], sort_keys=True, separators=(",", ":")) == arch.dumps()
        latencies.append(record["latency_ms"])
    assert max(latencies) <= 2.5 and latencies == sorted(latencies)


def run_cli(*argv):
    return subprocess.run([sys.executable, "-m", "dfseg.cli.search", *argv], capture_output=True, text=True,
                          timeout=120)


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    table = tmp_path / "t.json"
    space = write_table(table, widths=(64, 128))
    result = run_cli("--table", str(table), "--widths", "64,128,256", "--blocks", "1-2,1-3,1-2", "--dry-run")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "lacks" in result.stderr and "dfseg-bench --table {}".format(table) in result.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "dfseg.latency-table/1", "entries": {')
    result = run_cli("--table", str(bad), "--dry-run")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "bad.json" in result.stderr
    result = run_cli("--table", str(table), "--train-cmd", "python train.py --arch {arch}", "--widths", "64,128")
    assert result.returncode == 2 and "{result}" in result.stderr
    assert space.widths == (64, 128)


def test_replay_search_writes_all_outputs(tmp_path, capsys):
    table_path = tmp_path / "t.json"
    space = write_table(table_path)
    candidates = enumerate_space(space, synthetic_table(space.all_parts()))
    accuracy = accuracy_landscape(candidates.codes, seed=2)
    replay = tmp_path / "known.csv"
    with open(replay, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arch", "accuracy"])
        for index in range(len(candidates)):
            writer.writerow([candidates.arch(index).short(), accuracy[index]])
    out = tmp_path / "out"
    assert main(["--table", str(table_path), "--replay", str(replay), "--out", str(out), "--quiet",
                 "--patience", "1000"] + SPACE_ARGS) == 0
    printed = capsys.readouterr().out
    assert "results in {}".format(out) in printed
    front = json.loads((out / "front.json").read_text())
    assert front and set(front[0]) == {"arch", "latency_ms", "accuracy"}
    for row in front:
        index = candidates.index_of(Arch.from_json(row["arch"]))
        assert row["accuracy"] == pytest.approx(accuracy[index])
    trials = list(csv.DictReader(open(out / "trials.csv")))
    summary = json.loads((out / "summary.json").read_text())
    assert len(trials) == summary["trained"] and summary["trained"] + summary["pruned"] == len(candidates)
    assert summary["trained"] < len(candidates)
    pruning = list(csv.DictReader(open(out / "pruning.csv")))
    assert [int(r["pruned"]) for r in pruning] == sorted(int(r["pruned"]) for r in pruning)
    violations = json.loads((out / "violations.json").read_text())
    assert violations["violating_pairs"] == 0 and violations["comparable_pairs"] > 0
    for name in ("tradeoff.png", "pruning.png", "assumption.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    # A second run into the same directory without --resume is refused.
    assert main(["--table", str(table_path), "--replay", str(replay), "--out", str(out), "--quiet"] + SPACE_ARGS) == 2


def test_command_evaluator_records_failures(tmp_path):
    table = tmp_path / "t.json"
    write_table(table)
    command = write_train_script(tmp_path)
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "dfseg.cli.search", "--table", str(table), "--train-cmd", command,
                             "--out", str(out), "--max-trials", "12", "--retries", "1", "--quiet", "--no-plots",
                             "--t-max", "1.6"] + SPACE_ARGS,
                            capture_output=True, text=True, timeout=120, env=dict(__import__("os").environ,
                                                                                  FAIL_STAGE3="64"))
    assert result.returncode == 0, result.stderr
    trials = list(csv.DictReader(open(out / "trials.csv")))
    assert len(trials) == 12
    failed = [t for t in trials if t["status"] == "failed"]
    assert failed and all(t["arch"].startswith("64x1_") for t in failed)
    assert all(not t["arch"].startswith("64x1_") for t in trials if t["status"] == "ok")
    for row in failed:
        assert "exit code 3" in row["error"]
        number = "{:05d}".format(int(row["trial"]))
        assert (out / "trials" / number / "attempt-2.log").exists()  # retried once
    ok = [t for t in trials if t["status"] == "ok"]
    assert ok and all(np.isfinite(float(t["accuracy"])) for t in ok)
    arch_file = out / "trials" / "{:05d}".format(int(ok[0]["trial"])) / "arch.json"
    assert Arch.from_json(arch_file.read_text()).short() == ok[0]["arch"]
