"""Table 1's latency column on this machine, as ratios to ResNet-18 (the paper's numbers are TX2 ms).

All backbones are measured in one run, rotating in rounds (dfseg.bench.protocol), at 224x224 on
ONNX Runtime.  Default: one thread and the thread CPU clock, which on our shared machines gives the
latency a quiet machine would show; ``--clock wall --threads N`` measures wall time instead.

    python benchmarks/bench_backbones.py [--threads 1] [--clock thread] [--out benchmarks/results/bench_backbones.json]
"""

import argparse
import os
import sys
import tempfile

from dfseg.bench.machine import describe_machine
from dfseg.bench.model_files import HostSource, resolve_model
from dfseg.bench.protocol import CLOCKS, COMPUTE, Protocol
from dfseg.bench.subjects import measure_models
from dfseg.fileio import write_json_atomic
from dfseg.models.table1 import REFERENCE_FACTS

# Paper Table 1 (TX2, ms).  MobileNet V1 and ShuffleNet V1 are not in our model registry.
PAPER_MS = {name: facts.tx2_latency_ms for name, facts in REFERENCE_FACTS.items()}
HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="thread")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs-per-round", type=int, default=8)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "bench_backbones.json"))
    args = parser.parse_args()
    if args.clock == "thread" and args.threads != 1:
        parser.error("--clock thread needs --threads 1")
    protocol = Protocol(warmup_s=0.5, rounds=args.rounds, runs_per_round=args.runs_per_round)
    before = describe_machine()
    with tempfile.TemporaryDirectory(prefix="bench-backbones-") as work:
        source = HostSource(work)
        results = measure_models(((name, source.model_path(resolve_model(name))) for name in PAPER_MS), protocol,
                                 "onnxruntime", args.threads, CLOCKS[args.clock])
    stats = {name: results[name].modes[COMPUTE] for name in PAPER_MS}
    base = stats["resnet18"].median_ms
    rows = []
    for name, paper in sorted(PAPER_MS.items(), key=lambda item: item[1]):
        rows.append({"model": name, "median_ms": round(stats[name].median_ms, 3), "p90_ms": round(stats[name].p90_ms, 3),
                     "round_spread": round(stats[name].round_spread, 4),
                     "ratio_to_resnet18": round(stats[name].median_ms / base, 3),
                     "paper_tx2_ms": paper, "paper_ratio_to_resnet18": round(paper / PAPER_MS["resnet18"], 3)})
    print("{:<14} {:>10} {:>8} {:>12} {:>8}".format("model", "median ms", "ratio", "paper ratio", "spread"))
    for row in rows:
        print("{model:<14} {median_ms:>10.2f} {ratio_to_resnet18:>8.2f} {paper_ratio_to_resnet18:>12.2f} "
              "{round_spread:>8.1%}".format(**row))
    write_json_atomic(args.out, {"benchmark": "bench_backbones", "size": "224x224", "backend": "onnxruntime",
                                 "threads": args.threads, "clock": args.clock, "protocol": protocol.to_json(),
                                 "machine_before": before, "machine_after": describe_machine(), "rows": rows})
    print("wrote {}".format(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
