"""make demo: the whole dfseg loop on this CPU, end to end, with the real commands, in a few minutes.

1. model summary (parameters, MACs, depth of every preset and reference model)
2. end-to-end benchmark of DF1, ResNet-18 and DF1-Seg (ONNX Runtime, rotating rounds)
3. a generated street set in Cityscapes format (sky, buildings, road, sidewalk, cars)
4. a per-part latency table of a DF-Seg decoder space, measured on this CPU
5. Partial Order Pruning over the decoder widths [C3, C4, C5] with the built-in trainer: every
   candidate is trained on the street set and scored (mIoU), so the front means something
6. the most accurate front member trained longer, exported to ONNX, run by dfseg-run over a clip
   that no training image came from, and scored by dfseg-eval against the clip's labels
7. one PNG with the pieces side by side: a clip frame, its prediction, the front with the chosen model

Everything lands in demo-out/.  Each step is a real subprocess of a dfseg console script, as a user
would type it; the commands are printed before they run.
"""

import csv
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

OUT = "demo-out"
TRAIN_SIZE = (128, 64)  # the network's input while searching and training
CLIP_SIZE = (256, 128)  # the clip's frames (dfseg-run resizes them to the network's input)
BACKBONE = "64x1_64x1_64x1"
SEARCH_EPOCHS, FINAL_EPOCHS = 8, 60
STARTED = time.time()


def run(*args: str) -> None:
    argv = [sys.executable, "-m"] + list(args)
    print("\n$ dfseg-{} {}".format(args[0].rsplit(".", 1)[-1], " ".join(args[1:])), flush=True)
    started = time.time()
    subprocess.run(argv, check=True)
    print("  ({:.0f} s)".format(time.time() - started), flush=True)


def step(text: str) -> None:
    print("\n== {} ({:.0f} s in)".format(text, time.time() - STARTED), flush=True)


def write_clip(root: str, video: str, frames: int = 48) -> None:
    """A clip of street scenes from a seed no training image used, as a video and as a Cityscapes
    ``val`` split with its labels (for dfseg-eval)."""
    import cv2

    from dfseg.synthetic import LABEL_IDS, street_frames

    images = os.path.join(root, "leftImg8bit", "val", "clip")
    labels = os.path.join(root, "gtFine", "val", "clip")
    os.makedirs(images)
    os.makedirs(labels)
    to_label_id = np.zeros(256, np.uint8)
    for train_id, label_id in LABEL_IDS.items():
        to_label_id[train_id] = label_id
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 8.0, CLIP_SIZE)
    for index, (image, label) in enumerate(street_frames(frames, CLIP_SIZE, seed=2026)):
        writer.write(image)
        stem = "clip_000000_{:06d}".format(index)
        cv2.imwrite(os.path.join(images, stem + "_leftImg8bit.png"), image)
        cv2.imwrite(os.path.join(labels, stem + "_gtFine_labelIds.png"), to_label_id[label])
    writer.release()


def chosen_from_front(search_dir: str):
    """The most accurate member of the searched front: (short arch, latency ms, mIoU)."""
    from dfseg.arch import Arch

    with open(os.path.join(search_dir, "front.json")) as handle:
        front = json.load(handle)
    best = max(front, key=lambda member: member["accuracy"])
    return Arch.from_json(best["arch"]).short(), best["latency_ms"], best["accuracy"]


