"""dfseg-export: export a DF (or reference) model to ONNX, or print a summary of all models.

    dfseg-export df1-seg --size 720p -o df1-seg-720p.onnx
    dfseg-export df1-seg --size 1280x720 -o out.onnx --output classmap --weights df1-seg.safetensors
    dfseg-export --summary [--size 720p]
    dfseg-export --bundle DIR [MODEL] [--size 720p]    # ONNX files for dfseg-bench on a device

Host side (needs torch and onnx).
"""

import argparse
import os
import sys
from typing import List, Optional

from ..build_config import BuildConfig
from ..errors import UserError
from ..fileio import check_outputs
from ..precision import TARGETS
from ..sizes import Size, parse_size
from .common import ArgumentParser, add_build_options, build_config_from_args, run_command

PROG = "dfseg-export"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Export a model to ONNX (static shapes, batch 1, BatchNorm folded) or print a model summary.",
        epilog="Sizes are WIDTHxHEIGHT in video order (640x360, 2048x1024); the paper writes height x width "
        "(1024x2048).  The input named 'input' is NCHW float32, already preprocessed (BGR, mean subtracted, "
        "x0.008; see dfseg.preprocess).",
    )
    parser.add_argument(
        "model", nargs="?",
        help="preset (df1, df2, df2a, df1-seg, df2-seg1, df2-seg2, dflite-seg, df1-seg-d8), reference model, "
        "short architecture string, JSON or .json file",
    )
    parser.add_argument(
        "--size",
        help="input size: 360p, 720p, 1080p or WIDTHxHEIGHT in video order, e.g. 640x360 (the paper's "
        "1024x2048 is height x width, i.e. 2048x1024 here).  Required for export; with --summary it "
        "replaces the default 224x224 (backbones) / 2048x1024 (segmentation)",
    )
    parser.add_argument("-o", "--output-file", dest="output_file", help="ONNX file to write (atomically)")
    parser.add_argument("--opset", type=int, default=13, help="ONNX opset (default 13, the highest TensorRT 8.2 reads)")
    parser.add_argument(
        "--output", choices=("logits", "classmap"), default="logits",
        help="graph output: 'logits' (float32) or 'classmap' (argmax over classes inside the graph, int32)",
    )
    parser.add_argument("--weights", help="weights to load (.safetensors, or .pt/.pth state dict)")
    add_build_options(parser, tensorrt=False, cache=False)
    parser.add_argument("--target", choices=TARGETS, default="tensorrt",
                        help="who runs an int8 graph: tensorrt (symmetric INT8 activations, default) or onnxruntime "
                             "(UINT8 activations, fastest on x86 CPUs)")
    parser.add_argument("--summary", action="store_true", help="print parameters, MACs and depth of every model")
    parser.add_argument(
        "--bundle", metavar="DIR",
        help="write a device bundle for 'dfseg-bench --bundle DIR' on a device without torch: the benchmark "
        "models (only MODEL if given) at the default sizes (or --size), the latency-table block suite and "
        "validation networks, plus a manifest with checksums",
    )
    return parser


def _main(argv: Optional[List[str]]) -> int:
    args = build_parser().parse_args(argv)
    config = build_config_from_args(args)
    if (args.summary or args.bundle) and config != BuildConfig():
        raise UserError("--precision and the other build options apply to one exported model, not to {}: leave them "
                        "out (dfseg-bench builds the bundle's fp16/int8 graphs on the device)".format(
                            "--summary" if args.summary else "--bundle"))
    if args.summary:
        if args.model:
            raise UserError("--summary lists every model; leave out MODEL {!r}".format(args.model))
        size = parse_size(args.size) if args.size else None
        print(summary_table(size))
        return 0
    if args.bundle:
        from ..bench.bundle import build_bundle

        check_outputs([("--bundle", args.bundle)], folders=("--bundle",))

        sizes = [str(parse_size(args.size))] if args.size else None
        manifest = build_bundle(args.bundle, models=[args.model] if args.model else None, sizes=sizes)
        print("wrote bundle {}".format(manifest))
        return 0
    if not args.model:
        raise UserError("MODEL is required (or use --summary); e.g. dfseg-export df1-seg --size 720p -o df1-seg.onnx")
    if not args.size:
        raise UserError("--size is required: 360p, 720p, 1080p or WIDTHxHEIGHT (video order, e.g. 640x360)")
    if not args.output_file:
        raise UserError("-o FILE.onnx is required")
    size = parse_size(args.size)
    check_outputs([("-o", args.output_file)], inputs=[args.weights, args.model, config.calibration],
                  outside_inputs=True)

    config.needs_images(graph_path=True)
    from ..export import export_onnx

    if config.precision == "fp32":
        path = export_onnx(args.model, size, args.output_file, opset=args.opset, output=args.output,
                           weights=args.weights)
    else:
        import tempfile

        from ..fileio import atomic_output
        from ..precision import derive_graph
        from ..trt_parse_rules import MAX_OPSET, require_parsable

        with tempfile.TemporaryDirectory(prefix="dfseg-export-") as work:
            fp32 = export_onnx(args.model, size, os.path.join(work, "fp32.onnx"), opset=args.opset,
                               output=args.output, weights=args.weights)
            with atomic_output(args.output_file) as derived:
                derive_graph(fp32, derived, config, args.target)
                if args.target == "tensorrt":  # an onnxruntime graph (UINT8, quantized biases) is not for TensorRT
                    require_parsable(derived, args.output_file, check_opset=args.opset <= MAX_OPSET)
            path = args.output_file
    print("wrote {} ({} at {}, opset {}, output {}, {})".format(path, args.model, size, args.opset, args.output,
                                                              config.precision))
    return 0


def summary_table(size: Optional[Size] = None) -> str:
    """A text table of every registered model: parameters, MACs, depth (default sizes: 224x224 for
    classifiers, 2048x1024 for segmentation)."""
    import torch

    from ..models.macs import count_macs, count_params
    from ..models.registry import create_model, list_models, model_arch

    rows = [("model", "kind", "params", "MACs", "at", "depth")]
    for name in list_models():
        arch = model_arch(name)
        if size is not None:
            at = size
        elif arch is not None and arch.is_segmentation:
            at = Size(2048, 1024)
        else:
            at = Size(224, 224)
        with torch.device("meta"):  # no memory, no compute: shapes only
            model = create_model(name)
        kind = "reference" if arch is None else ("segmentation" if arch.is_segmentation else "backbone")
        rows.append((
            name, kind, "{:.2f}M".format(count_params(model) / 1e6), "{:.3f}G".format(count_macs(model, at) / 1e9),
            str(at), "-" if arch is None else str(arch.depth),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines.append("MACs: Conv2d/ConvTranspose2d/Linear multiply-accumulates, fixed bilinear upsampling excluded.")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    return run_command(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
