"""The built-in trainer at dataset scale (issue 25), on a Cityscapes-format set generated on disk at
2048x1024 by ``dfseg.synthetic`` (labelIds PNGs only, as a stock download has them).

Measures (one run; JSON in benchmarks/results/trainer.json, a short table on stdout):
- memory: peak memory of the trial's whole process tree (trainer and loader workers, sampled every
  50 ms from /proc: the sum of RSS, which counts pages the forked workers share with the trainer once
  per process, and the sum of PSS, which shares them out) training on a 100-image and on a 1,000-image
  train split: 1024x512 crops of the 2048x1024 input, batch 4, ``--steps`` steps, then validation of
  8 images at 2048x1024.  Goal: they differ by < 10 %, both < 3 GB.
- throughput: training images/s of ``fit`` (its first epoch's own timing: loader start and steps)
  against a minimal plain-PyTorch loop written here (a Dataset that reads, maps labelIds and crops;
  DataLoader with the same 2 workers; SGD; nothing else) on the same data and model, in alternating
  runs (``--rounds`` each).  Goal: ratio of medians >= 0.9.
- data-parallel equivalence: 2 Gloo processes against 1 process, same global batch (4) and seed: the
  first 20 losses (256x128 crops of 512x256, to keep the run short) in float32, with the relative
  difference of every step.  Goal: within 1e-3 relative.  Also float64 (the same computation without
  float32 rounding) and two float32 controls: one process with 1 against 2 threads (rounding noise
  alone), and 2 processes against 1 with the model's ReLUs made SiLU (the ReLU kink is what amplifies
  the noise).
- resume: a trial of 3 epochs killed with SIGKILL at a random moment of epoch 2 and run again from its
  checkpoint, against the uninterrupted trial: final mIoU.  Goal: equal within 0.1.

    flock /tmp/bench.lock python benchmarks/bench_trainer.py --data /tmp/city2048 --generate
    flock /tmp/bench.lock python benchmarks/bench_trainer.py --data /tmp/city2048 --measures data_parallel
"""

import argparse
import atexit
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List

import numpy as np

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCH = "64x1_64x1_64x1-wc19.32.32-k19"
MEASURES = ("memory", "throughput", "data_parallel", "resume")

FIT = r"""
import json, os, sys
if os.environ.get("BENCH_SMOOTH_RELU"):
    # The control of the equivalence measure: every ReLU of the model (its only non-smooth operation)
    # as SiLU.  At top level, so that the spawned ranks, which run this file as __mp_main__, get it too.
    import torch
    torch.nn.ReLU.forward = lambda self, x: torch.nn.functional.silu(x)
if __name__ == "__main__":
    from dfseg.arch import Arch
    from dfseg.search.trainer import TrainerConfig, fit
    from dfseg.search.training.recipe import Recipe
    from dfseg.sizes import parse_size
    options, trial_dir = json.loads(sys.argv[1]), sys.argv[2]
    arch, size, crop = options.pop("arch"), parse_size(options.pop("size")), parse_size(options.pop("crop"))
    config = TrainerConfig(options.pop("data"), batch_size=4, lr=0.01, input_size=size, recipe=Recipe(crop=crop),
                           loader_workers=2, **options)
    result = fit(Arch.parse(arch), config, trial_dir=None if trial_dir == "-" else trial_dir)
    print(json.dumps(result._asdict()))
"""


def fit_args(data: str, size: str, crop: str, steps: int, epochs: int = 1, trial_dir: str = "-", **more: Any) -> List[str]:
    options = dict(data=data, arch=ARCH, size=size, crop=crop, steps_per_epoch=steps, epochs=epochs, **more)
    return [json.dumps(options), trial_dir]


