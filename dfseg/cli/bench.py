"""dfseg-bench: end-to-end model benchmarks, per-part latency tables and their validation.

    dfseg-bench --models df1-seg,resnet18 --sizes 360p --backend onnxruntime --json out.json --csv out.csv
    dfseg-bench --table table.json                    # default block suite, resumable
    dfseg-bench --validate-table table.json --json v.json --png v.png
    dfseg-bench --bundle DIR [--table t.json | --validate-table t.json]   # on a device without torch

Device side: Python 3.6; torch is imported only when models must be exported here (no --bundle).
"""

import argparse
import os
import shutil
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence

from ..arch import REFERENCE_MODEL_NAMES
from ..backends import BACKENDS
from ..backends.onnxrt import MAX_THREADS, MIN_THREADS
from ..backends.versions import backend_version
from ..bench.suite import DEFAULT_TABLE_SPACE_WIDTHS
from ..build_config import BuildConfig
from ..errors import UserError
from ..fileio import check_outputs
from .common import (
    ArgumentParser,
    add_build_options,
    build_config_from_args,
    check_build_files,
    number,
    run_command,
    seed_number,
    whole_number,
)
from .space_options import add_space_arguments, decoder_choices, space_from_args, space_given

PROG = "dfseg-bench"
# Random members to validate: each is exported and timed (minutes apiece), and drawing 10^9 distinct ones from a
# small space tried 10^11 times before the first line.
MAX_RANDOM = 1000


def main(argv: Optional[List[str]] = None) -> int:
    return run_command(PROG, _main, argv)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_argument_group("what to measure")
    what.add_argument("--models", help="comma-separated presets, reference models (resnet18, ...), short forms or "
                                       "JSON files (default: all DF-Seg presets, DF backbones, reference backbones)")
    what.add_argument("--sizes", help="segmentation sizes, e.g. 360p,720p,1080p or 640x360 (default 360p,720p,1080p; "
                                      "360p for --table); classification models always run at 224x224")
    what.add_argument("--table", metavar="OUT", help="measure a per-part latency table into OUT (resumable)")
    what.add_argument("--validate-table", metavar="TABLE", help="compare TABLE's estimates with measured networks")
    what.add_argument("--bundle", metavar="DIR", help="read ONNX files from a dfseg-export --bundle directory "
                                                     "(no torch needed)")
    add_space_arguments(parser, DEFAULT_TABLE_SPACE_WIDTHS, "search space (the options of dfseg-search: a "
                        "table measures its parts, a validation its random members)", latency_window=False)
    space = parser.add_argument_group("table block suite")
    space.add_argument("--space-only", action="store_true",
                       help="only the space's parts, none of the models' (what dfseg-search asks for)")
    space.add_argument("--no-space", action="store_true", help="only the models' parts, no search space")
    space.add_argument("--decoder-space", action="store_true",
                       help="also every decoder setting [C3,C4,C5] (from --choices) of the segmentation models at "
                            "--sizes")
    space.add_argument("--random", type=whole_number(0, MAX_RANDOM), default=20,
                       help="random space members to validate, at most {} (default 20); a --table run calibrates "
                            "on others".format(MAX_RANDOM))
    space.add_argument("--seed", type=seed_number, default=0, help="seed for the random members (default 0)")
    how = parser.add_argument_group("how")
    how.add_argument("--backend", default="auto", help="auto (tensorrt where its Python module imports, else "
                                                       "onnxruntime), onnxruntime, tensorrt, trtexec (times engines "
                                                       "with trtexec's own loop, one process per round)")
    how.add_argument("--threads", type=whole_number(MIN_THREADS, MAX_THREADS), default=None,
                     help="intra-op threads, {} to {} (default: 1 for --table/--validate-table, backend default "
                          "otherwise)".format(MIN_THREADS, MAX_THREADS))
    how.add_argument("--clock", default="auto", choices=("auto", "wall", "thread"),
                     help="table/validation clock: wall, or thread (CPU time of the calling thread: immune to "
                          "other processes on a shared CPU; valid with one thread on CPU). auto: thread for "
                          "onnxruntime on CPU with --threads 1, else wall")
    how.add_argument("--pin-cpu", default=None, help="pin to CPUs: auto (least busy one) or a list like 0,1")
    how.add_argument("--warmup", type=number(0.0), default=None, help="warm-up seconds per model (default 1.0, table 0.3)")
    how.add_argument("--rounds", type=whole_number(1), default=None, help="rounds (default 5)")
    how.add_argument("--runs-per-round", type=whole_number(1), default=None, help="timed runs per round (default 8; table 5)")
    how.add_argument("--chunk", type=whole_number(1), default=8, help="parts measured together in one rotation (default 8)")
    how.add_argument("--strict", action="store_true",
                     help="exit 2 (instead of a warning) when a table comes from another machine identity")
    how.add_argument("--work-dir", default=None, help="where exported ONNX files are cached (default: a temp dir)")
    add_build_options(parser)
    out = parser.add_argument_group("output")
    out.add_argument("--json", metavar="FILE", help="write results as JSON")
    out.add_argument("--csv", metavar="FILE", help="write benchmark records as CSV")
    out.add_argument("--png", metavar="FILE", help="scatter plot for --validate-table (default: next to --json)")
    out.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _protocol(args: argparse.Namespace, table_like: bool):
    from ..bench.protocol import Protocol

    base = Protocol(warmup_s=0.3, runs_per_round=5) if table_like else Protocol()
    changes: Dict[str, Any] = {}
    if args.warmup is not None:
        changes["warmup_s"] = args.warmup
    if args.rounds is not None:
        changes["rounds"] = args.rounds
    if args.runs_per_round is not None:
        changes["runs_per_round"] = args.runs_per_round
    return base._replace(**changes).validate()


