"""Curve early stopping (issue 26) and live progress (issue 25 item 6): the bound, pruning with a
stopped trial's bound, the journal's stop record and its exact replay, a --train-cmd whose process
group is ended by the search, the built-in trainer ending itself, and bad progress lines."""

import csv
import json
import math
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from search_fixtures import write_table

from dfseg.journal import Journal
from dfseg.search.candidates import enumerate_space
from dfseg.search.curves import (
    TAUS,
    CurveGains,
    EarlyStopping,
    accuracy_by_epoch,
    extrapolate,
    prunes_with_bound,
    stop_decision,
)
from dfseg.search.landscapes import accuracy_landscape, synthetic_table, tiny_space
from dfseg.search.order import precedent_mask
from dfseg.search.pop import PartialOrderPruning
from dfseg.search.progress import LOG_NAME, PROGRESS_NAME, ProgressTail
from dfseg.search.study import Study

CURVE = EarlyStopping("curve", min_epochs=3, margin=0.0, min_curves=3)


@pytest.fixture(scope="module")
def candidates():
    space = tiny_space(t_max=2.2)
    return enumerate_space(space, synthetic_table(space.all_parts()))


def curve(final, epochs, tau, start=10.0, wobble=None):
    """A saturating learning curve that reaches ``final`` at the last epoch (the benchmark's shape)."""
    out = []
    for k in range(1, epochs + 1):
        share = (math.exp(-k / tau) - math.exp(-epochs / tau)) / (1 - math.exp(-epochs / tau))
        out.append({"epoch": k, "epochs": epochs,
                    "accuracy": float(final - (final - start) * share + (wobble(k) if wobble and k < epochs else 0))})
    return out


def test_the_fit_extrapolates_a_saturating_curve_and_refuses_too_few_points():
    records = curve(70.0, 20, TAUS[20])
    for k in (8, 12):
        final, scale = extrapolate(accuracy_by_epoch(records), k, 20)
        assert final == pytest.approx(70.0, abs=1e-6)
        # The scale is the gain the fit still expects after k, plus one point.
        assert scale == pytest.approx(70.0 - records[k - 1]["accuracy"] + 1.0, abs=1e-6)
    assert extrapolate(accuracy_by_epoch(records), 2, 20)[1] == math.inf
    assert extrapolate(accuracy_by_epoch(records), 6, 20)[1] == math.inf  # tau 3.55 > 6 / 2: not bent yet
    assert extrapolate(accuracy_by_epoch(records), 6, 30)[1] == math.inf  # another schedule: no points


def test_the_bound_is_calibrated_on_reference_trials_only_by_their_worst_shortfall():
    gains = CurveGains(CURVE)
    wobbly = {n: curve(60.0 + n, 8, 2.0, wobble=lambda k, n=n: (-1) ** (k + n) * 0.5) for n in (0, 4, 8, 1)}
    running = accuracy_by_epoch(curve(50.0, 8, 1.5)[:5])
    for n in (0, 4, 1):  # trial 1 is no reference trial: it never calibrates
        gains.add(wobbly[n], 60.0 + n, n)
    assert gains.count == {8: 2} and gains.bound(running, 5, 8) == math.inf  # two reference curves, three wanted
    gains.add(wobbly[8], 68.0, 8)
    fits = [(60.0 + n, extrapolate(accuracy_by_epoch(wobbly[n]), k, 8)) for n in (0, 4, 8) for k in range(3, 8)]
    worst = max((final - p) / s for final, (p, s) in fits if math.isfinite(s))
    assert gains.worst[8] == pytest.approx(worst)
    final, scale = extrapolate(running, 5, 8)
    assert gains.bound(running, 5, 8) == pytest.approx(final + scale * worst)
    assert CurveGains(CURVE._replace(margin=1.5)).bound(running, 5, 8) == math.inf
    margin = CurveGains(CURVE._replace(margin=1.5))
    for n in (0, 4, 8):
        margin.add(wobbly[n], 60.0 + n, n)
    assert margin.bound(running, 5, 8) == pytest.approx(final + scale * worst + 1.5)
    assert gains.bound(running, 5, 9) == math.inf  # another schedule: no calibration


