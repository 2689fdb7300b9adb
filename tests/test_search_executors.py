"""Executors: a local process pool with dying workers, and a real local Ray."""

import numpy as np
import pytest
from search_fixtures import DyingEvaluator

from dfseg.search.candidates import enumerate_space
from dfseg.search.evaluators import ArrayEvaluator
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


def test_ray_executor_runs_trials_as_tasks(tmp_path, candidates):
    ray = pytest.importorskip("ray")
    accuracy = accuracy_landscape(candidates.codes, seed=3)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        study = Study(candidates, seed=0, patience=10 ** 6, max_trials=8)
        executor = RayExecutor(ArrayEvaluator(accuracy), str(tmp_path), workers=2, cpus_per_trial=1, retries=0)
        run_search(study, executor, progress=False)
        executor.close()
        assert study.pop.n_trained == 8
        assert np.allclose(study.pop.d_accuracy, accuracy[study.pop.d_index])
    finally:
        ray.shutdown()
