"""dfseg-search: Partial Order Pruning architecture search (the paper's Algorithm 1).

    dfseg-search --table tx2.json --t-min 1 --t-max 5 --train-cmd "python train.py --arch {arch} --out {result}"
    dfseg-search --table tx2.json --replay accuracies.csv --out search-tx2
    dfseg-search --table tx2.json --dry-run --space-out space.jsonl
    dfseg-search --table tx2.json --decoder-search --backbone df1 --size 640x360 --train-cmd ...
    dfseg-search --table tx2.json --train-cmd ... --resume            (continue a killed search)

Without an evaluator (--train-cmd, --replay or --trainer) it describes S^ as --dry-run does.
Exit codes: 0 done, 1 the search stopped after --max-failures failed trials in a row, 2 bad input,
130 interrupted, 143 terminated (the journal keeps every finished trial; --resume continues).
"""

import argparse
import os
import sys
from typing import Any, List, Optional

from ..arch import Arch
from ..errors import UserError
from ..fileio import DiskFullError, check_outputs
from ..search.curves import MODES as EARLY_STOP_MODES
from ..search.curves import EarlyStopping
from ..search.selection import SELECTIONS
from ..space import DEFAULT_WIDTHS, DecoderSpace
from .common import ArgumentParser, number, run_command, seed_number, whole_number
from .space_options import add_space_arguments, decoder_space_from_args, space_from_args