def test_a_trial_stops_only_when_its_bound_is_below_the_front_two_epochs_in_a_row():
    gains = CurveGains(CURVE)
    for n in (0, 4, 8):
        gains.add(curve(60.0 + n, 8, 2.0), 60.0 + n, n)
    records = curve(50.0, 8, 1.5)
    high = max(gains.bound(accuracy_by_epoch(records), k, 8) for k in (4, 5))
    low = min(gains.bound(accuracy_by_epoch(records), k, 8) for k in (4, 5))
    assert stop_decision(CURVE, gains, records[:5], high, 5) == {"epoch": 5, "bound": pytest.approx(
        gains.bound(accuracy_by_epoch(records), 5, 8)), "front": high, "prunes": True}
    assert stop_decision(CURVE, gains, records[:5], low - 1e-6, 5) is None
    assert stop_decision(CURVE, gains, records[:3], 99.0, 5) is None  # not after min_epochs yet
    assert stop_decision(CURVE, gains, records[:4], 99.0, 5) is not None  # epoch 4 > 3, confirmed by epoch 3
    # Only a bound from the second half of the training prunes.
    assert [prunes_with_bound(k, 10) for k in (4, 5, 9)] == [False, True, True]
    assert stop_decision(CURVE, gains, records[:5], 99.0, 4) is None  # a reference trial trains to the end
    assert stop_decision(CURVE._replace(mode="off"), gains, records[:5], 99.0, 5) is None
    assert stop_decision(CURVE, gains, records, 99.0, 5) is None  # the last epoch
    assert stop_decision(CURVE, gains, records[:4] + [{"epoch": 5, "epochs": 8, "accuracy": None}], 99.0, 5) is None


def test_a_stopped_trial_prunes_with_its_bound_and_never_joins_the_front(candidates):
    latency = candidates.latency
    pop = PartialOrderPruning(candidates.codes, latency)
    fast = 0
    pop.add(fast, 70.0)
    slow = int(np.argmax(latency))
    assert pop.best_at(latency[slow]) == 70.0 and pop.best_at(latency[0] - 1) == -np.inf
    before = pop.pruned.copy()
    newly = pop.add_bound(slow, 65.0)
    # Delta P of the stopped x: its precedents at least as slow as the fastest finished y with Acc(y) >= UB.
    expected = precedent_mask(candidates.codes, candidates.codes[slow]) & (latency >= latency[fast])
    assert newly == int(np.count_nonzero(expected & ~before)) > 0 and np.array_equal(pop.pruned, before | expected)
    assert pop.front() == [fast] and pop.n_trained == 2 and pop.n_stopped == 1 and pop.trained[slow]
    # A bound serves only as a w, never as a y: a model below the bound is not pruned by it.
    other = PartialOrderPruning(candidates.codes, latency)
    other.add_bound(slow, 90.0)
    assert not other.pruned.any()
    other.add(fast, 80.0)  # below the bound: the stopped trial's precedents stay
    own = precedent_mask(candidates.codes, candidates.codes[fast]) & (latency >= latency[fast])
    assert np.array_equal(other.pruned, own) and other.front() == [fast]
    # A bound too early to prune with: the trial is trained and stopped, its precedents stay.
    early = PartialOrderPruning(candidates.codes, latency)
    early.add(fast, 70.0)
    before = early.pruned.copy()
    assert early.add_bound(slow, 65.0, prune=False) == 0 and np.array_equal(early.pruned, before)
    assert early.trained[slow] and early.s_index == [slow] and early.front() == [fast]


def simulate(study, accuracy, tau, epochs=10, trials=None):
    """Train sequentially: each epoch is recorded, then the stop rule is asked (as run_search does)."""
    count = 0
    while (trial := study.ask()) is not None and (trials is None or count < trials):
        count += 1
        for record in curve(accuracy[trial.index], epochs, tau[trial.index]):
            study.record_progress(trial.number, [record])
            decision = study.check_stop(trial.number)
            if decision is not None:
                study.stop(trial.number, decision["epoch"], decision["bound"], decision["front"], decision["prunes"])
                break
        else:
            study.tell(trial.number, accuracy[trial.index])
    return trial


