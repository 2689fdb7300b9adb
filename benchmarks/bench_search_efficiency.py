"""Search efficiency of POP against random search, NSGA-II and multi-objective TPE (optuna).

Every candidate's accuracy is known (synthetic landscapes, replayed by row), so each method is
scored against the true speed/accuracy front of S^: hypervolume (latency down, accuracy up) of
the trained set relative to the true front's, after each training.  Landscapes: "monotone"
respects the partial order exactly; "noisy" adds per-candidate noise so the assumption fails in a
few per cent of comparable pairs (the rate is measured and reported).  POP runs with the paper's
uniform draw ("pop") and with guided selection ("pop-guided", dfseg/search/selection.py), with
eps = 0 and, on the noisy landscape, also with eps = the noise level ("-eps").

Reported per method and landscape, over --seeds seeds: HV ratio at equal numbers of trainings,
trainings to reach 99% of the true HV, and for POP its trainings until S^ is covered, its stop
with --patience, and true-front members it pruned.  Paper's bar: 200 trainings covered 638
candidates (2.2x fewer than exhaustive).  Goal: POP needs <= 1/3 of exhaustive's trainings and
beats random search and NSGA-II at equal budget.  Writes benchmarks/results/search_efficiency.json.
"""

import argparse
import os
import sys
import time
from typing import Dict, List

import numpy as np

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
CHECKPOINTS = (25, 50, 100, 150, 200, 300, 400)


def hypervolume(latency: np.ndarray, accuracy: np.ndarray, ref_lat: float, ref_acc: float) -> float:
    if latency.size == 0:
        return 0.0
    order = np.argsort(latency, kind="stable")
    lat, best = latency[order], np.maximum.accumulate(accuracy[order])
    widths = np.diff(np.append(lat, ref_lat))
    return float(np.sum(widths * np.maximum(best - ref_acc, 0.0)))


class HVCurve:
    """HV ratio of the first k trainings.  Adding points never lowers HV, so the curve is
    monotone and "trainings to reach a level" is a binary search."""

    def __init__(self, sequence: List[int], latency: np.ndarray, accuracy: np.ndarray, ref, true_hv: float):
        self.sequence = np.asarray(sequence, dtype=np.int64)
        self.latency, self.accuracy, self.ref, self.true_hv = latency, accuracy, ref, true_hv

    def __len__(self) -> int:
        return int(self.sequence.size)

    def at(self, k: int) -> float:
        rows = self.sequence[:max(1, min(k, len(self)))]
        return hypervolume(self.latency[rows], self.accuracy[rows], *self.ref) / self.true_hv

    def first_reaching(self, level: float):
        if not len(self) or self.at(len(self)) < level:
            return None
        low, high = 1, len(self)
        while low < high:
            middle = (low + high) // 2
            if self.at(middle) >= level:
                high = middle
            else:
                low = middle + 1
        return low


def pareto_rows(latency: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    order = np.lexsort((-accuracy, latency))
    best, keep = -np.inf, []
    for row in order:
        if accuracy[row] > best:
            keep.append(row)
            best = accuracy[row]
    return np.asarray(keep)


def run_pop(candidates, accuracy, seed: int, eps: float, patience: int, select: str):
    from dfseg.search.study import Study

    study = Study(candidates, seed=seed, patience=10 ** 9, eps=eps, select=select)
    sequence, stop_at = [], None
    while (trial := study.ask()) is not None:
        study.tell(trial.number, accuracy[trial.index])
        sequence.append(trial.index)
        if stop_at is None and study.stable_for >= patience:  # where --patience would have stopped
            stop_at = len(sequence)
    return sequence, study, stop_at or len(sequence)


def run_random(size: int, seed: int, budget: int) -> List[int]:
    return list(np.random.default_rng(seed).permutation(size)[:budget])


def run_optuna(candidates, accuracy, seed: int, budget: int, sampler_name: str) -> List[int]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = candidates.space
    lookup = {bytes(candidates.codes[i]): i for i in range(len(candidates))}
    total = sum(high for _, high in space.blocks_per_stage)
    if sampler_name == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=20)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    trained, seen = [], {}
    asks = 0
    while len(trained) < budget and asks < 30 * budget:
        asks += 1
        trial = study.ask()
        counts = [trial.suggest_int("n{}".format(s + 3), low, high)
                  for s, (low, high) in enumerate(space.blocks_per_stage)]
        widths = [trial.suggest_categorical("w{}".format(j), list(space.widths)) for j in range(total)]
        chosen = sorted(widths[:sum(counts)])  # repair: widths never decrease through the network
        stages, start = [], 0
        for count in counts:
            stages.append(chosen[start:start + count])
            start += count
        row = lookup.get(bytes(np.asarray(space.order_key(space.make(stages)), dtype=np.uint8)))
        if row is None:  # outside the latency window: not trainable, costs nothing
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        if row not in seen:
            seen[row] = True
            trained.append(row)
        study.tell(trial, [float(candidates.latency[row]), float(accuracy[row])])
    return trained