def overview_png(path: str, clip_root: str, model: str, search_dir: str, chosen: str, miou: float) -> None:
    """A clip frame, the model's prediction over it, and the front with the chosen model marked."""
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dfseg.backends import get_runner
    from dfseg.live.render import Renderer
    from dfseg.live.segmenter import Segmenter

    frame_path = sorted(os.listdir(os.path.join(clip_root, "leftImg8bit", "val", "clip")))[len(os.listdir(
        os.path.join(clip_root, "leftImg8bit", "val", "clip"))) // 2]
    frame = cv2.imread(os.path.join(clip_root, "leftImg8bit", "val", "clip", frame_path), cv2.IMREAD_COLOR)
    with get_runner("onnxruntime", model) as runner:
        classes = Segmenter(runner).segment(frame)
    overlay = Renderer("blend", alpha=0.6).render(frame.copy(), classes)
    with open(os.path.join(search_dir, "trials.csv")) as handle:
        trials = [row for row in csv.DictReader(handle) if row["status"] == "ok"]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.4), gridspec_kw={"width_ratios": [1, 1, 1.1]})
    axes[0].imshow(frame[:, :, ::-1])
    axes[0].set_title("clip frame (not in the training set)")
    axes[1].imshow(overlay[:, :, ::-1])
    axes[1].set_title("dfseg-run: {} (clip mIoU {:.1f})".format(chosen, miou), fontsize=9)
    for axis in axes[:2]:
        axis.axis("off")
    latency = [float(t["latency_ms"]) for t in trials]
    accuracy = [float(t["accuracy"]) for t in trials]
    front = sorted((float(t["latency_ms"]), float(t["accuracy"])) for t in trials if t["in_front"] == "1")
    axes[2].scatter(latency, accuracy, color="0.6", label="trained candidates")
    axes[2].plot([f[0] for f in front], [f[1] for f in front], "o-", color="tab:blue", label="front")
    pick = [(float(t["latency_ms"]), float(t["accuracy"])) for t in trials if t["arch"] == chosen]
    if pick:
        axes[2].scatter([pick[0][0]], [pick[0][1]], s=180, facecolors="none", edgecolors="tab:red", linewidths=2,
                        label="chosen")
    axes[2].set_xlabel("table latency on this CPU (ms)")
    axes[2].set_ylabel("val mIoU after {} epochs (%)".format(SEARCH_EPOCHS))
    axes[2].set_title("POP decoder search, {} trainings".format(len(trials)))
    axes[2].legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    step("1. the models")
    run("dfseg.cli.export", "--summary")
    step("2. end-to-end latency on this CPU")
    run("dfseg.cli.bench", "--models", "df1,resnet18,df1-seg", "--sizes", "320x192", "--rounds", "3",
        "--json", os.path.join(OUT, "bench.json"), "--csv", os.path.join(OUT, "bench.csv"))
    step("3. a generated street set (Cityscapes format)")
    from dfseg.search.trainer import TrainerConfig, fit
    from dfseg.sizes import Size
    from dfseg.synthetic import write_street_dataset

    data = os.path.join(OUT, "street")
    print(write_street_dataset(data, (("train", 128), ("val", 24)), size=TRAIN_SIZE, seed=0), "images in", data)
    step("4. the latency table of a DF-Seg decoder space")
    table = os.path.join(OUT, "table.json")
    size = "{}x{}".format(*TRAIN_SIZE)
    run("dfseg.cli.bench", "--table", table, "--models", BACKBONE + "-wc19.32.32", "--sizes", size,
        "--decoder-space", "--no-space", "--rounds", "2", "--work-dir", os.path.join(OUT, "work"))
    step("5. Partial Order Pruning over the decoder widths, trained on the street set")
    search = os.path.join(OUT, "search")
    run("dfseg.cli.search", "--table", table, "--decoder-search", "--backbone", BACKBONE, "--size", size,
        "--choices", "K,32,64", "--trainer", data, "--epochs", str(SEARCH_EPOCHS), "--lr", "0.05", "--batch-size",
        "8", "--max-trials", "6", "--out", search, "--quiet")
    chosen, latency, score = chosen_from_front(search)
    print("chosen: {} (table {:.2f} ms, search mIoU {:.1f})".format(chosen, latency, score))
    step("6. train {} for {} epochs, export, run and score it".format(chosen, FINAL_EPOCHS))
    from dfseg.arch import Arch

    weights = os.path.join(OUT, "chosen.safetensors")
    started = time.time()
    trained = fit(Arch.from_short(chosen), TrainerConfig(data, epochs=FINAL_EPOCHS, batch_size=8, lr=0.05,
                                                          input_size=Size(*TRAIN_SIZE), seed=0), weights_out=weights)
    print("trained in {:.0f} s: val mIoU {:.1f}".format(time.time() - started, trained.score))
    model = os.path.join(OUT, "chosen-{}.onnx".format(size))
    run("dfseg.cli.export", chosen, "--size", size, "--weights", weights, "--output", "classmap", "-o", model)
    clip_root, video = os.path.join(OUT, "clip"), os.path.join(OUT, "clip.mp4")
    write_clip(clip_root, video)
    segmented = os.path.join(OUT, "segmented.mp4")
    run("dfseg.cli.run", "--model", model, video, segmented, "--threads", "2")
    scores = os.path.join(OUT, "clip-eval.json")
    run("dfseg.cli.eval", "--data", clip_root, "--model", model, "--json", scores, "--quiet")
    with open(scores) as handle:
        clip_miou = 100.0 * json.load(handle)["miou"]
    step("7. the overview picture")
    overview = os.path.join(OUT, "overview.png")
    overview_png(overview, clip_root, model, search, chosen, clip_miou)
    print("\nDemo done in {:.0f} s.  What is where:".format(time.time() - STARTED))
    for path, what in (
        (os.path.join(OUT, "bench.json"), "end-to-end latency of DF1, ResNet-18, DF1-Seg (also bench.csv)"),
        (table, "per-part latency table of the decoder space"),
        (os.path.join(search, "tradeoff.png"), "the searched front (trials.csv, front.json beside it)"),
        (model, "the chosen model, trained, as ONNX"),
        (segmented, "the clip segmented by dfseg-run (blend of class colours and legend)"),
        (scores, "dfseg-eval on the clip: clip mIoU {:.1f} over {} frames".format(clip_miou, 48)),
        (overview, "clip frame, prediction and front side by side"),
    ):
        print("  {:<32} {}".format(path, what))
    return 0


if __name__ == "__main__":
    sys.exit(main())
