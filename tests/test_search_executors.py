"""Executors: a local process pool with dying workers, a real local Ray, and dfseg-search on a
separately started Ray cluster (``ray start --head``) reached with ``--ray-address auto``."""

import csv
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
from search_fixtures import DyingEvaluator, write_table, write_train_script

from dfseg.search.candidates import enumerate_space
from dfseg.search.executors import ProcessPoolExecutor, RayExecutor
from dfseg.search.landscapes import accuracy_landscape, synthetic_table, tiny_space
from dfseg.search.runner import run_search
from dfseg.search.study import Study


@pytest.fixture(scope="module")
def candidates():
    space = tiny_space(t_max=2.0)
    return enumerate_space(space, synthetic_table(space.all_parts()))


def test_process_pool_survives_dead_workers_and_buggy_evaluators(tmp_path, candidates):
    accuracy = accuracy_landscape(candidates.codes, seed=1)
    study = Study(candidates, seed=2, patience=10 ** 6, max_trials=14)
    # The first row a seed-2 study asks for kills its worker every time.
    always = {study.ask().index}
    study = Study(candidates, seed=2, patience=10 ** 6, max_trials=14)
    executor = ProcessPoolExecutor(DyingEvaluator(accuracy, every=4, always=always), str(tmp_path), workers=2,
                                   retries=1)
    try:
        run_search(study, executor, progress=False)
    finally:
        executor.close()
    assert len(study.trials) == 14 and not study.in_flight
    by_index = {t["index"]: t for t in study.trials}
    doomed = by_index[next(iter(always))]
    assert doomed["status"] == "failed" and "died" in doomed["error"]
    for row in study.trials:
        if row["status"] == "ok":
            assert row["accuracy"] == pytest.approx(accuracy[row["index"]])
        elif row["index"] % 7 == 3:
            assert "evaluator bug" in row["error"]
    # Trials whose worker died once were resubmitted and finished (unless their evaluator raised).
    died_once = [t for t in study.trials if t["index"] not in always and t["index"] % 7 != 3
                 and (tmp_path / "trials" / "{:05d}".format(t["trial"]) / "died").exists()]
    assert all(t["status"] == "ok" for t in died_once)


def test_ray_executor_runs_trials_as_tasks_and_survives_dead_workers(tmp_path, candidates):
    ray = pytest.importorskip("ray")
    accuracy = accuracy_landscape(candidates.codes, seed=3)
    probe = Study(candidates, seed=0, patience=10 ** 6, max_trials=10)
    always = {probe.ask().index}  # this row kills its Ray worker on every attempt
    # The workers unpickle DyingEvaluator, so they need this folder on their path.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.path.dirname(os.path.abspath(__file__))}})
    try:
        study = Study(candidates, seed=0, patience=10 ** 6, max_trials=10)
        executor = RayExecutor(DyingEvaluator(accuracy, every=4, always=always), str(tmp_path), workers=2,
                               cpus_per_trial=1, retries=1)
        run_search(study, executor, progress=False)
        executor.close()
    finally:
        ray.shutdown()
    assert len(study.trials) == 10 and not study.in_flight
    by_index = {t["index"]: t for t in study.trials}
    doomed = by_index[next(iter(always))]
    assert doomed["status"] == "failed" and doomed["error"].startswith("ray: WorkerCrashedError: The worker died")
    for row in study.trials:
        if row["status"] == "ok":
            assert row["accuracy"] == pytest.approx(accuracy[row["index"]])
        elif row["index"] not in always:
            assert row["index"] % 7 == 3 and "evaluator bug" in row["error"]
    # A worker that died once was replaced by Ray and the trial retried to a result.
    died_once = [t for t in study.trials if t["index"] not in always and t["index"] % 7 != 3
                 and (tmp_path / "trials" / "{:05d}".format(t["trial"]) / "died").exists()]
    assert all(t["status"] == "ok" for t in died_once)
    assert study.pop.n_trained == sum(t["status"] == "ok" for t in study.trials) >= 6


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_search_runs_its_trials_on_a_started_ray_cluster(tmp_path):
    pytest.importorskip("ray")
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    port = _free_port()
    # A short temp dir: Ray's Unix sockets live there and their paths are limited to ~107 bytes.
    ray_tmp = tempfile.mkdtemp(prefix="dfseg-ray-", dir="/tmp")
    # Ray >= 2.5x clusters authenticate with a token; this one gets its own, given to both sides.
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=uuid.uuid4().hex)
    # --block keeps the cluster's processes under this one process group, so the test stops
    # exactly this cluster (``ray stop`` would stop every Ray on the machine).
    # RECORD_PARENT reaches only processes the cluster starts: the training script sees it only
    # when one of the cluster's workers runs it.
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", "--port", str(port), "--num-cpus", "2",
                             "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", ray_tmp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(env, RECORD_PARENT="1"),
                            start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert head.poll() is None, "ray start --head exited with {}".format(head.returncode)
            time.sleep(0.5)
        table = tmp_path / "t.json"
        write_table(table)
        out = tmp_path / "out"
        result = subprocess.run(
            [sys.executable, "-m", "dfseg.cli.search", "--table", str(table), "--train-cmd",
             write_train_script(tmp_path), "--out", str(out), "--widths", "64,128,256", "--blocks", "1-2,1-3,1-2",
             "--t-max", "2.2", "--max-trials", "6", "--workers", "2", "--ray-address", "auto", "--quiet",
             "--no-plots"],
            capture_output=True, text=True, timeout=240,
            env=dict(env, RAY_ADDRESS="127.0.0.1:{}".format(port)))
        assert result.returncode == 0, result.stderr[-3000:]
        rows = list(csv.DictReader(open(out / "trials.csv")))
        assert len(rows) == 6 and all(r["status"] == "ok" for r in rows), rows
        # Every training command was started by a Ray worker of that cluster, not by dfseg-search.
        parents = [open(path, "rb").read() for path in glob.glob(str(out / "trials" / "**" / "*.parent"),
                                                                  recursive=True)]
        assert len(parents) == 6 and all(b"ray::" in parent for parent in parents), parents[:1]
        assert glob.glob(os.path.join(ray_tmp, "session_*")), "the trials did not use the started cluster"
    finally:
        _stop_process_group(head)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _stop_process_group(process, grace=20.0):
    os.killpg(process.pid, signal.SIGTERM)
    deadline = time.time() + grace
    while time.time() < deadline:
        process.poll()
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