def test_stops_are_journalled_and_replay_exactly_and_resume_never_restarts_one(tmp_path, candidates):
    accuracy = accuracy_landscape(candidates.codes, seed=4)
    tau = np.random.default_rng(0).uniform(0.5, 2.0, len(candidates))
    path = str(tmp_path / "journal.jsonl")
    journal = Journal(path)
    study = Study(candidates, seed=5, patience=10 ** 6, journal=journal, early_stop=CURVE)
    study.start_journal(journal.open())
    running = simulate(study, accuracy, tau, trials=25)
    study.record_progress(running.number, curve(accuracy[running.index], 10, tau[running.index])[:1])
    journal.close()  # "killed" while a trial runs
    stops = [json.loads(line) for line in open(path) if '"stop"' in line]
    assert stops and all(3 < s["epoch"] < 10 and s["bound"] <= s["front"] for s in stops)
    assert all(s["prunes"] == (s["epoch"] >= 5) for s in stops)
    stopped = [t for t in study.trials if t["status"] == "stopped"]
    assert len(stopped) == len(stops) and study.summary()["stopped"] == len(stops)
    assert {t["index"] for t in stopped} == set(study.pop.s_index) and not set(study.pop.s_index) & set(study.pop.front())

    # Replay with early stopping off: the journalled stops are applied as recorded.
    again = Journal(path)
    replayed = Study(candidates, seed=5, patience=10 ** 6, journal=again)
    replayed.start_journal(again.open())
    assert replayed.state() == study.state() and replayed.trials == study.trials
    assert [t.number for t in replayed._requeue] == [running.number]  # only the trial that was running
    assert replayed.progress[running.number] == study.progress[running.number]
    asked = {replayed.ask().index for _ in range(5)}
    assert not asked & set(study.pop.s_index)
    again.close()
    # With early stopping on, replay rebuilds the calibration the next decisions use.
    third = Journal(path)
    curved = Study(candidates, seed=5, patience=10 ** 6, journal=third, early_stop=CURVE)
    curved.start_journal(third.open())
    assert curved.gains.worst == study.gains.worst and curved.gains.count == study.gains.count
    third.close()


CURVE_SCRIPT = r'''
import json, math, os, subprocess, sys, time
arch_path, result_path, progress_path = sys.argv[1:4]
arch = json.load(open(arch_path))
widths = [w for stage in arch["stages"] for w in stage]
final = 40 + sum(math.log2(w / 32.0) * (1 + 0.1 * (i % 3)) for i, w in enumerate(widths))
trial_dir = os.path.dirname(progress_path)
number = int(os.path.basename(trial_dir))
sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # a grandchild in our group
open(os.path.join(trial_dir, "pids"), "w").write("{} {}".format(os.getpid(), sleeper.pid))
journal = os.environ["JOURNAL"]
for epoch in range(1, 7):
    with open(progress_path, "a") as out:
        out.write(json.dumps({"epoch": epoch, "epochs": 6, "accuracy": final * (1 - 0.5 * math.exp(-epoch))}) + "\n")
    # Go on once the search has journalled this epoch, so that where trials stop does not depend on timing.
    while not any(r.get("type") == "progress" and r.get("trial") == number and r.get("epoch") == epoch
                  for r in map(json.loads, [l for l in open(journal) if l.endswith("\n")])):
        time.sleep(0.05)
    time.sleep(0.1)
json.dump({"accuracy": final}, open(result_path, "w"))
sleeper.kill()
'''


