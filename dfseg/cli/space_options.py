"""The search-space options, defined once for ``dfseg-search`` and ``dfseg-bench`` (which measures the
space's parts).  The inverse (the options that rebuild a given space, so that the command the search
prints for missing parts measures exactly the space it searched) is ``to_argv``/``table_argv`` of the
spaces themselves (``dfseg.space``); this module is only the parsing side of their command line.
Device side (dfseg-bench imports it): Python 3.6, no torch.
"""

import argparse
from typing import List, Optional, Sequence

from ..arch import BASIC, CITYSCAPES_CLASSES, DEFAULT_STEM, Arch
from ..sizes import is_decimal, parse_size
from ..space import (
    DEFAULT_BLOCKS,
    DEFAULT_DECODER_INPUT,
    DEFAULT_INPUT,
    DecoderSpace,
    SearchSpace,
    SpaceError,
    parse_block_ranges,
)
from .common import number, whole_number

_BLOCKS_TEXT = ",".join("{}-{}".format(*pair) for pair in DEFAULT_BLOCKS)


def add_space_arguments(parser: argparse.ArgumentParser, default_widths: Sequence[int], title: str,
                        latency_window: bool) -> None:
    """The space's options.  Every default is None, so that a command can tell a given option from an
    absent one; ``space_from_args`` applies the defaults (``default_widths`` for the widths)."""
    group = parser.add_argument_group(title)
    # --space-widths and --space-blocks: the names dfseg-bench used before it shared these options.
    group.add_argument("--widths", "--space-widths", dest="widths", default=None,
                       help="allowed block widths (default {})".format(",".join(map(str, default_widths))))
    group.add_argument("--blocks", "--space-blocks", dest="blocks", default=None,
                       help="blocks per stage 3,4,5 as MIN-MAX ranges (default {})".format(_BLOCKS_TEXT))
    group.add_argument("--block", default=None,
                       help="block kind: basic, bottleneck, or three kinds comma-separated, one per stage (default "
                            "basic)")
    group.add_argument("--size", default=None,
                       help="the space's input size WIDTHxHEIGHT, N or 360p (default 224 for backbones, 640x360 for "
                            "decoders)")
    group.add_argument("--stem", default=None, help="stem widths (default {})".format(",".join(map(str, DEFAULT_STEM))))
    group.add_argument("--decoder", default=None,
                       help="backbones of a segmentation network with this fixed decoder C3,C4,C5 (e.g. 19,32,128)")
    group.add_argument("--classes", type=whole_number(1), default=None,
                       help="classes (default 1000, or 19 with a decoder)")
    group.add_argument("--choices", default=None,
                       help="decoder search: width-controller choices (default K,32,64,128,256,512)")
    if latency_window:
        group.add_argument("--t-min", type=number(0.0), default=None, help="lower latency bound in ms (S^)")
        group.add_argument("--t-max", type=number(0.0), default=None, help="upper latency bound in ms (S^)")


def space_given(args: argparse.Namespace) -> bool:
    """Whether any option of the backbone space was given."""
    return any(getattr(args, name, None) is not None for name in ("widths", "blocks", "block", "stem", "decoder"))


def space_from_args(args: argparse.Namespace, default_widths: Sequence[int],
                    widths: Optional[Sequence[int]] = None) -> SearchSpace:
    """The backbone space of the options (``widths`` overrides ``--widths``)."""
    block = args.block or BASIC
    return SearchSpace(
        widths=widths if widths is not None else (int_list(args.widths, "--widths") if args.widths else default_widths),
        blocks_per_stage=parse_block_ranges(args.blocks) if args.blocks else DEFAULT_BLOCKS,
        block=block.split(",") if "," in block else block,
        input_size=parse_size(args.size) if args.size else DEFAULT_INPUT,
        t_min=getattr(args, "t_min", None),
        t_max=getattr(args, "t_max", None),
        stem=int_list(args.stem, "--stem") if args.stem else DEFAULT_STEM,
        decoder=None if args.decoder is None else int_list(args.decoder, "--decoder"),
        classes=args.classes,
    )


def decoder_choices(args: argparse.Namespace, classes: int) -> Optional[List[int]]:
    if not args.choices:
        return None
    return [classes if c.strip().upper() == "K" else int_list(c, "--choices")[0] for c in args.choices.split(",")]


def decoder_space_from_args(args: argparse.Namespace, backbone: Arch) -> DecoderSpace:
    classes = args.classes or CITYSCAPES_CLASSES
    size = parse_size(args.size) if args.size else DEFAULT_DECODER_INPUT
    return DecoderSpace(backbone, classes=classes, choices=decoder_choices(args, classes), input_size=size,
                        t_min=getattr(args, "t_min", None), t_max=getattr(args, "t_max", None))


def int_list(text: str, option: str) -> List[int]:
    values = [v.strip() for v in str(text).split(",")]
    if not values or not all(is_decimal(v) for v in values):
        raise SpaceError("{}: expected comma-separated integers, got {!r}".format(option, text))
    return [int(v) for v in values]


