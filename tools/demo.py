"""make demo: the whole dfseg loop on this CPU, end to end, with the real commands.

1. model summary (parameters, MACs, depth of every preset and reference model)
2. end-to-end benchmark of DF1, ResNet-18 and DF1-Seg (ONNX Runtime, robust rotation protocol)
3. a per-part latency table for a small search space, then its validation against whole networks
4. a short Partial Order Pruning search on that table, training candidates on a generated dataset
5. DF1-Seg exported to ONNX and run over a generated video into an annotated output video

Everything lands in demo-out/ (JSON, CSV, PNG plots, videos).  Each step is a real subprocess of a
dfseg console script, as a user would type it; the commands are printed before they run.
"""

import os
import shutil
import subprocess
import sys
import time

import numpy as np

OUT = "demo-out"
# A search space small enough to measure and search in a few minutes on two cores.
WIDTHS = "64,128,256"
BLOCKS = "1-2,1-3,1-2"


def run(*args: str) -> None:
    argv = [sys.executable, "-m"] + list(args)
    print("\n$ dfseg-{} {}".format(args[0].rsplit(".", 1)[-1], " ".join(args[1:])), flush=True)
    started = time.time()
    subprocess.run(argv, check=True)
    print("  ({:.0f} s)".format(time.time() - started), flush=True)


def make_dataset(root: str, per_class: int = 32, size: int = 64) -> None:
    """A tiny two-class image-folder set (dark vs bright noise) that the built-in trainer can learn
    in a couple of epochs on a CPU, so the search has real accuracies to work with."""
    import cv2

    rng = np.random.RandomState(0)
    for split, count in (("train", per_class), ("val", per_class // 2)):
        for name, level in (("dark", 60), ("bright", 190)):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                image = np.clip(level + rng.randint(-50, 50, (size, size, 3)), 0, 255).astype(np.uint8)
                cv2.imwrite(os.path.join(folder, "{:03d}.png".format(i)), image)


def make_video(path: str, frames: int = 24, width: int = 320, height: int = 192) -> None:
    """A short synthetic street-like clip: sky, road and a moving box."""
    import cv2

    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (width, height))
    for t in range(frames):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[: height // 2] = (200, 150, 90)
        frame[height // 2:] = (90, 90, 90)
        x = 10 + t * 8
        cv2.rectangle(frame, (x, height // 2 - 30), (x + 60, height // 2 + 20), (40, 40, 180), -1)
        writer.write(frame)
    writer.release()


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    run("dfseg.cli.export", "--summary")
    run("dfseg.cli.bench", "--models", "df1,resnet18,df1-seg", "--sizes", "320x192", "--rounds", "3",
        "--json", os.path.join(OUT, "bench.json"), "--csv", os.path.join(OUT, "bench.csv"))
    table = os.path.join(OUT, "table.json")
    run("dfseg.cli.bench", "--table", table, "--models", "df1", "--space-widths", WIDTHS,
        "--space-blocks", BLOCKS, "--work-dir", os.path.join(OUT, "work"))
    run("dfseg.cli.bench", "--validate-table", table, "--models", "df1", "--space-widths", WIDTHS,
        "--space-blocks", BLOCKS, "--random", "6", "--work-dir", os.path.join(OUT, "work"),
        "--json", os.path.join(OUT, "validate.json"), "--png", os.path.join(OUT, "validate.png"))
    data = os.path.join(OUT, "data")
    make_dataset(data)
    run("dfseg.cli.search", "--table", table, "--widths", WIDTHS, "--blocks", BLOCKS, "--trainer", data,
        "--epochs", "2", "--lr", "0.05", "--batch-size", "16", "--max-trials", "5", "--out",
        os.path.join(OUT, "search"))
    model = os.path.join(OUT, "df1-seg-320x192.onnx")
    run("dfseg.cli.export", "df1-seg", "--size", "320x192", "--output", "classmap", "-o", model)
    video = os.path.join(OUT, "drive.mp4")
    make_video(video)
    run("dfseg.cli.run", "--model", model, video, os.path.join(OUT, "segmented.mp4"), "--threads", "2")
    print("\nDemo outputs in {}/:".format(OUT))
    for name in sorted(os.listdir(OUT)):
        print("  " + name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