# The plain loop the trainer is held against: read, map labelIds, crop, normalise; DataLoader; SGD.
PLAIN = r"""
import glob, json, os, sys, time
import cv2, numpy as np, torch
import torch.nn.functional as F
from dfseg.arch import Arch
from dfseg.cityscapes import label_to_train_lut
from dfseg.models import create_model
data, arch, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
LUT, MEAN = label_to_train_lut(), np.asarray((72.0, 83.0, 73.0), np.float32)
images = sorted(glob.glob(os.path.join(data, "leftImg8bit", "train", "*", "*.png")))

class Crops(torch.utils.data.Dataset):
    def __len__(self):
        return len(images)
    def __getitem__(self, i):
        path = images[i]
        label_path = path.replace("leftImg8bit", "gtFine", 1).replace("_leftImg8bit.png", "_gtFine_labelIds.png")
        image, label = cv2.imread(path, cv2.IMREAD_COLOR), LUT[cv2.imread(label_path, cv2.IMREAD_GRAYSCALE)]
        rng = np.random.default_rng(i)
        top, left = int(rng.integers(0, image.shape[0] - 512 + 1)), int(rng.integers(0, image.shape[1] - 1024 + 1))
        image, label = image[top:top + 512, left:left + 1024], label[top:top + 512, left:left + 1024]
        x = ((image.astype(np.float32) - MEAN) * 0.008).transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(label.astype(np.int64))

torch.manual_seed(0)
model = create_model(Arch.parse(arch), num_classes=19).train()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
start = time.time()
loader = torch.utils.data.DataLoader(Crops(), batch_size=4, shuffle=True, drop_last=True, num_workers=2)
for step, (x, y) in enumerate(loader):
    if step >= steps:
        break
    out = model(x)
    out = F.interpolate(out[0] if isinstance(out, (tuple, list)) else out, size=y.shape[-2:], mode="bilinear")
    loss = F.cross_entropy(out, y, ignore_index=255)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    float(loss)
print(json.dumps({"images": steps * 4, "seconds": time.time() - start}))
"""