def alive(pid):
    try:
        with open("/proc/{}/stat".format(pid)) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def run_cli(table, script, out, *extra):
    argv = [sys.executable, "-m", "dfseg.cli.search", "--table", str(table), "--train-cmd",
            "{} {} {{arch}} {{result}} {{progress}}".format(sys.executable, script), "--out", str(out), "--seed", "3",
            "--patience", "1000", "--quiet", "--no-plots", "--retries", "0", *extra]
    env = dict(os.environ, JOURNAL=str(out / "journal.jsonl"), PYTHONPATH=os.getcwd())
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.parametrize("workers", ["1", "2", "ray"])
def test_train_cmd_trials_are_stopped_by_ending_their_process_group(tmp_path, workers):
    if workers == "ray":  # two Ray tasks at a time on a local cluster; a stop cancels the task
        pytest.importorskip("ray")
        workers = "2\0--ray-address\0local"
    table = tmp_path / "t.json"
    write_table(table)
    script = tmp_path / "curve.py"
    script.write_text(CURVE_SCRIPT)
    out = tmp_path / "out"
    done = run_cli(table, script, out, "--max-trials", "12", "--early-stop", "curve", "--min-epochs", "3", "--min-curves", "2",
                   "--workers", *workers.split("\0"))
    assert done.returncode == 0, done.stderr
    assert "curve early stopping" in done.stderr and "stopped early" in done.stdout
    rows = list(csv.DictReader(open(out / "trials.csv")))
    stopped = [r for r in rows if r["status"] == "stopped"]
    assert stopped and len(rows) == 12
    records = [json.loads(line) for line in open(out / "journal.jsonl")]
    stops = {r["trial"]: r for r in records if r["type"] == "stop"}
    assert sorted(stops) == sorted(int(r["trial"]) for r in stopped)
    for row in stopped:
        number = int(row["trial"])
        trial_dir = out / "trials" / "{:05d}".format(number)
        assert number % 4 and 3 < int(row["epochs"]) == stops[number]["epoch"] < 6 and row["accuracy"] == ""
        assert row["stop_reason"].startswith("curve: bound") and row["in_front"] == "0"
        assert all(not alive(int(pid)) for pid in (trial_dir / "pids").read_text().split())
        journalled = [r["epoch"] for r in records if r["type"] == "progress" and r["trial"] == number]
        assert journalled == list(range(1, stops[number]["epoch"] + 1))  # epochs after the stop are not kept
        assert "stopped after epoch" in (trial_dir / LOG_NAME).read_text()
    for row in rows:
        if row["status"] == "ok":
            assert row["epochs"] == "6" and row["stop_reason"] == ""
    assert not {int(r["trial"]) for r in stopped} & {int(r["trial"]) for r in rows if r["in_front"] == "1"}

    # --resume goes on without training a stopped trial again.
    more = run_cli(table, script, out, "--max-trials", "16", "--early-stop", "curve", "--min-epochs", "3", "--min-curves", "2",
                   "--workers", *workers.split("\0"), "--resume")
    assert more.returncode == 0, more.stderr
    asks = [r for r in map(json.loads, open(out / "journal.jsonl")) if r["type"] == "ask"]
    stopped_rows = {r["arch"] for r in stopped}
    assert len(asks) == 16 and not [a for a in asks[12:] if a["arch"] in stopped_rows]
    for row in stopped:
        assert sorted(os.listdir(out / "trials" / "{:05d}".format(int(row["trial"])))).count("attempt-1.log") == 1
        assert not (out / "trials" / "{:05d}".format(int(row["trial"])) / "attempt-2.log").exists()


BAD_PROGRESS_SCRIPT = r'''
import json, os, sys
arch_path, result_path, progress_path = sys.argv[1:4]
lines = ['{"epoch": 1, "epochs": 3, "accuracy": 10.0}', 'this is not json', '{"epoch": 2, "epochs": 3, "accuracy": NaN}',
         '{"epoch": 2, "epochs": 3, "accuracy": 20.0}', '{"epoch": 1, "epochs": 3, "accuracy": 5.0}',
         '{"epoch": 3, "epochs": 3, "accuracy": 30.0}']
with open(progress_path, "a") as out:
    out.write("\n".join(lines) + "\n")
if not os.environ.get("NO_RESULT"):
    json.dump({"accuracy": 30.0}, open(result_path, "w"))
'''


