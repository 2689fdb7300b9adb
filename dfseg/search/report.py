"""What a search leaves in --out DIR (all written atomically):

- front.json: B(D), a list of {"arch", "latency_ms", "accuracy"}, fastest first
- trials.csv: every finished, stopped (curve early stopping) or failed trial, with the epochs it
  trained and why it was stopped
- pruning.csv / pruning.png: trained, pruned and covered counts after each result (Fig. 8a)
- violations.json / assumption.png: trained comparable pairs x <= y and those with
  Acc(x) > Acc(y) + eps, where the partial-order assumption failed (Fig. 3b)
- tradeoff.png: latency vs accuracy of trained models, the front, stopped trials at their bounds,
  and where pruned candidates lie (Figs. 5 and 7)
- summary.json: counts, stop reason and these paths
"""

import csv
import io
import os
from typing import Any, Dict, List

import numpy as np

from ..fileio import write_atomic, write_json_atomic
from .pop import comparable_index_pairs, comparable_pairs, violations
from .study import Study


def write_outputs(out_dir: str, study: Study, plots: bool = True) -> Dict[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    paths = {}  # type: Dict[str, str]
    candidates = study.candidates

    paths["front"] = os.path.join(out_dir, "front.json")
    front = [{"arch": row["arch"].to_json(), "latency_ms": row["latency_ms"], "accuracy": row["accuracy"]}
             for row in study.front()]
    write_json_atomic(paths["front"], front)

    front_indices = set(study.pop.front())
    paths["trials"] = os.path.join(out_dir, "trials.csv")
    fields = ["trial", "arch", "latency_ms", "accuracy", "status", "epochs", "stop_reason", "seconds", "in_front",
              "error", "arch_json"]
    rows = [{"trial": t["trial"], "arch": t["arch"].short(), "latency_ms": "{:.6f}".format(t["latency_ms"]),
             "accuracy": "" if t["accuracy"] is None else t["accuracy"], "status": t["status"],
             "epochs": "" if t.get("epochs") is None else t["epochs"], "stop_reason": t.get("stop_reason") or "",
             "seconds": "" if t["seconds"] is None else t["seconds"], "in_front": int(t["index"] in front_indices),
             "error": t["error"] or "", "arch_json": t["arch"].dumps()} for t in study.trials]
    write_atomic(paths["trials"], _csv(fields, rows))

    paths["pruning"] = os.path.join(out_dir, "pruning.csv")
    write_atomic(paths["pruning"], _csv(["trial", "trained", "stopped", "pruned", "covered", "failed", "front"],
                                        study.history))

    indices, accuracies = study.pop.d_index, study.pop.d_accuracy
    index_pairs = comparable_index_pairs(candidates.codes, indices)
    found = violations(candidates.codes, candidates.latency, indices, accuracies, study.eps, index_pairs)
    pairs = comparable_pairs(candidates.codes, candidates.latency, indices, accuracies, index_pairs)
    paths["violations"] = os.path.join(out_dir, "violations.json")
    write_json_atomic(paths["violations"], {
        "eps": study.eps,
        "comparable_pairs": len(pairs),
        "violating_pairs": len(found),
        "rate": len(found) / len(pairs) if pairs else 0.0,
        "worst_delta_accuracy": min((p[1] for p in pairs), default=None),
        "violations": [dict(v, precedent=candidates.arch(v["precedent"]).short(),
                            successor=candidates.arch(v["successor"]).short()) for v in found],
    })

    summary = study.summary()
    if plots:
        paths.update(write_plots(out_dir, study, pairs))
    paths["summary"] = os.path.join(out_dir, "summary.json")
    write_json_atomic(paths["summary"], dict(summary, outputs=dict(paths)))
    return paths


def _csv(fields: List[str], rows: List[Dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def write_plots(out_dir: str, study: Study, pairs: List[tuple]) -> Dict[str, str]:
    from ..plots import pyplot as load_pyplot
    from ..plots import save_png

    pyplot = load_pyplot()
    paths = {}
    candidates = study.candidates
    d_lat = candidates.latency[study.pop.d_index] if study.pop.d_index else np.zeros(0)
    d_acc = np.asarray(study.pop.d_accuracy)
    front = study.front()

    figure, (top, bottom) = pyplot.subplots(2, 1, figsize=(7, 6), sharex=True,
                                            gridspec_kw={"height_ratios": [3, 1]})
    top.scatter(d_lat, d_acc, s=12, color="0.6", label="trained ({})".format(len(d_acc)))
    if front:
        top.step([r["latency_ms"] for r in front], [r["accuracy"] for r in front], where="post", color="C3")
        top.scatter([r["latency_ms"] for r in front], [r["accuracy"] for r in front], s=24, color="C3",
                    label="front B(D) ({})".format(len(front)))
    if study.pop.s_index:
        top.scatter(candidates.latency[study.pop.s_index], study.pop.s_bound, s=16, marker="v", color="C1",
                    label="stopped early, at its bound ({})".format(len(study.pop.s_index)))
    top.set_ylabel("accuracy")
    top.legend(loc="lower right")
    top.set_title("POP search: {} trained, {} pruned of {}".format(study.pop.n_trained, study.pop.n_pruned,
                                                                    len(candidates)))
    pruned = study.pop.pruned & ~study.pop.trained
    bins = np.linspace(float(candidates.latency[0]), float(candidates.latency[-1]) + 1e-9, 40)
    bottom.hist([candidates.latency[pruned], candidates.latency[~pruned & ~study.pop.trained]], bins=bins,
                stacked=True, color=["C0", "0.85"], label=["pruned", "not trained, not pruned"])
    bottom.set_xlabel("latency (ms, from the table)")
    bottom.set_ylabel("candidates")
    bottom.legend(loc="upper right", fontsize="small")
    paths["tradeoff_png"] = os.path.join(out_dir, "tradeoff.png")
    save_png(figure, paths["tradeoff_png"])

    figure, axis = pyplot.subplots(figsize=(6, 4))
    trials = [h["trial"] for h in study.history]
    axis.plot(range(1, len(trials) + 1), [h["pruned"] for h in study.history], label="pruned")
    axis.plot(range(1, len(trials) + 1), [h["trained"] for h in study.history], label="trained")
    axis.plot(range(1, len(trials) + 1), [h["covered"] for h in study.history], label="covered")
    axis.set_xlabel("results received")
    axis.set_ylabel("architectures")
    axis.legend()
    paths["pruning_png"] = os.path.join(out_dir, "pruning.png")
    save_png(figure, paths["pruning_png"])

    figure, axis = pyplot.subplots(figsize=(6, 4))
    if pairs:
        values = np.asarray(pairs)
        axis.scatter(values[:, 0], values[:, 1], s=8)
    axis.axhline(-study.eps, color="C3", linewidth=0.8)
    axis.axhline(0.0, color="0.5", linewidth=0.5)
    axis.set_xlabel("Lat(y) - Lat(x) (ms), x <= y")
    axis.set_ylabel("Acc(y) - Acc(x)")
    axis.set_title("partial-order assumption on trained pairs")
    paths["assumption_png"] = os.path.join(out_dir, "assumption.png")
    save_png(figure, paths["assumption_png"])
    return paths