def plot_curves(results: Dict, path: str):
    """Mean HV ratio against trainings, one panel per landscape; None without matplotlib."""
    from dfseg.plots import pyplot, save_png

    try:
        plt = pyplot()
    except ImportError:
        return None
    landscapes = results["landscapes"]
    figure, axes = plt.subplots(1, len(landscapes), figsize=(6 * len(landscapes), 4.2), sharey=True)
    labels = []  # one colour per method across panels
    for data in landscapes.values():
        labels += [label for label in data["methods"] if label not in labels]
    for axis, (name, data) in zip(np.atleast_1d(axes), landscapes.items()):
        for label, entry in data["methods"].items():
            budget = results["budget"] if label in ("nsga2", "motpe") else max(CHECKPOINTS)
            points = [c for c in CHECKPOINTS if c <= budget]
            axis.plot(points, [np.mean(entry["hv_at"][str(c)]) for c in points], marker="o", markersize=3,
                      linestyle="-" if label.startswith("pop") else "--", label=label,
                      color="C{}".format(labels.index(label)))
        axis.set_title("{} ({:.1%} of comparable pairs violate the order)".format(name, data["violation_rate_mean"]),
                       fontsize=9)
        axis.set_xlabel("trained models")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower right")
    np.atleast_1d(axes)[0].set_ylabel("hypervolume / true front's (mean of {} seeds)".format(results["seeds"]))
    return save_png(figure, path)


