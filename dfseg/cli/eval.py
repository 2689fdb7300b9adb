"""dfseg-eval: Cityscapes mIoU (19 classes) of a model or of saved predictions.

    dfseg-eval --data cityscapes/ --model df1-seg-1024x512.onnx --json results/df1-seg.json
    dfseg-eval --data cityscapes/ --model df1-seg.engine --backend tensorrt
    dfseg-eval --data cityscapes/ --predictions labels/            (trainId PNGs, e.g. dfseg-run --save-labels)
    dfseg-eval --data cityscapes/ --predictions results/ --prediction-ids labelids   (benchmark-server format)

Each image is fed at the model's input size and its prediction is resized back to the ground
truth's size with nearest neighbour.  Device side: Python 3.6, no torch (``--plot`` needs
matplotlib).
"""

import argparse
import os
import sys
from typing import Iterator, List, Optional

import numpy as np

from .. import eval as evaluation
from ..errors import UserError
from ..fileio import check_outputs
from .common import (
    ArgumentParser,
    add_build_options,
    build_config_from_args,
    check_build_files,
    run_command,
    whole_number,
)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="dfseg-eval", description="Cityscapes mIoU over the 19 training classes.")
    parser.add_argument("--data", required=True, help="Cityscapes root holding leftImg8bit/ and gtFine/")
    parser.add_argument("--split", default="val", help="dataset split (default val)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="ONNX file or TensorRT engine to evaluate")
    what.add_argument("--predictions", metavar="DIR", help="score saved label PNGs named CITY_SEQ_FRAME*.png")
    parser.add_argument("--prediction-ids", default="trainids", choices=evaluation.PREDICTION_ENCODINGS,
                        help="what the saved PNGs hold (default trainids)")
    parser.add_argument("--backend", default="auto", help="auto, onnxruntime or tensorrt (default: auto: tensorrt "
                        "for engines and where its Python module imports, else onnxruntime)")
    parser.add_argument("--providers", help="ONNX Runtime providers, comma separated (cpu, cuda, tensorrt)")
    add_build_options(parser)
    parser.add_argument("--size", help="network input size for a dynamic-shape ONNX model (WIDTHxHEIGHT)")
    parser.add_argument("--limit", type=whole_number(1), help="evaluate only the first N images (sorted)")
    parser.add_argument("--json", metavar="FILE", help="write the result (per-class IoU, confusion matrix) here")
    parser.add_argument("--plot", metavar="PNG", help="write a per-class IoU bar chart here (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _main(argv: Optional[List[str]]) -> int:
    args = build_parser().parse_args(argv)
    from ..backends import refuse_trtexec

    refuse_trtexec(args.backend)
    args.build_config = build_config_from_args(args)
    check_build_files(args.build_config, [args.data, args.model, args.predictions])
    check_outputs([("--json", args.json), ("--plot", args.plot)],
                  inputs=[args.data, args.model, args.predictions, args.build_config.calibration],
                  outside_inputs=True)
    samples = evaluation.find_samples(args.data, args.split, args.limit)
    progress = not args.quiet
    if args.predictions:
        source = {"predictions": os.path.abspath(args.predictions), "encoding": args.prediction_ids}
        predictions = evaluation.iterate_predictions(samples, args.predictions, args.prediction_ids)
        confusion = evaluation.evaluate(samples, predictions, progress=progress)
    else:
        confusion, source = _evaluate_model(args, samples, progress)
    source.update({"data": os.path.abspath(args.data), "split": args.split})
    result = evaluation.report(confusion, len(samples), source)
    print(evaluation.format_table(result))
    if args.json:
        evaluation.write_report(args.json, result)
        print("dfseg-eval: wrote {}".format(args.json), file=sys.stderr)
    if args.plot:
        evaluation.plot_report(args.plot, result)
        print("dfseg-eval: wrote {}".format(args.plot), file=sys.stderr)
    return 0


def _evaluate_model(args: argparse.Namespace, samples: List[evaluation.Sample], progress: bool):
    from ..api import load

    if not os.path.isfile(args.model):
        raise UserError("--model {}: file not found; export one with dfseg-export".format(args.model))
    providers = args.providers.split(",") if args.providers else None
    with load(args.model, backend=args.backend, size=args.size, providers=providers,
              config=args.build_config) as model:
        if model.note:
            print("dfseg-eval: {}".format(model.note), file=sys.stderr)

        def predictions() -> Iterator[np.ndarray]:
            import cv2

            for sample in samples:
                image = cv2.imread(sample.image_path, cv2.IMREAD_COLOR)
                if image is None:
                    raise UserError("{}: cannot read this image".format(sample.image_path))
                yield model(image)

        confusion = evaluation.evaluate(samples, predictions(), progress=progress)
        runner = model.runner
        source = {
            "model": os.path.abspath(args.model),
            "backend": runner.backend,
            "built_model": runner.artefact,
            "build_config": runner.config.to_dict(),
            "input_size": None if model.segmenter.size is None else str(model.segmenter.size),
        }
    return confusion, source


def main(argv: Optional[List[str]] = None) -> int:
    return run_command("dfseg-eval", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
