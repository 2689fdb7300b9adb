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

``--curves`` (issue 26) counts epochs instead of trainings.  Every candidate learns along a
saturating curve towards its final accuracy, a(k) = A - (A - a0) (e^(-k/tau) - e^(-E/tau)) /
(1 - e^(-E/tau)) plus Gaussian noise before the last epoch, with a time constant tau and a noise
level drawn per candidate (so a slower learner sometimes overtakes a faster one: the share of
crossing pairs is reported).  Compared at equal total epochs, on the monotone and the noisy
landscape, --seeds seeds: POP training every trial to the end; POP with curve early stopping
(dfseg/search/curves.py, the rule dfseg-search --early-stop curve runs); guided POP with it;
optuna's multi-objective TPE with optuna's HyperbandPruner; random search with ASHA (optuna's
SuccessiveHalvingPruner).  Optuna refuses ``Trial.report`` in multi-objective studies, so each
trial's accuracies are reported to a shadow single-objective study that holds the pruner and
decides (the pruner's own code, on accuracy, as these tools are used in practice).  Reported:
epochs to reach 99% of the true front's hypervolume, and (for the violated landscape, where no
POP variant reaches 99%) epochs to reach the hypervolume plain POP ends at, each with the per-seed
ratios to plain POP (median and range over seeds); HV at equal epochs; true-front members lost to
wrong stops and to pruning.  Writes benchmarks/results/search_efficiency_curves.json and .png.
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


def landscape_panels(results: Dict):
    """A figure with one panel per landscape, or None without matplotlib."""
    from dfseg.plots import pyplot

    try:
        plt = pyplot()
    except ImportError:
        return None
    count = len(results["landscapes"])
    return plt.subplots(1, count, figsize=(6 * count, 4.2), sharey=True)


def plot_curves(results: Dict, path: str):
    """Mean HV ratio against trainings, one panel per landscape; None without matplotlib."""
    from dfseg.plots import save_png

    panels = landscape_panels(results)
    if panels is None:
        return None
    figure, axes = panels
    landscapes = results["landscapes"]
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


# ---------------------------------------------------------------------------------------- --curves
EPOCHS = 20
START_ACCURACY = 10.0