def test_bad_progress_lines_are_logged_and_skipped_and_a_missing_result_fails(tmp_path):
    table = tmp_path / "t.json"
    write_table(table)
    script = tmp_path / "bad.py"
    script.write_text(BAD_PROGRESS_SCRIPT)
    out = tmp_path / "out"
    done = run_cli(table, script, out, "--max-trials", "1")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in open(out / "journal.jsonl")]
    assert [(r["epoch"], r["accuracy"]) for r in records if r["type"] == "progress"] == [(1, 10.0), (2, 20.0),
                                                                                        (3, 30.0)]
    log = (out / "trials" / "00000" / LOG_NAME).read_text().splitlines()
    assert len(log) == 3 and "line 2: not JSON" in log[0] and "line 3: accuracy nan" in log[1]
    assert "line 5: epoch 1 does not follow epoch 2" in log[2]
    assert [r["status"] for r in csv.DictReader(open(out / "trials.csv"))] == ["ok"]
    # A command that writes progress but no result fails; its journalled epochs stay.
    env_out = tmp_path / "none"
    failed = subprocess.run([sys.executable, "-m", "dfseg.cli.search", "--table", str(table), "--train-cmd",
                             "{} {} {{arch}} {{result}} {{progress}}".format(sys.executable, script), "--out",
                             str(env_out), "--max-trials", "1", "--quiet", "--no-plots", "--retries", "0"],
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, NO_RESULT="1", PYTHONPATH=os.getcwd()))
    assert failed.returncode == 0, failed.stderr
    rows = list(csv.DictReader(open(env_out / "trials.csv")))
    assert rows[0]["status"] == "failed" and "no result file" in rows[0]["error"] and rows[0]["epochs"] == "3"
    assert sum(1 for line in open(env_out / "journal.jsonl") if '"progress"' in line) == 3


def test_progress_tail_reads_complete_lines_and_rereads_a_rewritten_file(tmp_path):
    tail = ProgressTail(str(tmp_path))
    assert tail.poll() == []
    path = tmp_path / PROGRESS_NAME
    path.write_text('{"epoch": 1, "accuracy": 1.0}\n{"epoch": 2, "accu')
    assert [r["epoch"] for r in tail.poll()] == [1]
    with open(path, "a") as handle:
        handle.write('racy": 2.0}\n')
    assert [r["epoch"] for r in tail.poll()] == [2]
    replacement = tmp_path / "new"
    replacement.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3, "accuracy": 3.0}\n')
    os.replace(replacement, path)  # as the built-in trainer rewrites it
    assert [r["epoch"] for r in tail.poll()] == [3]
    assert not (tmp_path / LOG_NAME).exists()


def test_builtin_trainer_ends_itself_on_a_stop_request(tmp_path):
    pytest.importorskip("torch")
    from test_search_trainer import make_cityscapes_dataset

    from dfseg.arch import Arch
    from dfseg.search.evaluators import TrialStopped
    from dfseg.search.trainer import TrainerConfig, fit
    from dfseg.sizes import Size

    city = make_cityscapes_dataset(tmp_path / "city", counts=(("train", 8), ("val", 2)))
    config = TrainerConfig(str(city), epochs=50, batch_size=4, lr=0.05, input_size=Size(48, 48), threads=1,
                           loader_workers=0, val_every=1)
    trial_dir = tmp_path / "trial"
    progress = trial_dir / PROGRESS_NAME

    def ask_to_stop():
        while not (progress.exists() and progress.read_text().count("\n") >= 1):
            time.sleep(0.005)
        (trial_dir / "stop").write_text("stop\n")

    asker = threading.Thread(target=ask_to_stop, daemon=True)
    asker.start()
    with pytest.raises(TrialStopped):
        fit(Arch.from_short("64x1_64x1_64x1-wc3.32.32-k3"), config, trial_dir=str(trial_dir))
    asker.join(timeout=60)
    epochs = [json.loads(line)["epoch"] for line in progress.read_text().splitlines()]
    assert 1 <= len(epochs) < 50 and epochs == list(range(1, len(epochs) + 1))