def _backend(args: argparse.Namespace) -> str:
    from ..backends import resolve_backend

    choice = resolve_backend(args.backend)
    if choice.note:
        args.notes.append("dfseg-bench: {}".format(choice.note))
    # A backend asked for by name that is not installed: said now, before the machine warnings and the exports.
    if choice.backend == "tensorrt":
        from ..backends.tensorrt.builder import import_tensorrt

        import_tensorrt()
    elif choice.backend == "trtexec":
        from ..backends.tensorrt.trtexec import find_trtexec

        find_trtexec()
    if not args.table:  # (a table's int8 is refused above without a calibration cache)
        args.build_config.needs_images(graph_path=choice.backend == "onnxruntime")
    return choice.backend


def _clock(args: argparse.Namespace, backend: str, threads: Optional[int]) -> str:
    """The clock for tables and validation (see --clock)."""
    cpu_only = False
    if backend == "onnxruntime":
        from ..backends.onnxrt import PROVIDERS, available_providers

        cpu_only = set(available_providers()) & set(PROVIDERS.values()) == {PROVIDERS["cpu"]}
    if args.clock == "auto":
        return "thread" if cpu_only and threads == 1 else "wall"
    if args.clock == "thread" and not (cpu_only and threads == 1):
        raise UserError("--clock thread measures the calling thread only: use it with --backend onnxruntime on CPU "
                        "and --threads 1")
    return args.clock


