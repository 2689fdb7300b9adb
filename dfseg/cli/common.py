"""What every dfseg command shares: one-line errors with exit code 2, one-line usage errors, and
Ctrl-C and SIGTERM that finalise the outputs.

Device side: Python 3.6, no torch.
"""

import argparse
import math
import os
import re
import signal
import sys
import threading
from typing import Any, Callable, Dict, List, NoReturn, Optional, Sequence, Tuple

from ..build_config import DEFAULT_CALIBRATION_IMAGES, NETWORK_TYPINGS, PRECISIONS, BuildConfig, parse_layer_list
from ..errors import Terminated, UserError, raise_terminated
from ..fileio import check_distinct, check_outputs
from ..opencv_log import quiet_opencv
from ..uri import redact

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process SIGTERM ended


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are UserErrors: one line and exit code 2 like every other error."""

    def error(self, message: str) -> NoReturn:
        # "argument --threads: must be ..." reads as "--threads: must be ...", like every other message.
        message = re.sub(r"^argument ([^:]+): ", r"\1: ", message)
        raise UserError("{} (see {} --help)".format(message, self.prog))


def whole_number(minimum: int, maximum: Optional[int] = None) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum`` and <= ``maximum`` where given (a usage error names
    the option and the bounds)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("{!r} is not a whole number".format(text)) from None
        if value < minimum:
            raise argparse.ArgumentTypeError("must be at least {}, got {}".format(minimum, value))
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError("must be from {} to {}, got {}".format(minimum, maximum, value))
        return value

    parse.__name__ = "whole number"
    return parse


# A seed is what numpy's and torch's generators, other languages' and a JSON reader that keeps numbers as
# doubles all take exactly: a seed beyond it would be accepted here yet not be reproducible elsewhere.
MAX_SEED = 2 ** 32 - 1
seed_number = whole_number(0, MAX_SEED)


def number(minimum: float, above: bool = False, maximum: Optional[float] = None) -> Callable[[str], float]:
    """An argparse type: a finite float >= ``minimum`` (> with ``above``) and <= ``maximum`` where given;
    NaN and inf are refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError("{!r} is not a number".format(text)) from None
        if not math.isfinite(value) or value < minimum or (above and value == minimum) or (
                maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError("must be a finite number {} {}{}, got {}".format(
                ">" if above else ">=", minimum, "" if maximum is None else " and <= {}".format(maximum), text))
        return value

    parse.__name__ = "number"
    return parse


def add_build_options(parser: argparse.ArgumentParser, tensorrt: bool = True, cache: bool = True) -> None:
    """The BuildConfig's options, spelled the same in every command that builds or runs a model."""
    group = parser.add_argument_group("precision and build")
    group.add_argument("--precision", default="fp32", choices=PRECISIONS,
                       help="fp32, fp16 (an FP16 graph, FP32 input and output) or int8 (a Q/DQ graph calibrated on "
                            "--calibration); default fp32")
    group.add_argument("--fp32-layers", metavar="NAMES",
                       help="ONNX node names or prefixes kept in FP32, comma separated (e.g. /head/)")
    group.add_argument("--calibration", metavar="SOURCE",
                       help="int8 calibration images: a folder, a video or a Cityscapes root")
    group.add_argument("--calibration-images", type=whole_number(1), default=DEFAULT_CALIBRATION_IMAGES,
                       help="images used for int8 calibration, spread evenly over SOURCE (default {})".format(
                           DEFAULT_CALIBRATION_IMAGES))
    if cache:
        group.add_argument("--engine-cache", metavar="DIR", default="engines",
                           help="where engines and derived fp16/int8 graphs are cached (default engines)")
    if tensorrt:
        group.add_argument("--calibration-cache", metavar="FILE",
                           help="TensorRT 8.x implicit int8 calibration cache (read, or written after calibrating)")
        group.add_argument("--workspace-mb", type=whole_number(1), default=None,
                           help="TensorRT builder workspace in MB (default 1024)")
        group.add_argument("--timing-cache", metavar="FILE", help="TensorRT builder timing cache file")
        group.add_argument("--network-typing", default="auto", choices=NETWORK_TYPINGS,
                           help="TensorRT 10: strong (the fp16/int8 graph, default) or weak (the deprecated builder "
                                "flags); 11 is always strong, 8.x always weak")


def check_build_files(config: BuildConfig, inputs: List[Optional[str]],
                      outputs: Sequence[Tuple[str, Optional[str]]] = ()) -> None:
    """The files a build may write (caches) must not be an input, nor lie in the calibration folder, nor
    be one of the command's own ``outputs`` ((option, path) pairs, as ``check_outputs`` takes them); an
    output of the command must not lie in the calibration folder either (checked by the caller's own
    check_outputs through ``inputs``)."""
    caches = [("--engine-cache", config.cache_dir), ("--timing-cache", config.timing_cache),
              ("--calibration-cache", config.calibration_cache)]
    check_outputs(caches, inputs=[path for path in inputs if path] + ([config.calibration] if config.calibration else []),
                  folders=("--engine-cache",), outside_inputs=True)
    check_distinct(list(outputs) + caches)


def build_config_from_args(args: argparse.Namespace) -> BuildConfig:
    """The one BuildConfig of a command line (checked: a bad field is a one-line UserError)."""
    fields = {
        "precision": args.precision,
        "fp32_layers": parse_layer_list(args.fp32_layers),
        "calibration": args.calibration,
        "calibration_images": args.calibration_images,
    }
    if getattr(args, "engine_cache", None):
        fields["cache_dir"] = args.engine_cache
    for name in ("calibration_cache", "timing_cache", "network_typing", "workspace_mb"):
        value = getattr(args, name, None)
        if value is not None:
            fields[name] = value
    return BuildConfig(**fields).checked()


def run_command(prog: str, body: Callable[[Optional[List[str]]], int], argv: Optional[List[str]] = None) -> int:
    """Run ``body(argv)``; bad input becomes ``PROG: error: MESSAGE`` on stderr and exit code 2.

    SIGTERM raises ``Terminated`` (a KeyboardInterrupt) in the main thread, so the code that
    finalises outputs on Ctrl-C runs for it too; the exit code is then 143.  SIGINT raises
    KeyboardInterrupt (exit 130) even where the command started with it ignored: a shell starts
    background jobs (``cmd &`` in a script, some CI runners) so, and Python then installs no handler of
    its own, so ``kill -INT`` would be lost.
    """
    quiet_opencv()  # the commands say what went wrong themselves
    previous: Dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, raise_terminated)
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return body(argv)
    except UserError as exc:
        print("{}: error: {}".format(prog, one_line(redact(str(exc)))), file=sys.stderr)
        return EXIT_USAGE
    except Terminated:
        print("{}: terminated".format(prog), file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("{}: interrupted".format(prog), file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped into a reader that stopped (``| head``): nothing left to say to anyone.
        _silence_stdout()
        return 0
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: set outside Python (a program embedding it), not restorable
                signal.signal(signum, handler)


def one_line(message: str) -> str:
    """A message as one line: a path holding a newline is shown escaped, as Python would write it."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