PROG = "dfseg-search"
EXIT_FAILED = 1
MAX_LR = 100.0
MAX_LOADER_WORKERS = 256


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True, help="latency table JSON from dfseg-bench --table")
    parser.add_argument("--out", default=None, help="output directory (default search-<table name>)")
    add_space_arguments(parser, DEFAULT_WIDTHS, "search space", latency_window=True)
    decoder = parser.add_argument_group("decoder search (section 3.5)")
    decoder.add_argument("--decoder-search", action="store_true", help="search [C3,C4,C5] for a fixed --backbone")
    decoder.add_argument("--backbone", default=None, help="backbone preset, short form or JSON (e.g. df1)")
    pop = parser.add_argument_group("search")
    pop.add_argument("--seed", type=seed_number, default=0, help="random seed (default 0)")
    pop.add_argument("--patience", type=whole_number(1), default=30,
                     help="stop when the front B(D) is unchanged for this many results (default 30)")
    pop.add_argument("--max-trials", type=whole_number(1), default=None, help="stop after this many trainings")
    pop.add_argument("--eps", type=number(0.0), default=0.0,
                     help="tolerance of the partial-order assumption, in accuracy units (default 0)")
    pop.add_argument("--select", default="random", choices=SELECTIONS,
                     help="how the next candidate is drawn from S^ minus P: random (the paper's Algorithm 1) or "
                          "guided (part of the draws go to where trained precedents promise the largest gain over "
                          "the front; fewer trainings for the same front, see README) (default random)")
    pop.add_argument("--explore", type=float, default=0.5,
                     help="with --select guided: share of uniformly random draws (default 0.5)")
    pop.add_argument("--early-stop", default="off", choices=EARLY_STOP_MODES,
                     help="curve: stop a trial after an epoch when its bound (its fitted saturating curve at the last "
                          "epoch, widened by how far such fits fell short on reference trials, + --stop-margin) "
                          "cannot beat the front at its latency; "
                          "needs per-epoch accuracy (--val-every 1, or {progress} of --train-cmd); see README "
                          "(default off)")
    pop.add_argument("--min-epochs", type=whole_number(3), default=5,
                     help="with --early-stop curve: the first epoch whose curve fit is trusted; a trial stops at the "
                          "earliest one epoch later (default 5)")
    pop.add_argument("--stop-margin", type=number(0.0), default=0.0,
                     help="with --early-stop curve: added to every bound, in accuracy units (default 0)")
    pop.add_argument("--min-curves", type=whole_number(1), default=10,
                     help="with --early-stop curve: no stop before this many reference trials (every 4th, trained to "
                          "the end) have finished and calibrated the bound (default 10)")
    pop.add_argument("--resume", action="store_true", help="continue the search journalled in --out")
    pop.add_argument("--strict", action="store_true",
                     help="exit 2 (instead of a warning) when --resume is given a table of another machine identity")
    pop.add_argument("--retry-failed", action="store_true",
                     help="with --resume: train the journal's failed trials again (after fixing the evaluator)")
    pop.add_argument("--max-failures", type=whole_number(1), default=5,
                     help="stop with exit code 1 after this many trials fail in a row (default 5)")
    pop.add_argument("--dry-run", action="store_true", help="only enumerate S^ and describe it")
    pop.add_argument("--space-out", default=None, help="with --dry-run: write every candidate as JSONL")
    evaluate = parser.add_argument_group("evaluator (how Acc(x) is obtained)")
    evaluate.add_argument("--train-cmd", default=None,
                          help='training command run per trial (no shell); {arch} = file with the architecture '
                               'JSON, {result} = where it writes {"accuracy": <float>}; optional {progress} = a file '
                               'where it appends one JSON line per epoch, {"epoch": k, "epochs": E, "accuracy": a} '
                               '(journalled as the trial\'s progress records)')
    evaluate.add_argument("--replay", default=None, help="CSV/JSON of known accuracies (arch, accuracy)")
    evaluate.add_argument("--trainer", default=None, metavar="DATA_DIR",
                          help="built-in torch trainer on an image-folder or Cityscapes-format dataset")
    evaluate.add_argument("--epochs", type=whole_number(1), default=2, help="built-in trainer: epochs (default 2)")
    evaluate.add_argument("--batch-size", type=whole_number(1), default=32, help="built-in trainer: batch size (default 32)")
    # An lr beyond any schedule's (float32 overflows at 3.4e38) fails every trial instead of this check.
    evaluate.add_argument("--lr", type=number(0.0, above=True, maximum=MAX_LR), default=0.1, help="built-in trainer: peak learning rate (default 0.1)")
    evaluate.add_argument("--device", default="cpu", help="built-in trainer: torch device (default cpu)")
    evaluate.add_argument("--labels", default="auto", choices=("auto", "trainIds", "labelIds"),
                          help="built-in trainer, Cityscapes: *_gtFine_labelTrainIds or *_gtFine_labelIds (mapped "
                               "by the official table); auto: trainIds where present (default auto)")
    evaluate.add_argument("--scale", type=_scale_range, default=(0.5, 2.0), metavar="MIN-MAX",
                          help="built-in trainer, segmentation: random scale relative to the input size "
                               "(default 0.5-2.0)")
    evaluate.add_argument("--crop", type=_size, default=None, metavar="WxH",
                          help="built-in trainer, segmentation: training crop (default the input size --size)")
    evaluate.add_argument("--no-flip", action="store_true", help="built-in trainer: no random horizontal flip")
    # Each worker is a process: 100000 of them exhaust the machine before the first batch (as --threads).
    evaluate.add_argument("--loader-workers", type=whole_number(0, MAX_LOADER_WORKERS), default=2,
                          help="built-in trainer: DataLoader worker processes per training process (default 2)")
    evaluate.add_argument("--amp", action="store_true",
                          help="built-in trainer: mixed precision (bf16 autocast on CPU, fp16 with a gradient scaler "
                               "on CUDA)")
    evaluate.add_argument("--channels-last", action="store_true", help="built-in trainer: channels-last memory format")
    evaluate.add_argument("--val-every", type=whole_number(0), default=0,
                          help="built-in trainer: validate every N epochs as well as after the last (default 0: "
                               "only the last)")
    evaluate.add_argument("--steps-per-epoch", type=whole_number(1), default=None,
                          help="built-in trainer: at most this many steps per epoch (quick trials; default the "
                               "whole train split)")
    evaluate.add_argument("--timeout", type=number(0.0, above=True), default=None,
                          help="--train-cmd: seconds per training attempt (the command's process group is ended)")
    evaluate.add_argument("--retries", type=whole_number(0), default=1, help="retries of a failed trial (default 1)")
    run = parser.add_argument_group("execution")
    run.add_argument("--workers", type=whole_number(1), default=1, help="trials in flight at once (default 1)")
    run.add_argument("--ray-address", default=None, help="run trials as Ray tasks (auto, ray://..., or local)")
    run.add_argument("--cpus-per-trial", type=number(0.0, above=True), default=1.0, help="Ray CPU request per trial (default 1)")
    run.add_argument("--gpus-per-trial", type=number(0.0), default=0.0,
                     help="GPUs per trial (default 0): with the built-in trainer and --device cuda, N >= 2 trains "
                          "each trial as N data-parallel processes (NCCL); with --ray-address, the trial's Ray "
                          "task requests them (a fraction shares a GPU)")
    run.add_argument("--devices-per-trial", type=whole_number(1), default=1,
                     help="built-in trainer on CPU: N data-parallel processes per trial (Gloo) (default 1)")
    run.add_argument("--no-plots", action="store_true", help="skip PNG plots")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _scale_range(text: str) -> Any:
    parts = text.split("-")
    try:
        low, high = (float(p) for p in parts) if len(parts) == 2 else (float("nan"), float("nan"))
    except ValueError:
        low = high = float("nan")
    if not (0 < low <= high < float("inf")):
        raise argparse.ArgumentTypeError("expected MIN-MAX with 0 < MIN <= MAX, e.g. 0.5-2.0, got {!r}".format(text))
    return (low, high)