class _Sources:
    """The host source exports into a temp dir that is removed at exit unless --work-dir was given."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.temp: Optional[str] = None
        from ..bench.model_files import BundleSource, HostSource

        if args.bundle:
            self.source: Any = BundleSource(args.bundle)
            return
        try:
            import torch  # noqa: F401  (only to give a clear error before exporting)
        except ImportError:
            raise UserError("exporting models needs torch, which is not installed here; on a device, create a "
                            "bundle on the host with dfseg-export --bundle DIR and run dfseg-bench --bundle DIR"
                            ) from None
        work_dir = args.work_dir
        if work_dir is None:
            work_dir = self.temp = tempfile.mkdtemp(prefix="dfseg-bench-")
        self.source = HostSource(work_dir)

    def close(self) -> None:
        self.source.close()
        if self.temp is not None:
            shutil.rmtree(self.temp, ignore_errors=True)


def _main(argv: Optional[List[str]]) -> int:
    args = build_parser().parse_args(argv)
    args.build_config = build_config_from_args(args)
    if (args.table or args.validate_table) and args.build_config.fp32_layers:
        raise UserError("--fp32-layers: a table's parts and probes do not share node names; measure tables without it")
    outputs = [("--table", args.table), ("--json", args.json), ("--csv", args.csv), ("--png", _png_path(args)),
               ("--work-dir", args.work_dir)]
    check_build_files(args.build_config, [args.validate_table, args.bundle], outputs)
    if args.table and args.build_config.precision == "int8" and not args.build_config.calibration_cache:
        raise UserError("--table --precision int8: a part's inputs are feature maps, which images cannot calibrate; "
                        "measure an fp16 or fp32 table (or, on TensorRT 8.x, pass --calibration-cache FILE)")
    if args.table and args.validate_table:
        raise UserError("--table and --validate-table: measure the table first, then validate it in a second run")
    if args.backend not in ("auto",) + BACKENDS:
        raise UserError("--backend {}: choose one of auto, {}".format(args.backend, ", ".join(BACKENDS)))
    if args.clock != "auto" and not (args.table or args.validate_table):
        raise UserError("--clock {}: applies to --table and --validate-table only".format(args.clock))
    unused = ["{} {}".format(option, value) for option, value, used in (
        ("--json", args.json, not args.table), ("--csv", args.csv, not (args.table or args.validate_table)),
        ("--png", args.png, bool(args.validate_table))) if value and not used]
    if unused:  # each would be silently not written
        raise UserError("{}: {} does not write it (a benchmark writes --json and --csv, --validate-table --json "
                        "and --png, a --table run only its table); leave it out".format(
                            unused[0], "--table" if args.table else "--validate-table" if args.validate_table
                            else "a benchmark"))
    for option, value in (("--models", args.models), ("--sizes", args.sizes)):
        if value is not None and not [v for v in value.split(",") if v.strip()]:
            raise UserError("{} {!r}: names nothing; leave the option out for the defaults".format(option, value))
    if args.table:
        from ..bench.table_run import continued_table

        continued_table(args.table)
    check_outputs(outputs, inputs=[args.validate_table, args.bundle], folders=("--work-dir",), outside_inputs=True)
    from ..bench.machine import pin_to_cpus

    args.notes = []  # printed once every input is checked (_inputs_checked): bad input is one line
    if args.pin_cpu is not None:  # --pin-cpu '' is an error, not no pinning
        args.notes.append("pinned to CPU(s) {}".format(pin_to_cpus(args.pin_cpu)))
    backend = _backend(args)
    sources = _Sources(args)
    try:
        if args.table:
            return _run_table(args, backend, sources.source)
        if args.validate_table:
            return _run_validate(args, backend, sources.source)
        return _run_benchmark(args, backend, sources.source)
    finally:
        sources.close()


def _environment(backend: str, config: BuildConfig, threads: Optional[int] = None) -> Dict[str, Any]:
    from ..bench.machine import describe_machine, machine_identity

    machine = describe_machine()
    version = backend_version(backend)
    return {"machine": machine, "backend": backend, "backend_version": version,
            "precision": config.precision, "build_config": config.to_dict(),
            "identity": machine_identity(backend, version, threads, config.precision)}


def _check_identity(args: argparse.Namespace, path: str, recorded: Optional[Dict[str, Any]],
                    current: Dict[str, Any]) -> List[str]:
    """One warning line (or, with --strict, exit 2) when the table at ``path`` has another identity."""
    from ..bench.machine import identity_warning

    warning = identity_warning(path, recorded, current, strict=args.strict)
    return [warning] if warning else []


def _inputs_checked(args: argparse.Namespace, source: Any, specs: Sequence[Any] = (), parts: Sequence[Any] = ()
                    ) -> None:
    """Check the files the run will read (a bundle's: present, hashes as its manifest says), then print the
    notes held back until now: a bad input is one error line, never after a note or a machine warning."""
    source.check(specs, parts)
    for note in args.notes:
        print(note, file=sys.stderr)


def _print_warnings(warnings: List[str]) -> None:
    for warning in warnings:
        print("warning: {}".format(warning), file=sys.stderr)


# ---------------------------------------------------------------------- end-to-end benchmark
def _run_benchmark(args: argparse.Namespace, backend: str, source: Any) -> int:
    from ..bench import report, suite
    from ..bench.e2e import benchmark_models
    from ..bench.machine import describe_machine, machine_warnings

    if args.bundle:
        specs = source.model_specs("benchmark")
        if args.models:
            wanted = set(m.strip() for m in args.models.split(","))
            specs = [s for s in specs if s.name in wanted]
        if args.sizes:
            sizes = {str(s) for s in suite.parse_sizes(args.sizes, ())} | {"224x224"}
            specs = [s for s in specs if str(s.size) in sizes]
        if not specs:
            raise UserError("bundle {}: no benchmark models match --models/--sizes".format(args.bundle))
    else:
        models = [m for m in args.models.split(",") if m.strip()] if args.models else suite.default_benchmark_models()
        specs = suite.benchmark_specs(models, suite.parse_sizes(args.sizes, suite.DEFAULT_SEG_SIZES))
    protocol = _protocol(args, table_like=False)
    _inputs_checked(args, source, specs)
    config = args.build_config
    env = _environment(backend, config)
    before = env["machine"]
    _print_warnings(machine_warnings(before))
    result: Dict[str, Any] = {}

    def finalise(interrupted: bool) -> None:
        header = report.environment_header(before, backend, env["backend_version"], args.threads)
        print(report.benchmark_screen(result["records"], header, result["warnings"]))
        payload = {"kind": "dfseg.benchmark/1", "environment": env, "machine_after": describe_machine(),
                   "protocol": dict(protocol.to_json(), threads=args.threads),
                   "records": result["records"], "warnings": result["warnings"]}
        if interrupted:  # the models measured before Ctrl-C or SIGTERM; the others are missing
            payload["interrupted"] = True
        if args.json:
            report.write_json(args.json, payload)
        if args.csv:
            report.write_csv(args.csv, result["records"])

    try:
        benchmark_models(specs, source, protocol, backend, config, args.threads, show_progress=not args.no_progress,
                         into=result)
    except KeyboardInterrupt:
        if result.get("records"):
            finalise(interrupted=True)
        raise
    finalise(interrupted=False)
    return 0


# ---------------------------------------------------------------------- latency table
def table_suite_from_args(args: argparse.Namespace, source: Any = None) -> Any:
    """The ``bench.suite.TableSuite`` that ``dfseg-bench --table`` measures with these options (a bundle's
    own, with --bundle); its calibration networks leave out the members that --random and --seed validate."""
    from ..bench import suite

    if args.bundle:
        suite_ = suite.TableSuite(source.parts(), list(source.manifest.get("table_sizes") or []),
                                  source.model_specs("calibrate"))
    else:
        seg_sizes = suite.parse_sizes(args.sizes, suite.DEFAULT_TABLE_SEG_SIZES)
        models = [m for m in args.models.split(",") if m.strip()] if args.models else suite.default_benchmark_models()
        if args.space_only:
            models = []
        # --models alone measures just those models' parts (what a missing-entries hint asks for).
        space = _space(args) if not args.no_space and (not args.models or space_given(args)) else None
        suite_ = suite.table_suite(models, seg_sizes, space, args.decoder_space, _choices(args, models, seg_sizes),
                                   args.random, args.seed)
    if not suite_.parts:
        raise UserError("--table: nothing to measure (no DF models selected and --no-space)")
    return suite_


def _run_table(args: argparse.Namespace, backend: str, source: Any) -> int:
    from ..bench.machine import describe_machine, machine_warnings
    from ..bench.table_meta import device_meta
    from ..bench.table_run import check_resumable, measure_table

    parts, sizes, calibration = table_suite_from_args(args, source)
    threads = 1 if args.threads is None else args.threads
    config = args.build_config
    clock = _clock(args, backend, threads)
    protocol = _protocol(args, table_like=True)
    _inputs_checked(args, source, calibration, parts)
    env = _environment(backend, config, threads)
    machine = env["machine"]
    warnings = machine_warnings(machine)
    if not calibration:
        warnings.append("{}: no network to calibrate the in-network factor on (no search space, no model with a "
                        "repeated block); its estimates are plain sums of the parts (5-10% low on a CPU): add space "
                        "options to calibrate".format(args.table))
    meta = device_meta(machine, backend, env["backend_version"], config, sizes, env["identity"])
    # another backend's table: before any line
    existing = check_resumable(args.table, meta, backend, threads, clock, config)
    if existing is not None and existing.entries:
        warnings += _check_identity(args, args.table, existing.meta.get("identity"), env["identity"])
    _print_warnings(warnings)
    print("measuring {} parts into {} ({} thread(s), backend {}, {} clock)".format(
        len(parts), args.table, threads, backend, clock), file=sys.stderr)
    table = measure_table(parts, source, args.table, meta, protocol, backend, threads,
                          chunk_size=args.chunk, show_progress=not args.no_progress, clock=clock, config=config,
                          calibration=calibration)
    table.meta["machine_after"] = describe_machine()
    table.save(args.table, complete=True)
    noise = table.meta.get("noise") or {}
    print("wrote {} ({} entries, overhead {:.4f} ms/network, median round spread {})".format(
        args.table, len(table), table.overhead_ms, noise.get("median_round_spread", "-")))
    return 0


def _space(args: argparse.Namespace):
    from ..bench import suite

    return space_from_args(args, suite.DEFAULT_TABLE_SPACE_WIDTHS)


def _choices(args: argparse.Namespace, models: List[str], seg_sizes: List[Any]) -> Optional[List[int]]:
    """--choices for --decoder-space, K taken from the segmentation models' classes."""
    if not args.choices:
        return None
    if not args.decoder_space:
        raise UserError("--choices: applies to --decoder-space (the decoder settings whose parts are measured)")
    from ..bench import suite

    classes = {s.arch.classes for s in suite.benchmark_specs([m for m in models if m not in REFERENCE_MODEL_NAMES],
                                                             seg_sizes) if s.arch is not None and s.arch.is_segmentation}
    return decoder_choices(args, classes.pop() if len(classes) == 1 else 19)


# ---------------------------------------------------------------------- validation
def _png_path(args: argparse.Namespace) -> Optional[str]:
    """Where --validate-table draws its scatter plot: --png, else next to --json."""
    if not args.validate_table:
        return args.png
    return args.png or (os.path.splitext(args.json)[0] + ".png" if args.json else None)


def _run_validate(args: argparse.Namespace, backend: str, source: Any) -> int:
    from ..bench import report, suite
    from ..bench.machine import describe_machine, machine_warnings
    from ..bench.validate import check_coverage, scatter_png, validate_table
    from ..latency.table import LatencyTable

    table = LatencyTable.load(args.validate_table)
    config = args.build_config
    threads = 1 if args.threads is None else args.threads
    if args.bundle:
        specs = source.model_specs("validate")
    else:
        seg_sizes = suite.parse_sizes(args.sizes, suite.DEFAULT_TABLE_SEG_SIZES)
        presets = [m for m in args.models.split(",") if m.strip()] if args.models else None
        specs = suite.validation_specs(_space(args), args.random, args.seed, seg_sizes, presets)
    check_coverage(table, specs)  # the table lacking parts is bad input: said before any warning
    protocol = _protocol(args, table_like=True)
    clock = _clock(args, backend, threads)
    env = _environment(backend, config, threads)
    warnings = _check_identity(args, args.validate_table, table.meta.get("identity"), env["identity"])
    _inputs_checked(args, source, specs)
    warnings += machine_warnings(env["machine"])
    _print_warnings(warnings)
    table_clock = (table.meta.get("protocol") or {}).get("clock")
    if table_clock not in (None, clock):
        warnings.append("{}: table measured with the {} clock, validating with the {} clock; use --clock {}".format(
            args.validate_table, table_clock, clock, table_clock))
        _print_warnings(warnings[-1:])
    summary = validate_table(table, specs, source, protocol, backend, threads, clock=clock,
                             show_progress=not args.no_progress, config=config)
    print(report.validation_screen(summary))
    png = _png_path(args)
    if png:
        title = "{} {} ({} thread(s), {} clock): MAPE {:.2f}%".format(
            backend, config.precision, threads, clock, summary["mape_pct"] or 0)
        if scatter_png(summary["records"], png, title) is None:
            warnings.append("matplotlib is not installed: no scatter plot written")
            png = None
    if args.json:
        payload = dict(summary, table=args.validate_table, table_meta={k: v for k, v in table.meta.items()
                                                                       if not k.startswith("machine")},
                       environment=env, machine_after=describe_machine(), png=png,
                       protocol=dict(protocol.to_json(), threads=threads))
        payload["warnings"] = summary["warnings"] + warnings
        report.write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