class Curves:
    """The learning curves of a landscape: ``at(row, k)`` is the validation accuracy after epoch k."""

    def __init__(self, final: np.ndarray, seed: int, epochs: int = EPOCHS) -> None:
        rng = np.random.default_rng(seed)
        self.final, self.epochs = final, epochs
        self.tau = rng.lognormal(np.log(3.0), 0.6, size=final.size)  # epochs; slower learners overtake later
        self.noise = rng.uniform(0.2, 1.0, size=final.size)  # points of validation noise, per candidate
        self.seed = seed

    def at(self, row: int, epoch: int) -> float:
        if epoch >= self.epochs:
            return float(self.final[row])
        tau, total = self.tau[row], self.epochs
        share = (np.exp(-epoch / tau) - np.exp(-total / tau)) / (1.0 - np.exp(-total / tau))
        noise = np.random.default_rng([self.seed, row, epoch]).normal(0.0, self.noise[row])
        return float(self.final[row] - (self.final[row] - START_ACCURACY) * share + noise)

    def crossing_share(self, pairs: int = 4000) -> float:
        """Among sampled pairs, the share whose order at epoch E/4 differs from their final order."""
        rng = np.random.default_rng(self.seed)
        a, b = rng.integers(self.final.size, size=(2, pairs))
        early = np.array([self.at(i, self.epochs // 4) - self.at(j, self.epochs // 4) for i, j in zip(a, b)])
        return float(np.mean(np.sign(early) != np.sign(self.final[a] - self.final[b])))


class EpochLog:
    """Finished rows and the epochs spent when each finished; HV after any number of epochs."""

    def __init__(self) -> None:
        self.spent = 0
        self.events = []  # (epochs spent so far, finished row)
        self.stopped = []  # rows stopped early
        self.stopped_epochs = 0  # epochs the stopped trials trained

    def train(self, epochs: int, row=None) -> None:
        self.spent += epochs
        if row is not None:
            self.events.append((self.spent, row))

    def hv_at(self, budget: int, latency, accuracy, ref, true_hv) -> float:
        rows = [row for spent, row in self.events if spent <= budget]
        return hypervolume(latency[rows], accuracy[rows], *ref) / true_hv if rows else 0.0

    def first_reaching(self, level: float, latency, accuracy, ref, true_hv):
        rows = []
        lat, acc = np.zeros(0), np.zeros(0)
        for spent, row in self.events:
            rows.append(row)
            lat, acc = np.append(lat, latency[row]), np.append(acc, accuracy[row])
            if hypervolume(lat, acc, *ref) / true_hv >= level:
                return spent
        return None


def run_pop_curves(candidates, curves: Curves, seed: int, select: str, early: str, budget: int) -> EpochLog:
    """POP epoch by epoch, as dfseg-search runs it: each epoch's record, then the stop rule."""
    from dfseg.search.curves import EarlyStopping
    from dfseg.search.study import Study

    study = Study(candidates, seed=seed, patience=10 ** 9, select=select, early_stop=EarlyStopping(early))
    log = EpochLog()
    while log.spent < budget and (trial := study.ask()) is not None:
        for epoch in range(1, curves.epochs + 1):
            study.record_progress(trial.number, [{"epoch": epoch, "epochs": curves.epochs,
                                                  "accuracy": curves.at(trial.index, epoch)}])
            decision = study.check_stop(trial.number)
            if decision is not None:
                study.stop(trial.number, decision["epoch"], decision["bound"], decision["front"], decision["prunes"])
                log.train(epoch)
                log.stopped.append(trial.index)
                log.stopped_epochs += epoch
                break
        else:
            study.tell(trial.number, float(curves.final[trial.index]))
            log.train(curves.epochs, trial.index)
    log.pruned = study.pop.pruned & ~study.pop.trained
    return log


def _pruner_study(kind: str, seed: int, epochs: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    if kind == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
    else:
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    # A fixed name: HyperbandPruner assigns trials to brackets by hashing the study's name, which is
    # random by default, so MOTPE + Hyperband was not reproducible between runs.
    return optuna.create_study(study_name="shadow-{}-{}".format(kind, seed), direction="maximize", pruner=pruner,
                               sampler=optuna.samplers.RandomSampler(seed=seed))


def train_with_pruner(shadow, curves: Curves, row: int, log: EpochLog) -> bool:
    """One trial epoch by epoch under the shadow study's pruner; True when it trained to the end."""
    import optuna

    trial = shadow.ask()
    for epoch in range(1, curves.epochs + 1):
        trial.report(curves.at(row, epoch), epoch)
        if epoch < curves.epochs and trial.should_prune():
            shadow.tell(trial, state=optuna.trial.TrialState.PRUNED)
            log.train(epoch)
            log.stopped.append(row)
            log.stopped_epochs += epoch
            return False
    shadow.tell(trial, float(curves.final[row]))
    log.train(curves.epochs, row)
    return True


def run_random_asha(size: int, curves: Curves, seed: int, budget: int) -> EpochLog:
    shadow = _pruner_study("asha", seed, curves.epochs)
    log = EpochLog()
    for row in np.random.default_rng(seed).permutation(size):
        if log.spent >= budget:
            break
        train_with_pruner(shadow, curves, int(row), log)
    return log


def run_motpe_hyperband(candidates, curves: Curves, seed: int, budget: int) -> EpochLog:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = candidates.space
    lookup = {bytes(candidates.codes[i]): i for i in range(len(candidates))}
    total = sum(high for _, high in space.blocks_per_stage)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=optuna.samplers.TPESampler(
        seed=seed, multivariate=True, n_startup_trials=20))
    shadow = _pruner_study("hyperband", seed, curves.epochs)
    log, seen, asks = EpochLog(), {}, 0
    while log.spent < budget and asks < 2 * budget:  # TPE repeats itself once it converges
        asks += 1
        trial = study.ask()
        counts = [trial.suggest_int("n{}".format(s + 3), low, high)
                  for s, (low, high) in enumerate(space.blocks_per_stage)]
        widths = [trial.suggest_categorical("w{}".format(j), list(space.widths)) for j in range(total)]
        chosen = sorted(widths[:sum(counts)])
        stages, start = [], 0
        for count in counts:
            stages.append(chosen[start:start + count])
            start += count
        row = lookup.get(bytes(np.asarray(space.order_key(space.make(stages)), dtype=np.uint8)))
        if row is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        if row not in seen:  # a candidate is trained once; asked again, it costs nothing
            seen[row] = train_with_pruner(shadow, curves, row, log)
        if seen[row]:
            study.tell(trial, [float(candidates.latency[row]), float(curves.final[row])])
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return log


def main_curves(args) -> int:
    from dfseg.fileio import write_json_atomic
    from dfseg.search.candidates import enumerate_space
    from dfseg.search.landscapes import accuracy_landscape, synthetic_table, violation_rate
    from dfseg.space import SearchSpace

    space = SearchSpace(widths=(64, 128, 256, 512), blocks_per_stage=((1, 3), (1, 4), (1, 3)), t_min=1.0, t_max=5.0)
    candidates = enumerate_space(space, synthetic_table(space.all_parts()))
    size, latency = len(candidates), candidates.latency
    budget = args.epoch_budget
    checkpoints = [c for c in (1000, 2000, 3000, 4000, 6000, 8000, 12000) if c <= budget]
    results = {"space": space.to_json(), "size": size, "seeds": args.seeds, "epochs_per_training": EPOCHS,
               "epoch_budget": budget, "checkpoints": checkpoints, "tpe_seeds": args.tpe_seeds,
               "tpe_budget": args.tpe_budget,
               "landscapes": {}}  # type: Dict
    started = time.time()
    for name, noise in (("monotone", 0.0), ("noisy", args.noise)):
        per, rates, crossing = {}, [], []
        for seed in range(args.seeds):
            accuracy = accuracy_landscape(candidates.codes, seed=100 + seed, noise=noise)
            curves = Curves(accuracy, seed=1000 + seed)
            rates.append(violation_rate(candidates.codes, accuracy, seed=seed))
            crossing.append(curves.crossing_share())
            ref = (float(latency.max()), float(accuracy.min()))
            true_hv = hypervolume(latency, accuracy, *ref)
            front = set(pareto_rows(latency, accuracy).tolist())
            runs = {"pop": run_pop_curves(candidates, curves, seed, "random", "off", budget),
                    "pop+curve": run_pop_curves(candidates, curves, seed, "random", "curve", budget),
                    "pop-guided": run_pop_curves(candidates, curves, seed, "guided", "off", budget),
                    "pop-guided+curve": run_pop_curves(candidates, curves, seed, "guided", "curve", budget),
                    "random+asha": run_random_asha(size, curves, seed, budget)}
            if seed < args.tpe_seeds:
                runs["motpe+hyperband"] = run_motpe_hyperband(candidates, curves, seed, min(budget, args.tpe_budget))
            # Where no method reaches 99% (the violated landscape), the level plain POP ends at: epochs to
            # reach it compare the methods as well.
            pop_final = runs["pop"].hv_at(budget, latency, accuracy, ref, true_hv)
            for label, log in runs.items():
                entry = per.setdefault(label, {"hv_at": {str(c): [] for c in checkpoints}, "to_99": [],
                                               "to_pop_final": [], "pop_final_hv": [],
                                               "front_stopped": [], "front_pruned": [], "front_size": [],
                                               "trials": [], "stopped": [], "epochs_stopped": []})
                for c in checkpoints:
                    entry["hv_at"][str(c)].append(log.hv_at(c, latency, accuracy, ref, true_hv))
                entry["to_99"].append(log.first_reaching(0.99, latency, accuracy, ref, true_hv))
                entry["to_pop_final"].append(log.first_reaching(pop_final - 1e-9, latency, accuracy, ref, true_hv))
                entry["pop_final_hv"].append(pop_final)
                entry["epochs_stopped"].append(log.stopped_epochs)
                entry["front_stopped"].append(len(front & set(log.stopped)))
                pruned = getattr(log, "pruned", None)
                entry["front_pruned"].append(int(sum(1 for r in front if pruned[r])) if pruned is not None else 0)
                entry["front_size"].append(len(front))
                entry["trials"].append(len(log.events) + len(log.stopped))
                entry["stopped"].append(len(log.stopped))
            print("  {} seed {} done ({:.0f} s)".format(name, seed, time.time() - started), file=sys.stderr)
        results["landscapes"][name] = {"noise": noise, "violation_rate_mean": float(np.mean(rates)),
                                       "crossing_share_mean": float(np.mean(crossing)), "methods": per}
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "search_efficiency_curves.json")
    write_json_atomic(path, results, indent=1)
    print_curves(results)
    png = plot_epoch_curves(results, os.path.join(RESULTS, "search_efficiency_curves.png"))
    if png:
        print("plot: {}".format(png))
    print("\nwrote {} in {:.0f} s".format(path, time.time() - started))
    return 0


def _median_reached(values):
    reached = [v for v in values if v is not None]
    if not reached:
        return "never", None
    text = "{:.0f}".format(np.median(reached))
    if len(reached) < len(values):
        text += " ({}/{} seeds)".format(len(reached), len(values))
    return text, float(np.median(reached)) if len(reached) == len(values) else None


def paired_ratios(entry: Dict, baseline: Dict, field: str):
    """Per seed, this method's epochs over plain POP's (seeds where both reached the level)."""
    return [a / b for a, b in zip(entry[field], baseline[field]) if a is not None and b]


def _ratio_text(ratios, seeds: int) -> str:
    if not ratios:
        return "-"
    return "{:.2f} [{:.2f}-{:.2f}]{}".format(np.median(ratios), min(ratios), max(ratios),
                                           "" if len(ratios) == seeds else " ({}/{})".format(len(ratios), seeds))


def print_curves(results: Dict) -> None:
    checkpoints = results["checkpoints"]
    print("S^: {} candidates, {} epochs per full training, budget {} epochs; {} seeds (TPE {})".format(
        results["size"], results["epochs_per_training"], results["epoch_budget"], results["seeds"],
        results["tpe_seeds"]))
    for name, data in results["landscapes"].items():
        print("\nlandscape {} (noise {}, {:.1%} of comparable pairs violated, {:.1%} of pairs cross after "
              "epoch E/4)".format(name, data["noise"], data["violation_rate_mean"], data["crossing_share_mean"]))
        print("  {:<17} {} {:>18} {:>24} {:>18} {:>24} {:>7} {:>7} {:>16}".format(
            "method", " ".join("{:>7}".format("HV@{}".format(c)) for c in checkpoints), "epochs to 99% (med)",
            "/ POP per seed, med [range]", "to POP's final HV", "/ POP per seed", "trials", "stopped",
            "front lost s/p"))
        pop = data["methods"]["pop"]
        baseline = _median_reached(pop["to_99"])[1]
        for label, entry in data["methods"].items():
            text, value = _median_reached(entry["to_99"])
            if value is not None and baseline:
                text += " = {:.2f}x".format(value / baseline)
            seeds = len(entry["to_99"])
            print("  {:<17} {} {:>18} {:>24} {:>18} {:>24} {:>7.0f} {:>7.0f} {:>16}".format(
                label, " ".join("{:>7.3f}".format(np.mean(entry["hv_at"][str(c)])) for c in checkpoints), text,
                _ratio_text(paired_ratios(entry, pop, "to_99"), seeds), _median_reached(entry["to_pop_final"])[0],
                _ratio_text(paired_ratios(entry, pop, "to_pop_final"), seeds),
                np.median(entry["trials"]), np.median(entry["stopped"]),
                "{} / {} of {}".format(sum(entry["front_stopped"]), sum(entry["front_pruned"]),
                                       sum(entry["front_size"]))))


def plot_epoch_curves(results: Dict, path: str):
    """Mean HV ratio against epochs, one panel per landscape; None without matplotlib."""
    from dfseg.plots import save_png

    panels = landscape_panels(results)
    if panels is None:
        return None
    figure, axes = panels
    for axis, (name, data) in zip(np.atleast_1d(axes), results["landscapes"].items()):
        for number, (label, entry) in enumerate(data["methods"].items()):
            points = results["checkpoints"]
            axis.plot(points, [np.mean(entry["hv_at"][str(c)]) for c in points], marker="o", markersize=3,
                      linestyle="-" if label.startswith("pop") else "--", label=label, color="C{}".format(number))
        axis.axhline(0.99, color="0.6", linewidth=0.6)
        axis.set_title("{} ({:.1%} violated pairs)".format(name, data["violation_rate_mean"]), fontsize=9)
        axis.set_xlabel("epochs trained (all trials)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower right")
    np.atleast_1d(axes)[0].set_ylabel("hypervolume / true front's (mean)")
    return save_png(figure, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=200, help="trainings for random/NSGA-II/TPE (default 200)")
    parser.add_argument("--tpe-seeds", type=int, default=3,
                        help="seeds for multi-objective TPE (about 12 s each here; default 3)")
    parser.add_argument("--noise", type=float, default=1.5, help="accuracy noise (points) of the noisy landscape")
    parser.add_argument("--patience", type=int, default=30)
    parser.add_argument("--curves", action="store_true",
                        help="learning-curve landscapes: compare early stopping at equal epochs (issue 26)")
    parser.add_argument("--epoch-budget", type=int, default=8000, help="with --curves: epochs per method")
    parser.add_argument("--tpe-budget", type=int, default=1000,
                        help="with --curves: epochs for TPE + Hyperband (each trial's ask grows with the trials "
                             "before it; default 1000)")
    args = parser.parse_args()
    if args.curves:
        return main_curves(args)

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
