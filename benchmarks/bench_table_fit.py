"""How well the per-part latency table predicts whole networks (the paper's Fig. 3a) on this machine.

Measures the default table (dfseg-bench --table: the presets' parts plus the default space at
224x224), then validates it on the presets and 20 random members of the space, and writes the
MAPE, the largest error and the share within +-10% with the machine's description.  Reuses an
existing table at --table (the measurement resumes if it was interrupted).

    python benchmarks/bench_table_fit.py [--table benchmarks/results/table_fit_table.json] [--random 20]
"""

import argparse
import json
import os
import sys

from dfseg.bench.machine import describe_machine
from dfseg.cli.bench import main as bench_main
from dfseg.fileio import write_json_atomic

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", default=os.path.join(RESULTS, "table_fit_table.json"))
    parser.add_argument("--random", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default=None, help="cache of exported ONNX files (default: a temp dir)")
    parser.add_argument("--out", default=os.path.join(RESULTS, "bench_table_fit.json"))
    args = parser.parse_args()
    common = ["--no-progress"] + (["--work-dir", args.work_dir] if args.work_dir else [])
    validation = os.path.splitext(args.out)[0] + "_validation.json"
    rc = bench_main(["--table", args.table] + common)
    if rc:
        return rc
    rc = bench_main(["--validate-table", args.table, "--random", str(args.random), "--seed", str(args.seed),
                     "--json", validation] + common)
    if rc:
        return rc
    with open(validation) as handle:
        result = json.load(handle)
    summary = {key: result[key] for key in ("count", "mape_pct", "max_abs_error_pct", "worst", "within_10pct_share",
                                            "within_7pct_share", "mean_error_pct", "clock")}
    write_json_atomic(args.out, dict(summary, benchmark="bench_table_fit", table=os.path.relpath(args.table, HERE),
                                     validation=os.path.relpath(validation, HERE), png=result.get("png"),
                                     protocol=result.get("protocol"), machine=describe_machine()))
    print(json.dumps(summary, indent=2))
    print("wrote {}".format(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