def print_goal(results: Dict, size: int) -> None:
    """The issue's goal, per landscape: POP needs <= 1/3 of exhaustive's trainings (to 99% HV) and
    beats random search and NSGA-II at equal budget (mean HV and per-seed wins at the budget)."""
    budget = str(results["budget"])
    print("\ngoal check at {} trainings (equal budget) and to 99% HV (exhaustive = {}):".format(budget, size))
    for name, data in results["landscapes"].items():
        methods = data["methods"]
        for label in [m for m in methods if m.startswith("pop")]:
            ours = methods[label]["hv_at"][budget]
            parts = []
            for rival in ("random", "nsga2"):
                theirs = methods[rival]["hv_at"][budget]
                wins = sum(1 for a, b in zip(ours, theirs) if a > b)
                parts.append("vs {} {:.3f}/{:.3f} (wins {}/{})".format(rival, np.mean(ours), np.mean(theirs), wins,
                                                                   len(ours)))
            reached = [v for v in methods[label]["to_99"] if v is not None]
            third = "to 99%: {}".format("{:.0f} = {:.2f} of exhaustive".format(np.median(reached), np.median(reached) / size)
                                        if len(reached) == len(methods[label]["to_99"]) else
                                        "reached in {}/{} seeds".format(len(reached), len(methods[label]["to_99"])))
            print("  {:<9} {:<15} {}; {}".format(name, label, "; ".join(parts), third))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=200, help="trainings for random/NSGA-II/TPE (default 200)")
    parser.add_argument("--tpe-seeds", type=int, default=3,
                        help="seeds for multi-objective TPE (about 12 s each here; default 3)")
    parser.add_argument("--noise", type=float, default=1.5, help="accuracy noise (points) of the noisy landscape")
    parser.add_argument("--patience", type=int, default=30)
    args = parser.parse_args()

    from dfseg.search.candidates import enumerate_space
    from dfseg.search.landscapes import accuracy_landscape, synthetic_table, violation_rate
    from dfseg.space import SearchSpace

    space = SearchSpace(widths=(64, 128, 256, 512), blocks_per_stage=((1, 3), (1, 4), (1, 3)), t_min=1.0, t_max=5.0)
    candidates = enumerate_space(space, synthetic_table(space.all_parts()))
    size = len(candidates)
    latency = candidates.latency
    results = {"space": space.to_json(), "size": size, "seeds": args.seeds, "budget": args.budget,
               "landscapes": {}}  # type: Dict
    started = time.time()
    for name, noise in (("monotone", 0.0), ("noisy", args.noise)):
        per = {}  # type: Dict[str, Dict[str, list]]
        rates = []
        pop_variants = [("pop", 0.0, "random"), ("pop-guided", 0.0, "guided")]
        if noise:
            pop_variants += [("pop-eps", noise, "random"), ("pop-guided-eps", noise, "guided")]
        for seed in range(args.seeds):
            accuracy = accuracy_landscape(candidates.codes, seed=100 + seed, noise=noise)
            rates.append(violation_rate(candidates.codes, accuracy, seed=seed))
            ref = (float(latency.max()), float(accuracy.min()))
            true_hv = hypervolume(latency, accuracy, *ref)
            front = set(pareto_rows(latency, accuracy).tolist())
            runs = {}
            for label, eps, select in pop_variants:
                sequence, study, stop_at = run_pop(candidates, accuracy, seed, eps, args.patience, select)
                curve = HVCurve(sequence, latency, accuracy, ref, true_hv)
                pruned_front = int(sum(1 for r in front if study.pop.pruned[r] and not study.pop.trained[r]))
                runs[label] = (curve, {"trainings_to_cover": len(sequence), "stop_with_patience": stop_at,
                                       "hv_at_patience_stop": curve.at(stop_at),
                                       "true_front_size": len(front), "true_front_pruned": pruned_front})
            runs["random"] = (HVCurve(run_random(size, seed, size), latency, accuracy, ref, true_hv), {})
            runs["nsga2"] = (HVCurve(run_optuna(candidates, accuracy, seed, args.budget, "nsga2"), latency, accuracy,
                                     ref, true_hv), {})
            if seed < args.tpe_seeds:
                runs["motpe"] = (HVCurve(run_optuna(candidates, accuracy, seed, args.budget, "tpe"), latency,
                                         accuracy, ref, true_hv), {})
            for label, (curve, extra) in runs.items():
                entry = per.setdefault(label, {"hv_at": {str(c): [] for c in CHECKPOINTS}, "to_99": [], "extra": []})
                for c in CHECKPOINTS:  # a method that stopped early keeps its final HV
                    entry["hv_at"][str(c)].append(curve.at(c))
                entry["to_99"].append(curve.first_reaching(0.99))
                entry["extra"].append(extra)
            print("  {} seed {} done ({:.0f} s)".format(name, seed, time.time() - started), file=sys.stderr)
        results["landscapes"][name] = {"noise": noise, "violation_rate_mean": float(np.mean(rates)), "methods": per}

    from dfseg.fileio import write_json_atomic

    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "search_efficiency.json")
    write_json_atomic(path, results, indent=1)

    print("S^: {} candidates (exhaustive = {} trainings); {} seeds; HV ratio = mean over seeds".format(
        size, size, args.seeds))
    for name, data in results["landscapes"].items():
        print("\nlandscape {} (noise {}, assumption violated in {:.1%} of comparable pairs)".format(
            name, data["noise"], data["violation_rate_mean"]))
        print("  {:<15} {:>8} {:>8} {:>8} {:>8} {:>14} {}".format("method", "HV@50", "HV@100", "HV@200", "HV@400",
                                                                  "to 99% (med)", "POP: cover / patience stop / "
                                                                                  "front pruned"))
        for label, entry in data["methods"].items():
            reached = [v for v in entry["to_99"] if v is not None]
            to99 = "{:.0f} ({}/{})".format(np.median(reached), len(reached), len(entry["to_99"])) if reached else "never"
            extra = ""
            if entry["extra"] and entry["extra"][0]:
                cover = np.median([e["trainings_to_cover"] for e in entry["extra"]])
                stop = np.median([e["stop_with_patience"] for e in entry["extra"]])
                lost = sum(e["true_front_pruned"] for e in entry["extra"])
                fsize = sum(e["true_front_size"] for e in entry["extra"])
                extra = "{:.0f} ({:.1f}x fewer) / {:.0f} / {} of {}".format(cover, size / cover, stop, lost, fsize)
            print("  {:<15} {:>8.3f} {:>8.3f} {:>8.3f} {:>8.3f} {:>14} {}".format(
                label, *(np.mean(entry["hv_at"][str(c)]) for c in (50, 100, 200, 400)), to99, extra))
    png = plot_curves(results, os.path.join(RESULTS, "search_efficiency.png"))
    print_goal(results, size)
    if png:
        print("plot: {}".format(png))
    print("\nwrote {} in {:.0f} s".format(path, time.time() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
