"""Scale of the POP search machinery on a ~10^6-candidate S^ (synthetic FLOP-proportional table).

Measures: enumeration time and peak memory (in a fresh subprocess, so the peak is the
enumeration's own), one pruning scan Delta P_w over all candidates, a full ``add`` (Algorithm 1's
update after one training) and ``ask``.  Writes benchmarks/results/search_scale.json.

Targets (issue): 10^6 candidates in < 30 s and < 2 GB; one pruning update over 10^6 in < 0.1 s.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

CHILD = r"""
import json, resource, sys, time
from dfseg.space import SearchSpace
from dfseg.search.landscapes import synthetic_table
from dfseg.search.candidates import enumerate_space
t_min, t_max = float(sys.argv[1]), float(sys.argv[2])
space = SearchSpace(t_min=t_min, t_max=t_max)
table = synthetic_table(space.all_parts())
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
candidates = enumerate_space(space, table)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"size": len(candidates), "seconds": seconds, "peak_rss_mb": peak / 1024.0,
                  "rss_before_mb": before / 1024.0, "stored_mb": candidates.nbytes / 1e6}))
"""


def _stats(seconds: list) -> dict:
    return {"median": 1e3 * float(np.median(seconds)), "max": 1e3 * float(np.max(seconds))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--t-min", type=float, default=0.0)
    parser.add_argument("--t-max", type=float, default=15.5, help="window giving ~10^6 candidates by default")
    parser.add_argument("--updates", type=int, default=30)
    args = parser.parse_args()

    child = subprocess.run([sys.executable, "-c", CHILD, str(args.t_min), str(args.t_max)], capture_output=True,
                           text=True, check=True)
    enumeration = json.loads(child.stdout)

    from dfseg.search.candidates import enumerate_space
    from dfseg.search.landscapes import accuracy_landscape, synthetic_table
    from dfseg.search.study import Study
    from dfseg.space import SearchSpace

    space = SearchSpace(t_min=args.t_min, t_max=args.t_max)
    candidates = enumerate_space(space, synthetic_table(space.all_parts()))
    accuracy = accuracy_landscape(candidates.codes, seed=0)
    study = Study(candidates, seed=0, patience=10 ** 9)
    scans = []
    rng = np.random.default_rng(0)
    for w in rng.integers(len(candidates), size=args.updates):
        start = time.perf_counter()
        study.pop._prune(int(w), float(candidates.latency[0]))  # worst case: scan every row
        scans.append(time.perf_counter() - start)
    timings = {}
    for select in ("random", "guided"):
        study = Study(candidates, seed=0, patience=10 ** 9, select=select, explore=0.0)
        asks, adds = [], []
        for _ in range(args.updates):
            start = time.perf_counter()
            trial = study.ask()
            asks.append(time.perf_counter() - start)
            start = time.perf_counter()
            study.tell(trial.number, accuracy[trial.index])
            adds.append(time.perf_counter() - start)
        timings[select] = {"update_after_training_ms": _stats(adds), "ask_ms": _stats(asks),
                           "pruned_after_updates": study.pop.n_pruned}
    result = {
        "space": space.to_json(),
        "table": "synthetic FLOP-proportional",
        "enumeration": enumeration,
        "prune_scan_full_ms": _stats(scans),
        "select": timings,
        "cpu_count": os.cpu_count(),
        "self_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    from dfseg.fileio import write_json_atomic

    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "search_scale.json")
    write_json_atomic(path, result)
    print("candidates            {:>12,}".format(enumeration["size"]))
    print("enumeration           {:>10.2f} s   peak RSS {:.0f} MB (stored arrays {:.0f} MB)".format(
        enumeration["seconds"], enumeration["peak_rss_mb"], enumeration["stored_mb"]))
    print("one full Delta P scan {:>10.1f} ms median, {:.1f} max".format(
        result["prune_scan_full_ms"]["median"], result["prune_scan_full_ms"]["max"]))
    for select, timing in timings.items():
        print("{:<6} update / ask   {:>10.1f} ms median ({:.1f} max) / {:.1f} ms median ({:.1f} max)".format(
            select, timing["update_after_training_ms"]["median"], timing["update_after_training_ms"]["max"],
            timing["ask_ms"]["median"], timing["ask_ms"]["max"]))
    print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