def _size(text: str) -> Any:
    from ..sizes import SizeError, parse_size

    try:
        return parse_size(text)
    except SizeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _trial_devices(args: argparse.Namespace) -> int:
    """Processes per trial of the built-in trainer: --gpus-per-trial N on CUDA, else --devices-per-trial."""
    gpus = args.gpus_per_trial
    if gpus >= 1 and args.trainer is not None:
        if gpus != int(gpus):
            raise UserError("--gpus-per-trial {}: the built-in trainer takes a whole number of GPUs (or a fraction "
                            "below 1 to share one)".format(gpus))
        if not args.device.startswith("cuda"):
            raise UserError("--gpus-per-trial {}: the built-in trainer needs --device cuda for GPUs (for CPU "
                            "processes use --devices-per-trial)".format(gpus))
        if args.devices_per_trial != 1:
            raise UserError("choose one of --gpus-per-trial and --devices-per-trial")
        return int(gpus)
    return args.devices_per_trial


def _decoder_space(args: argparse.Namespace) -> DecoderSpace:
    if not args.backbone:
        raise UserError("--decoder-search needs --backbone (a preset such as df1, a short form or JSON)")
    return decoder_space_from_args(args, Arch.parse(args.backbone))


def build_space(args: argparse.Namespace, table: Any) -> Any:
    """The space from the options; default widths shrink to those the table covers (with a note)."""
    from ..search.candidates import covered_space, require_parts

    space = _decoder_space(args) if args.decoder_search else space_from_args(args, DEFAULT_WIDTHS)
    if args.decoder_search or args.widths is not None:
        require_parts(space, table)
        return space
    covered = covered_space(space, table)
    if covered.widths != space.widths:
        print("{}: note: the table has no parts for width(s) {}; searching widths {} (pass --widths to insist)".format(
            PROG, ",".join(str(w) for w in space.widths if w not in covered.widths),
            ",".join(map(str, covered.widths))), file=sys.stderr)
    return covered


def _default_out(table_path: str, decoder: bool) -> str:
    stem = os.path.splitext(os.path.basename(table_path))[0]
    return "search-{}{}".format(stem, "-decoder" if decoder else "")


def early_stopping(args: argparse.Namespace) -> EarlyStopping:
    return EarlyStopping(args.early_stop, args.min_epochs, args.stop_margin, args.min_curves)


def describe_early_stopping(args: argparse.Namespace) -> str:
    line = early_stopping(args).describe()
    if args.early_stop != "off" and args.trainer is not None and args.val_every != 1:
        line += "; note: the built-in trainer validates only {} (add --val-every 1 for a curve)".format(
            "after the last epoch" if not args.val_every else "every {} epochs".format(args.val_every))
    return line


def describe_space(candidates: Any, table: Any, out: Optional[str]) -> None:
    from ..search.candidates import describe, latency_histogram, preset_positions

    info = describe(candidates)
    space = candidates.space
    print("search space: {}".format(" ".join(space.to_argv())))
    if "size_without_window" in info:
        print("|S| = {:,} architectures; |S^| = {:,} in the latency window [{}, {}] ms ({:.1f} MB in memory)".format(
            info["size_without_window"], info["size"], _ms(space.t_min, "-inf"), _ms(space.t_max, "inf"), info["bytes"] / 1e6))
    else:
        print("|S^| = {:,} decoder settings in [{}, {}] ms".format(info["size"], _ms(space.t_min, "-inf"),
                                                                  _ms(space.t_max, "inf")))
    histogram = latency_histogram(candidates.latency)
    peak = max((count for _, _, count in histogram), default=1) or 1
    print("latency histogram (ms):")
    for low, high, count in histogram:
        print("  {:8.3f} - {:8.3f} {:>10,} {}".format(low, high, count, "#" * int(round(40 * count / peak))))
    print("presets:")
    for preset in preset_positions(candidates, table):
        if preset.missing:
            print("  {:<11} latency unknown (table lacks {} of its parts)".format(preset.name, preset.missing))
        elif preset.outside:
            print("  {:<11} {:8.3f} ms  {}".format(preset.name, preset.latency_ms, preset.outside))
        else:
            print("  {:<11} {:8.3f} ms  in S^  (faster than {:.0%} of S^)".format(
                preset.name, preset.latency_ms, preset.faster_than))
    if out:
        print("wrote {:,} candidates to {}".format(len(candidates), out))