def tree_memory_mb(pid: int) -> Dict[str, float]:
    """RSS and PSS summed over ``pid`` and all its descendants, in MB (/proc).  The RSS sum counts the
    pages that forked loader workers share with the trainer once per process; PSS shares them out."""
    children: Dict[int, List[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/{}/stat".format(name)) as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(name))
    totals = {"rss": 0, "pss": 0}
    todo = [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            with open("/proc/{}/smaps_rollup".format(current)) as handle:
                for line in handle:
                    if line.startswith(("Rss:", "Pss:")):
                        totals[line.split(":")[0].lower()] += int(line.split()[1])
        except OSError:
            pass
    return {key: value / 1024.0 for key, value in totals.items()}


def script(code: str) -> str:
    """``code`` as a file (spawned ranks run their parent's main file, not a ``-c`` string, as __mp_main__)."""
    path = os.path.join(tempfile.gettempdir(), "bench-trainer-{}-{}.py".format(os.getpid(), abs(hash(code))))
    if not os.path.exists(path):
        with open(path, "w") as handle:
            handle.write(code)
        atexit.register(os.unlink, path)
    return path


def run_child(code: str, args: List[str], watch_memory: bool = False, **env_more: str) -> Dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=REPO, **env_more)
    process = subprocess.Popen([sys.executable, script(code), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    peak = {"rss": 0.0, "pss": 0.0}

    def sample() -> None:
        while process.poll() is None:
            for key, value in tree_memory_mb(process.pid).items():
                peak[key] = max(peak[key], value)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    if watch_memory:
        sampler.start()
    out, err = process.communicate()
    if watch_memory:
        sampler.join()
    if process.returncode != 0:
        raise SystemExit("child failed ({}): {}".format(process.returncode, err[-2000:]))
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"], result["peak_pss_mb"] = peak["rss"], peak["pss"]
    return result


def subset(data: str, count: int, where: str) -> str:
    """A Cityscapes-format folder whose train split is the first ``count`` images of ``data``'s (links)."""
    root = os.path.join(where, "subset{}".format(count))
    for kind, suffix in (("leftImg8bit", "_leftImg8bit.png"), ("gtFine", "_gtFine_labelIds.png")):
        for split in ("train", "val"):
            source_city = os.path.join(data, kind, split)
            for city in sorted(os.listdir(source_city)):
                os.makedirs(os.path.join(root, kind, split, city), exist_ok=True)
                names = sorted(n for n in os.listdir(os.path.join(source_city, city)) if n.endswith(suffix))
                for name in names[:count] if split == "train" else names:
                    os.symlink(os.path.join(source_city, city, name), os.path.join(root, kind, split, city, name))
    return root


def generate(data: str, count: int) -> None:
    from dfseg.synthetic import write_street_dataset

    write_street_dataset(data, counts=(("train", count), ("val", 8)), size=(2048, 1024), seed=0)
    for folder, _, names in os.walk(os.path.join(data, "gtFine")):
        for name in names:
            if name.endswith("_labelTrainIds.png"):
                os.unlink(os.path.join(folder, name))  # a stock download has labelIds only


def resume_measure(data: str, work: str, seed: int) -> Dict[str, Any]:
    straight = run_child(FIT, fit_args(data, "512x256", "256x128", 5, 3, os.path.join(work, "straight")))
    trial = os.path.join(work, "killed")
    env = dict(os.environ, PYTHONPATH=REPO)
    process = subprocess.Popen([sys.executable, "-c", FIT, *fit_args(data, "512x256", "256x128", 5, 3, trial)],
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    progress = os.path.join(trial, "progress.jsonl")
    while not (os.path.exists(progress) and open(progress).read().count("\n") >= 1):
        if process.poll() is not None:
            raise SystemExit("the trial ended before its first epoch")
        time.sleep(0.01)
    epoch_s = json.loads(open(progress).readline())["seconds"]
    delay = float(np.random.default_rng(seed).uniform(0, 0.9 * epoch_s))
    time.sleep(delay)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = open(progress).read().count("\n")
    resumed = run_child(FIT, fit_args(data, "512x256", "256x128", 5, 3, trial))
    return {"epochs": 3, "killed_after_s_into_epoch_2": round(delay, 2), "epochs_checkpointed_at_kill": done,
            "straight_miou": straight["score"], "resumed_miou": resumed["score"],
            "difference": abs(straight["score"] - resumed["score"]), "goal": 0.1,
            "met": abs(straight["score"] - resumed["score"]) <= 0.1 and done == 1}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="Cityscapes-format set at 2048x1024 with >= 1000 train images")
    parser.add_argument("--generate", action="store_true", help="generate --data first if it is missing")
    parser.add_argument("--steps", type=int, default=6, help="training steps per memory / throughput run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating throughput runs per subject")
    parser.add_argument("--measures", default=",".join(MEASURES),
                        help="comma-separated subset of {}; a subset updates only its entries of --out".format(
                            ", ".join(MEASURES)))
    parser.add_argument("--out", default=os.path.join(RESULTS, "trainer.json"))
    args = parser.parse_args()
    args.measures = args.measures.split(",")
    unknown = sorted(set(args.measures) - set(MEASURES))
    if unknown:
        raise SystemExit("--measures {}: choose from {}".format(unknown[0], ",".join(MEASURES)))
    if not os.path.isdir(args.data):
        if not args.generate:
            raise SystemExit("{} does not exist; pass --generate".format(args.data))
        generate(args.data, 1000)
    run = {"command": " ".join(["python"] + sys.argv), "date": time.strftime("%Y-%m-%d"), "machine": _cpu_model(),
           "cores": os.cpu_count(), "python": platform.python_version()}
    result: Dict[str, Any] = dict(run, arch=ARCH)
    partial = set(args.measures) != set(MEASURES)
    if partial and os.path.exists(args.out):  # a rerun of some measures keeps the others' figures
        with open(args.out) as handle:
            result = json.load(handle)
    measured: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as work:
        if "memory" in args.measures:
            measured["memory"] = memory_measure(args.data, work, args.steps)
        if "throughput" in args.measures:
            measured["throughput"] = throughput_measure(args.data, args.steps, args.rounds)
        if "data_parallel" in args.measures:
            measured["data_parallel"] = data_parallel_measure(args.data)
        if "resume" in args.measures:
            measured["resume"] = resume_measure(args.data, work, seed=int(time.time()))
    for name, value in measured.items():
        result[name] = dict(value, run=run)  # each measure says which command, day and machine gave it
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    print("measure        result                                                  goal           met")
    if "memory" in measured:
        m = result["memory"]
        for key in ("pss", "rss"):
            print("memory ({})   {:.0f} MB (100 images) / {:.0f} MB (1,000), x{:.3f}            <10%, <3 GB   {}".format(
                key.upper(), m[key]["100"], m[key]["1000"], m[key]["ratio"], m[key]["met"]))
    if "throughput" in measured:
        t = result["throughput"]
        print("throughput     {:.3f} of the plain loop (median {:.2f} vs {:.2f} images/s)        >= 0.9         {}".format(
            t["ratio_of_medians"], np.median(t["trainer_images_per_s"]), np.median(t["plain_images_per_s"]), t["met"]))
    if "data_parallel" in measured:
        d = result["data_parallel"]
        print("2 Gloo vs 1    float32: {:.1e} (1 vs 2 threads alone: {:.1e}; ReLU as SiLU: {:.1e}); "
              "float64: {:.1e}   <= 1e-3   {}".format(d["float32"], d["float32_threads_control"],
                                                     d["float32_silu_control"], d["float64"], d["met"]))
    if "resume" in measured:
        r = result["resume"]
        print("resume         mIoU {:.3f} uninterrupted, {:.3f} killed in epoch 2 and resumed       <= 0.1         {}".format(
            r["straight_miou"], r["resumed_miou"], r["met"]))
    print("wrote", args.out)
    return 0


def memory_measure(data: str, work: str, steps: int) -> Dict[str, Any]:
    peaks: Dict[str, Dict[str, float]] = {"rss": {}, "pss": {}}
    for count in (100, 1000):
        run = run_child(FIT, fit_args(subset(data, count, work), "2048x1024", "1024x512", steps), watch_memory=True)
        peaks["rss"][str(count)] = round(run["peak_rss_mb"], 1)
        peaks["pss"][str(count)] = round(run["peak_pss_mb"], 1)
    out: Dict[str, Any] = {"steps": steps, "goal": "1000 vs 100 images within 10%, both < 3000 MB"}
    for key, values in peaks.items():
        ratio = values["1000"] / values["100"]
        out[key] = dict(values, ratio=round(ratio, 3), met=abs(ratio - 1) < 0.1 and max(values.values()) < 3000)
    return out


def throughput_measure(data: str, steps: int, rounds: int) -> Dict[str, Any]:
    ours, plain = [], []
    for _ in range(rounds):  # alternating, so drift of the machine falls on both
        epoch = run_child(FIT, fit_args(data, "2048x1024", "1024x512", steps))["progress"][0]
        ours.append(epoch["images"] / epoch["seconds"])
        run = run_child(PLAIN, [data, ARCH, str(steps)])
        plain.append(run["images"] / run["seconds"])
    ratio = float(np.median(ours) / np.median(plain))
    return {"steps": steps, "trainer_images_per_s": [round(v, 3) for v in ours],
            "plain_images_per_s": [round(v, 3) for v in plain], "ratio_of_medians": round(ratio, 3), "goal": 0.9,
            "met": ratio >= 0.9}


def data_parallel_measure(data: str) -> Dict[str, Any]:
    """First 20 losses, 2 Gloo processes against 1, in float32 (the goal) and float64 (the same
    computation, without float32's rounding), with two float32 controls: one process with 1 against 2
    threads (how far rounding noise alone carries 20 steps) and 2 processes against 1 with the model's
    ReLUs as SiLU (the ReLU kink is what amplifies that noise: an input within rounding distance of 0
    lands on the other side in the other run and changes the gradient by a whole element's share)."""
    def losses(env: Dict[str, str] = {}, **options: Any) -> List[float]:  # noqa: B006 (read only)
        return run_child(FIT, fit_args(data, "512x256", "256x128", 20, **dict(dict(threads=1), **options)),
                         **env)["losses"][:20]

    def relative(a: List[float], b: List[float]) -> List[float]:
        return [abs(x - y) / abs(x) for x, y in zip(a, b)]

    def first_above(values: List[float], level: float = 1e-6) -> Any:
        return next((step for step, value in enumerate(values, 1) if value > level), None)

    one64, two64 = losses(dtype="float64"), losses(dtype="float64", devices=2)
    one32, two32 = losses(), losses(devices=2)
    threads32 = losses(threads=2)
    smooth = {"BENCH_SMOOTH_RELU": "1"}
    one_silu, two_silu = losses(smooth), losses(smooth, devices=2)
    per_step = relative(one32, two32)
    return {"steps": len(one64), "float32": max(per_step), "float64": max(relative(one64, two64)),
            "float32_threads_control": max(relative(one32, threads32)),
            "float32_silu_control": max(relative(one_silu, two_silu)),
            "float32_first_step_above_1e-6": first_above(per_step),
            "float32_threads_first_step_above_1e-6": first_above(relative(one32, threads32)),
            "float32_relative_per_step": per_step,
            "float32_threads_relative_per_step": relative(one32, threads32),
            "float32_silu_relative_per_step": relative(one_silu, two_silu),
            "losses_float64_1": one64, "losses_float64_2_gloo": two64, "losses_float32_1": one32,
            "losses_float32_2_gloo": two32, "losses_float32_1_2_threads": threads32,
            "losses_float32_silu_1": one_silu, "losses_float32_silu_2_gloo": two_silu,
            "goal": 1e-3, "met": max(per_step) <= 1e-3 and len(one32) == 20,
            "float64_met": max(relative(one64, two64)) <= 1e-3 and len(one64) == 20}


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
