"""dfseg-convert: the authors' released .caffemodel weights -> dfseg weights (safetensors).

    dfseg-convert df1-seg DF1-Seg.caffemodel df1-seg.safetensors
    dfseg-convert df2a df2a_imagenet.caffemodel df2a.safetensors --list
    dfseg-convert dflite-seg df-lite_seg_mergebn.caffemodel dflite-seg.safetensors

Supports df1, df2, df2a, df1-seg, df2-seg1, df2-seg2 and dflite-seg, the released ``*_mergebn``
files too (BN folded into conv biases; DFlite-Seg's only release), and any architecture built the
same way.
Every layer is mapped or reported, every shape checked.  Host side (torch, safetensors).
"""

import argparse
import sys
from typing import List, Optional

from ..errors import UserError
from ..fileio import check_outputs
from .common import ArgumentParser, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="dfseg-convert", description="Convert released Caffe weights to dfseg weights.")
    parser.add_argument("model", help="df1, df2, df2a, df1-seg, df2-seg1, df2-seg2, dflite-seg (or an architecture)")
    parser.add_argument("caffemodel", help="the released .caffemodel file")
    parser.add_argument("output", help="weights file to write (.safetensors)")
    parser.add_argument("--list", action="store_true", help="print every Caffe layer -> tensor mapping")
    return parser


def _main(argv: Optional[List[str]]) -> int:
    args = build_parser().parse_args(argv)
    if not args.output.endswith(".safetensors"):
        raise UserError("{}: the output must be a .safetensors file".format(args.output))
    check_outputs([("output", args.output)], inputs=[args.caffemodel])
    from ..arch import Arch
    from ..convert.caffe_to_dfseg import convert_caffemodel

    arch = Arch.parse(args.model)
    model, mapped = convert_caffemodel(args.caffemodel, arch)
    if args.list:
        for entry in mapped:
            print("{:<32} -> {:<40} {}".format(entry.caffe, entry.tensor, list(entry.shape)))
    from ..weights import save_weights

    save_weights(model, args.output, arch)
    layers = len({entry.caffe for entry in mapped})
    print("dfseg-convert: {} layers, {} tensors -> {} ({})".format(
        layers, len(mapped), args.output, arch.short()), file=sys.stderr)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return run_command("dfseg-convert", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