def _ms(value: Optional[float], unbounded: str) -> str:
    return unbounded if value is None else "{:g}".format(value)


def _check_journal(out: str, resume: bool) -> None:
    from ..search.session import journal_path

    exists = os.path.exists(journal_path(out))
    if exists and not os.path.isfile(journal_path(out)):
        raise UserError("{}: is not a file, so it cannot be a search journal; move it away or choose another "
                        "--out".format(journal_path(out)))
    if resume and not exists:
        raise UserError("--resume: {} holds no search journal ({} is missing); check --out, or leave out --resume "
                        "to start a new search".format(out, journal_path(out)))
    if exists and not resume:
        raise UserError("{} already holds a search journal; pass --resume to continue it or choose another --out".format(
            out))


def _option(error: Exception) -> UserError:
    """The search's neutral errors (``search.study``) in the words of this command's options."""
    from ..search.study import EmptySpaceError

    if isinstance(error, EmptySpaceError):
        return UserError("the search space is empty: widen the latency window (--t-min/--t-max) or the space")
    return UserError("--{} {}: {}".format(error.setting.replace("_", "-"), error.value, error.problem))


def check_evaluator(args: argparse.Namespace) -> None:
    """Refuse an evaluator that cannot work before anything else is done: a training command that
    does not split or is not found, an unreadable --replay file, a --trainer folder that is missing or
    GPUs asked of a CPU device (``make_evaluator`` then reads every label of the dataset)."""
    from ..search import evaluators

    if args.train_cmd is not None:
        evaluators.CommandEvaluator(args.train_cmd, timeout_s=args.timeout)
    elif args.timeout is not None:  # accepted and then ignored, it would promise a limit that nothing enforces
        raise UserError("--timeout {:g}: limits a --train-cmd command; the built-in --trainer runs its --epochs "
                        "and --replay reads a file, so leave --timeout out".format(args.timeout))
    if args.replay is not None:
        args.replay_accuracy = evaluators.load_accuracies(args.replay)
    if args.trainer is not None:
        from ..search.training.data import dataset_layout

        _trial_devices(args)
        dataset_layout(args.trainer, args.labels)


def make_evaluator(args: argparse.Namespace, space: Any) -> Any:
    from ..search import evaluators

    chosen = [name for name in ("train_cmd", "replay", "trainer") if getattr(args, name) is not None]
    if len(chosen) > 1:
        raise UserError("choose one evaluator: --train-cmd, --replay or --trainer (got {})".format(
            ", ".join("--" + c.replace("_", "-") for c in chosen)))
    if args.train_cmd is not None:
        return evaluators.CommandEvaluator(args.train_cmd, timeout_s=args.timeout)
    if args.replay is not None:
        return evaluators.ReplayEvaluator(args.replay, getattr(args, "replay_accuracy", None))
    if args.trainer is not None:
        from ..search.trainer import TrainerConfig, TrainerEvaluator
        from ..search.training.recipe import Recipe

        recipe = Recipe(scale=args.scale, crop=args.crop, flip=not args.no_flip)
        config = TrainerConfig(data=args.trainer, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                               device=args.device, input_size=space.input_size, recipe=recipe, labels=args.labels,
                               loader_workers=args.loader_workers, amp=args.amp, channels_last=args.channels_last,
                               devices=_trial_devices(args), val_every=args.val_every,
                               steps_per_epoch=args.steps_per_epoch)
        # Every label and image is checked here, before the journal opens and the first trial starts; GPUs
        # are counted here unless Ray places the trials (the Ray executor counts the cluster's).
        return TrainerEvaluator(config, classes=getattr(space, "classes", None), progress=not args.quiet,
                                check_devices=args.ray_address is None)
    return None


def _check_options(args: argparse.Namespace, out: str) -> None:
    """Everything the options alone decide, before the table is read."""
    from ..search.study import SettingError, check_settings

    if args.space_out and not args.dry_run:
        raise UserError("--space-out needs --dry-run")
    try:
        check_settings(patience=args.patience, max_trials=args.max_trials, select=args.select, explore=args.explore,
                       early_stop=early_stopping(args))
    except SettingError as exc:
        raise _option(exc) from None
    for option, value in (("--out", args.out), ("--space-out", args.space_out)):
        if value is not None and not value.strip():
            raise UserError("{} '': give a path".format(option))
    if args.ray_address is not None and not args.ray_address.strip():
        raise UserError("--ray-address '': give auto, local, HOST:PORT or ray://HOST:PORT, or leave the option out "
                        "to train on this machine")
    if args.retry_failed and not args.resume:
        raise UserError("--retry-failed goes with --resume (it retries the failed trials of a journalled search)")
    check_outputs([("--space-out", args.space_out)] + ([] if args.dry_run else [("--out", out)]),
                  inputs=[args.table, args.replay, args.trainer], folders=("--out",), outside_inputs=True)
    if not args.dry_run:
        check_evaluator(args)
        if any(getattr(args, name) is not None for name in ("train_cmd", "replay", "trainer")):
            _check_journal(out, args.resume)
        if args.ray_address is not None:
            from ..search.executors import check_ray_address

            check_ray_address(args.ray_address)


