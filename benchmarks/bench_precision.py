"""FP32, FP16 and INT8 on this CPU, in one run: latency of DF1-Seg at 640x360 and the accuracy drift of
a DF-Seg model that the built-in trainer trained on a generated street set.

1. Latency: DF1-Seg at 640x360 (random weights, BatchNorm folded) exported once; the FP16 graph
   (onnxconverter-common) and the Q/DQ INT8 graph (ONNX Runtime's static quantizer, per-channel
   weights, calibrated on the street images) are derived from that one file, the three sessions are
   timed side by side in rotating rounds (``dfseg.bench.protocol``), and the speedups are ratios of
   round medians taken in the same rounds, so slow drift of the machine cancels.
2. Accuracy: a small DF-Seg (``--arch``) is trained with ``dfseg.search.trainer.fit`` on a generated
   Cityscapes-format street set (sky, buildings, road, sidewalk, cars), exported, converted the same
   way, and every graph is scored on the held-out val images: mIoU, and the share of pixels whose
   class agrees with FP32.  Goal: INT8 within 1 mIoU point of FP32.
3. Every derived graph passes ``onnx.checker`` (full check).

    python benchmarks/bench_precision.py [--threads 2] [--epochs 40] [--out benchmarks/results/precision.json]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from dfseg.bench.machine import describe_machine
from dfseg.bench.protocol import COMPUTE, E2E, Protocol, measure
from dfseg.bench.subjects import onnx_subject
from dfseg.build_config import BuildConfig
from dfseg.eval import ConfusionMatrix
from dfseg.fileio import write_json_atomic
from dfseg.precision import class_map_agreement, derive_graph
from dfseg.preprocess import preprocess
from dfseg.sizes import Size

HERE = os.path.dirname(os.path.abspath(__file__))
PRECISIONS = ("fp32", "fp16", "int8")
CLASS_COUNT = 19


def _graphs(fp32: str, work: str, calibration: str, images: int, tag: str):
    """{precision: path} for one FP32 export, plus the onnx.checker verdict of each derived graph."""
    import onnx

    paths, checks = {"fp32": fp32}, {}
    for precision in ("fp16", "int8"):
        config = BuildConfig(precision=precision, calibration=calibration if precision == "int8" else None,
                             calibration_images=images)
        start = time.perf_counter()
        paths[precision] = derive_graph(fp32, os.path.join(work, "{}-{}.onnx".format(tag, precision)), config,
                                        "onnxruntime")
        onnx.checker.check_model(onnx.load(paths[precision]), full_check=True)
        checks[precision] = {"onnx_checker": "passed", "derive_s": round(time.perf_counter() - start, 2)}
    return paths, checks


def latency(work: str, calibration: str, threads: int, protocol: Protocol):
    import torch

    from dfseg.export import export_onnx
    from dfseg.models import create_model
    from dfseg.models.layers import randomize_batchnorm

    torch.manual_seed(0)
    fp32 = export_onnx(randomize_batchnorm(create_model("df1-seg"), seed=0), "640x360",
                       os.path.join(work, "df1-seg-640x360.onnx"))
    paths, checks = _graphs(fp32, work, calibration, 32, "df1-seg")
    subjects = [onnx_subject(p, paths[p], "onnxruntime", threads, config=BuildConfig(precision=p))
                for p in PRECISIONS]
    try:
        results = measure(subjects, protocol)
    finally:
        for subject in subjects:
            subject.close()
    stats = {p: results[p].modes.get(COMPUTE) or results[p].modes[E2E] for p in PRECISIONS}
    rows = {}
    for p in PRECISIONS:
        paired = [a / b for a, b in zip(stats["fp32"].round_medians_ms, stats[p].round_medians_ms)]
        rows[p] = {"median_ms": round(stats[p].median_ms, 3), "round_spread": round(stats[p].round_spread, 4),
                   "speedup_vs_fp32": round(statistics.median(paired), 3),
                   "speedup_range": [round(min(paired), 3), round(max(paired), 3)],
                   "rounds": stats[p].rounds, **checks.get(p, {})}
    return rows


def accuracy(work: str, data: str, arch: str, epochs: int, train_size: Size, threads: int):
    import cv2

    from dfseg.arch import Arch
    from dfseg.export import export_onnx
    from dfseg.search.trainer import TrainerConfig, fit

    start = time.perf_counter()
    weights = os.path.join(work, "trained.safetensors")
    trained = fit(Arch.from_short(arch), TrainerConfig(data, epochs=epochs, batch_size=8, lr=0.05,
                                                        input_size=train_size, threads=threads, seed=0),
                  weights_out=weights)
    train_s = time.perf_counter() - start
    fp32 = export_onnx(arch, str(train_size), os.path.join(work, "trained-fp32.onnx"), weights=weights)
    paths, checks = _graphs(fp32, work, data, 64, "trained")
    import onnxruntime as ort

    sessions = {p: ort.InferenceSession(paths[p], providers=["CPUExecutionProvider"]) for p in PRECISIONS}
    confusion = {p: ConfusionMatrix(CLASS_COUNT) for p in PRECISIONS}
    agree = {p: [] for p in PRECISIONS}
    val = os.path.join(data, "leftImg8bit", "val")
    for city in sorted(os.listdir(val)):
        for name in sorted(os.listdir(os.path.join(val, city))):
            image = cv2.imread(os.path.join(val, city, name), cv2.IMREAD_COLOR)
            label_path = os.path.join(data, "gtFine", "val", city,
                                      name.replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png"))
            truth = cv2.resize(cv2.imread(label_path, cv2.IMREAD_GRAYSCALE), tuple(train_size),
                               interpolation=cv2.INTER_NEAREST)
            x = preprocess(image, train_size)
            logits = {p: sessions[p].run(None, {"input": x})[0] for p in PRECISIONS}
            for p in PRECISIONS:
                confusion[p].update(logits[p].argmax(1)[0], truth)
                agree[p].append(class_map_agreement(logits["fp32"], logits[p]))
    rows = {}
    for p in PRECISIONS:
        rows[p] = {"miou": round(100.0 * confusion[p].mean_iou(), 2),
                   "class_map_agreement": round(float(np.mean(agree[p])), 5), **checks.get(p, {})}
    for p in ("fp16", "int8"):
        rows[p]["miou_drop"] = round(rows["fp32"]["miou"] - rows[p]["miou"], 2)
    return {"arch": arch, "train_size": str(train_size), "epochs": epochs, "train_s": round(train_s, 1),
            "trainer_val_miou": round(trained.score, 2), "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    parser.add_argument("--arch", default="64x1_64x1_64x1-wc19.32.32", help="DF-Seg-style model trained for accuracy")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--train-size", default="128x64")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs-per-round", type=int, default=6)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "precision.json"))
    args = parser.parse_args()
    from dfseg.sizes import parse_size
    from dfseg.synthetic import write_street_dataset

    train_size = parse_size(args.train_size)
    protocol = Protocol(warmup_s=1.0, rounds=args.rounds, runs_per_round=args.runs_per_round)
    before = describe_machine()
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as work:
        data = os.path.join(work, "street")
        write_street_dataset(data, (("train", 96), ("val", 24)), size=(256, 128), seed=0)
        timing = latency(work, data, args.threads, protocol)
        quality = accuracy(work, data, args.arch, args.epochs, train_size, args.threads)
    int8_drop = quality["rows"]["int8"]["miou_drop"]
    result = {"benchmark": "bench_precision", "backend": "onnxruntime (CPU)", "threads": args.threads,
              "latency_model": "df1-seg", "latency_size": "640x360", "protocol": protocol.to_json(),
              "latency": timing, "accuracy": quality,
              "goal": {"int8_miou_within_points": 1.0, "met": abs(int8_drop) <= 1.0},
              "machine_before": before, "machine_after": describe_machine()}
    print("DF1-Seg 640x360, ONNX Runtime CPU, {} threads, {} interleaved rounds".format(args.threads, args.rounds))
    print("{:<6} {:>10} {:>9} {:>15} {:>8}".format("", "median ms", "speedup", "range", "spread"))
    for p in PRECISIONS:
        row = timing[p]
        print("{:<6} {:>10.2f} {:>9.2f} {:>15} {:>8.1%}".format(p, row["median_ms"], row["speedup_vs_fp32"],
                                                            "{:.2f}-{:.2f}".format(*row["speedup_range"]),
                                                            row["round_spread"]))
    print("\n{} trained {} epochs at {} ({:.0f} s); val set of 24 generated street scenes".format(
        quality["arch"], quality["epochs"], quality["train_size"], quality["train_s"]))
    print("{:<6} {:>7} {:>10} {:>10}".format("", "mIoU", "drop", "agreement"))
    for p in PRECISIONS:
        row = quality["rows"][p]
        print("{:<6} {:>7.2f} {:>10} {:>10.4f}".format(p, row["miou"], row.get("miou_drop", "-"),
                                                      row["class_map_agreement"]))
    print("INT8 within 1 mIoU point of FP32: {}".format("yes" if result["goal"]["met"] else "NO"))
    write_json_atomic(args.out, result)
    print("wrote {}".format(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