def _main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from ..latency.table import LatencyTable
    from ..search.candidates import enumerate_candidates

    out = args.out or _default_out(args.table, args.decoder_search)
    _check_options(args, out)
    table = LatencyTable.load(args.table)
    space = build_space(args, table)
    evaluator = None if args.dry_run else make_evaluator(args, space)
    candidates = enumerate_candidates(space, table, progress=not args.quiet)
    if evaluator is None:
        if args.space_out:
            candidates.write_jsonl(args.space_out, progress=not args.quiet)
        describe_space(candidates, table, args.space_out)
        print(describe_early_stopping(args))
        if not args.dry_run:
            print("{}: no evaluator given, so nothing was trained; add --train-cmd, --replay or --trainer to "
                  "search".format(PROG))
        return 0
    try:
        study = _search(args, out, candidates, table, evaluator)
        return _report(args, out, study)
    except DiskFullError as exc:
        raise DiskFullError("{}; the journal keeps every finished trial, so continue with --resume".format(
            exc)) from None


def _search(args: argparse.Namespace, out: str, candidates: Any, table: Any, evaluator: Any) -> Any:
    """Run the search in a session (journal, identity check, study, executor); the study it leaves."""
    from ..search.report import write_outputs
    from ..search.session import SearchSession
    from ..search.study import EmptySpaceError, SettingError

    settings = dict(seed=args.seed, patience=args.patience, eps=args.eps, max_trials=args.max_trials,
                    select=args.select, explore=args.explore, max_failures=args.max_failures,
                    early_stop=early_stopping(args))
    try:
        session = SearchSession(candidates, table, args.table, out, settings, strict=args.strict,
                                warn=lambda line: print("{}: warning: {}".format(PROG, line), file=sys.stderr))
    except (SettingError, EmptySpaceError) as exc:
        raise _option(exc) from None
    with session:
        study = session.study
        if args.retry_failed:
            retried = study.retry_failed()
            print("{}: retrying {} failed trial(s)".format(PROG, retried), file=sys.stderr)
        if session.resumed:
            print("{}: resumed {} finished trial(s) from {}".format(PROG, len(study.trials), session.journal.path),
                  file=sys.stderr)
        print("{}: |S^| = {:,} candidates; training with {}; {}".format(
            PROG, len(candidates), type(evaluator).__name__, describe_early_stopping(args)), file=sys.stderr)
        session.start(evaluator, workers=args.workers, ray_address=args.ray_address,
                      cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, retries=args.retries)
        # Front, trials and reports stay current while the search runs (plots only at the end: they
        # take a second each); the journal already keeps every result.
        session.run(progress=not args.quiet, on_result=lambda current: write_outputs(out, current, plots=False))
    return study


def _report(args: argparse.Namespace, out: str, study: Any) -> int:
    from ..search.report import write_outputs
    from ..search.study import FAILURES

    paths = write_outputs(out, study, plots=not args.no_plots)
    summary = study.summary()
    if summary["stop_reason"] == FAILURES:
        print("{}: error: {} trials failed in a row, the last with: {}; fix the evaluator, then continue with "
              "--resume --retry-failed (see {})".format(PROG, args.max_failures, study.trials[-1]["error"],
                                                       os.path.join(out, "trials.csv")), file=sys.stderr)
        return EXIT_FAILED
    print("{}: stopped ({}): {} trained ({} stopped early), {} pruned, {} failed of {:,}; front of {}".format(
        PROG, summary["stop_reason"], summary["trained"], summary["stopped"], summary["pruned"], summary["failed"],
        summary["size"], summary["front"]))
    for row in study.front():
        print("  {:8.3f} ms  {:8.3f}  {}".format(row["latency_ms"], row["accuracy"], row["arch"].short()))
    print("results in {}: {}".format(out, ", ".join(sorted(os.path.basename(p) for p in paths.values()))))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return run_command(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
