"""Built-in trainer (``--trainer DATA_DIR``): trains a candidate with the paper's recipe on a
scaled-down schedule and returns top-1 accuracy (classification) or mIoU (segmentation), in %.

Recipe (section 4.2): SGD, momentum 0.9, weight decay 1e-4, linear warm-up, then poly learning rate
with power 2 (``training.recipe``), with the paper's augmentation.  Data is streamed from disk by a
``DataLoader`` with worker processes (``training.data``; pinned memory on CUDA).  Options: mixed
precision (``amp``: bf16 autocast on CPU, fp16 with a gradient scaler on CUDA), channels-last memory
format, and N data-parallel processes per trial (``devices``, ``training.distributed``).

With a trial directory, every epoch ends with a checkpoint (``training.checkpoint``) that a later
attempt of the same trial continues from, a line in ``train.log`` and a progress record
``{"epoch", "epochs", "loss", "accuracy"}`` appended to ``progress.jsonl`` (accuracy only on epochs
that were validated: every ``val_every``-th and the last).  A stop request from the search
(``progress.STOP_NAME``, curve early stopping) ends the trial at the next step (one process) or
epoch end (data parallel) with ``TrialStopped``.
"""

import json
import math
import os
import time
from typing import Any, Dict, List, NamedTuple, Optional

from ..cityscapes import IGNORE_LABEL
from ..errors import UserError
from ..eval import ConfusionMatrix
from ..fileio import DiskFullError, no_space_as_error, write_atomic, write_json_atomic
from ..sizes import MAX_SIDE, Size
from .evaluators import TrialStopped
from .progress import PROGRESS_NAME, stop_requested
from .training import checkpoint as ckpt
from .training import distributed
from .training.data import ImageFolderDataset, SegmentationDataset, check_dataset, is_segmentation_dataset
from .training.recipe import PolySchedule, Recipe, check_recipe
from .training.recipe import learning_rate as _schedule

__all__ = ["TrainerConfig", "TrainingResult", "fit", "train_and_evaluate", "TrainerEvaluator", "check_dataset",
           "learning_rate"]


class TrainerConfig(NamedTuple):
    data: str
    epochs: int = 2
    batch_size: int = 32  # the global batch, split evenly over ``devices`` processes
    lr: float = 0.1
    device: str = "cpu"
    input_size: Size = Size(224, 224)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 2.0
    warmup_fraction: float = 0.1
    seed: int = 0
    threads: Optional[int] = None
    recipe: Recipe = Recipe()
    labels: str = "auto"  # Cityscapes labels: auto, trainIds or labelIds
    loader_workers: int = 2  # DataLoader worker processes per training process
    amp: bool = False
    channels_last: bool = False
    devices: int = 1  # data-parallel processes per trial (GPUs with a cuda device)
    val_every: int = 0  # validate every this many epochs as well as after the last (0: only the last)
    steps_per_epoch: Optional[int] = None  # cap on optimiser steps per epoch (quick trials, benchmarks)
    dtype: str = "float32"  # "float64" for numerical comparisons (benchmarks), where float32's rounding
    # noise, amplified by a few training steps, would hide what is compared


def learning_rate(config: TrainerConfig, step: int, total: int) -> float:
    """The learning rate of optimiser step ``step`` of ``total`` (warm-up, then poly)."""
    return _schedule(config.lr, config.warmup_fraction, config.poly_power, step, total)


class TrainingResult(NamedTuple):
    score: float  # top-1 accuracy (classification) or mIoU (segmentation) on the val split, in %
    losses: List[float]  # training loss of every optimiser step, in order
    progress: List[Dict[str, Any]] = []  # one record per epoch


def train_and_evaluate(arch: Any, config: TrainerConfig, trial_dir: Optional[str] = None) -> float:
    """Train ``arch`` on ``config.data`` and return its validation score in %."""
    return fit(arch, config, trial_dir=trial_dir).score


def fit(arch: Any, config: TrainerConfig, weights_out: Optional[str] = None,
        trial_dir: Optional[str] = None) -> TrainingResult:
    """Train ``arch`` with the paper's recipe for ``config.epochs`` (0: the initialised model) and score
    it on the val split; ``weights_out`` (optional) receives the trained weights (safetensors);
    ``trial_dir`` (optional) keeps checkpoints, the log and progress records, and a later call with the
    same directory continues from the last checkpoint."""
    check_config(config)
    segmentation = is_segmentation_dataset(config.data)
    if segmentation != arch.is_segmentation:
        raise UserError("{}: a {} dataset cannot train {} architecture {}".format(
            config.data, "segmentation" if segmentation else "classification",
            "a segmentation" if arch.is_segmentation else "a backbone", arch.short()))
    if config.devices == 1:
        try:
            return _train(distributed.Group(0, 1, config.device), config, arch, weights_out, trial_dir, None)
        except UserError as exc:
            raise (_one_line(exc) if "\n" in str(exc) else exc) from None
    import tempfile

    with tempfile.TemporaryDirectory(prefix="dfseg-ddp-") as scratch:
        result_path = os.path.join(scratch, "result.json")
        try:
            distributed.launch(_rank_entry, (config, arch, weights_out, trial_dir, result_path), config.devices)
        except Exception as exc:
            raise _one_line(exc) from None
        with open(result_path) as handle:
            data = json.load(handle)
    return TrainingResult(data["score"], data["losses"], data["progress"])


def check_config(config: TrainerConfig) -> None:
    check_recipe(config.recipe)
    distributed.check_device(config.device, config.devices)  # the machine's GPUs: check_devices, where it trains
    if config.batch_size % config.devices:
        raise UserError("--batch-size {}: the global batch must split evenly over {} processes per trial".format(
            config.batch_size, config.devices))
    if config.batch_size // config.devices < 1:
        raise UserError("--batch-size {}: below one image per process".format(config.batch_size))
    if config.dtype not in ("float32", "float64"):
        raise UserError("dtype {!r}: float32 or float64".format(config.dtype))
    high = config.recipe.scale[1]
    if max(config.input_size.width, config.input_size.height) * high > MAX_SIDE:
        # cv2 cannot resize to it (or, short of that, one sample takes gigabytes): every trial would fail
        raise UserError("--scale {}-{}: scales the input size {} beyond {} pixels a side; give MAX at most {:g}".format(
            config.recipe.scale[0], high, config.input_size, MAX_SIDE,
            MAX_SIDE // max(config.input_size.width, config.input_size.height)))
    crop = config.recipe.crop
    if crop is not None and (crop.width > config.input_size.width * 4 or crop.height > config.input_size.height * 4):
        raise UserError("--crop {}: far beyond the input size {}".format(crop, config.input_size))


def _rank_entry(group: distributed.Group, config: TrainerConfig, arch: Any, weights_out: Optional[str],
                trial_dir: Optional[str], result_path: str) -> None:
    result = _train(group, config, arch, weights_out, trial_dir, None)
    if group.rank == 0:
        write_json_atomic(result_path, result._asdict())  # a full scratch disk: DiskFullError, not a torn file


def _one_line(exc: BaseException) -> UserError:
    """A UserError raised in a loader worker or a rank arrives wrapped in a traceback: its last line (a
    full disk stays a DiskFullError, which stops the search rather than failing the trial)."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    for line in reversed(lines):
        for kind in (DiskFullError, UserError):
            marker = kind.__name__ + ": "
            if marker in line:
                return kind(line.split(marker, 1)[1])
    return UserError("training failed: {}".format(lines[-1] if lines else type(exc).__name__))


def _settings(arch: Any, config: TrainerConfig, classes: int) -> Dict[str, Any]:
    """What a checkpoint must have been trained with to be continued."""
    skip = ("threads", "loader_workers", "val_every")
    return {"arch": arch.dumps(), "classes": classes,
            **{k: v for k, v in config._asdict().items() if k not in skip}}


class _Loop:
    """The parts of one training run that every step and epoch uses."""

    def __init__(self, group: distributed.Group, config: TrainerConfig, arch: Any) -> None:
        import torch

        from ..models import create_model

        self.group, self.config = group, config
        torch.set_num_threads(distributed.local_threads(config.threads or 0, group.world))
        torch.manual_seed(config.seed)
        self.device = torch.device(group.device)
        self.segmentation = arch.is_segmentation
        if self.segmentation:
            self.classes = arch.classes
            self.train_set = SegmentationDataset(config.data, "train", config.input_size, self.classes, config.labels,
                                                 config.recipe, train=True, seed=config.seed)
            self.val_set = SegmentationDataset(config.data, "val", config.input_size, self.classes, config.labels,
                                               config.recipe, train=False, seed=config.seed)
        else:
            self.train_set = ImageFolderDataset(config.data, "train", config.input_size, config.recipe, train=True,
                                                seed=config.seed)
            self.val_set = ImageFolderDataset(config.data, "val", config.input_size, config.recipe, train=False,
                                              seed=config.seed)
            self.classes = self.train_set.classes
        per_rank = config.batch_size // group.world
        self.steps = len(self.train_set) // config.batch_size
        if self.steps < 1 and config.epochs:
            raise UserError("{}: the train split has {} images, fewer than --batch-size {}; lower the batch".format(
                config.data, len(self.train_set), config.batch_size))
        if config.steps_per_epoch:
            self.steps = min(self.steps, config.steps_per_epoch)
        self.total = self.steps * config.epochs
        from torch.utils.data import DistributedSampler

        # One sampler for one process and for N: rank r of N takes every N-th sample of the same
        # permutation, so each global batch holds the same images as a single process's.
        self.sampler = DistributedSampler(self.train_set, num_replicas=group.world, rank=group.rank, shuffle=True,
                                          seed=config.seed, drop_last=True)
        self.per_rank = per_rank
        self.dtype = getattr(torch, config.dtype)
        model = create_model(arch, num_classes=self.classes).to(self.device, self.dtype)
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        model = model.to(memory_format=self.memory_format)
        self.model = model
        self.ddp = distributed.prepare_model(model, group)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, PolySchedule(config.warmup_fraction, config.poly_power, max(1, self.total)))
        cuda = self.device.type == "cuda"
        self.amp_dtype = (torch.float16 if cuda else torch.bfloat16) if config.amp else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=bool(config.amp and cuda))

    def loader(self, dataset: Any, sampler: Any, batch: int, drop_last: bool) -> Any:
        from torch.utils.data import DataLoader

        return DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=drop_last,
                          num_workers=self.config.loader_workers, pin_memory=self.device.type == "cuda",
                          collate_fn=None if drop_last else _val_collate)

    def state(self, epoch: int, losses: List[float], progress: List[Dict[str, Any]], fingerprint: str) -> Dict[str, Any]:
        import torch

        return {"fingerprint": fingerprint, "epoch": epoch, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "losses": list(losses), "progress": list(progress),
                "torch_rng": torch.get_rng_state()}

    def restore(self, state: Dict[str, Any]) -> None:
        import torch

        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])

    def train_epoch(self, epoch: int, trial_dir: Optional[str] = None) -> List[float]:
        import torch
        import torch.nn.functional as F

        self.train_set.epoch = epoch
        self.sampler.set_epoch(epoch)
        self.ddp.train()
        losses = []
        loader = self.loader(self.train_set, self.sampler, self.per_rank, drop_last=True)
        for step, (inputs, targets) in enumerate(loader):
            if step >= self.steps:
                break
            if self.group.world == 1 and stop_requested(trial_dir):
                raise TrialStopped("stopped by the search in epoch {}".format(epoch + 1))
            inputs = inputs.to(self.device, self.dtype, non_blocking=True).contiguous(memory_format=self.memory_format)
            targets = targets.to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16,
                                enabled=self.amp_dtype is not None):
                logits = _logits(self.ddp(inputs), targets)
            summed = F.cross_entropy(logits.to(self.dtype), targets, ignore_index=IGNORE_LABEL, reduction="sum")
            # The global batch's mean: every rank divides by the global count of labelled pixels, and
            # DDP's average of N ranks' gradients is undone by the factor N.
            totals = torch.stack([summed.detach(), (targets != IGNORE_LABEL).sum().to(summed.dtype)])
            totals = distributed.all_reduce_sum(totals, self.group)
            count = torch.clamp(totals[1], min=1.0)
            loss = summed * self.group.world / count
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            losses.append(float(totals[0] / count))
        return losses

    def validate(self) -> float:
        import torch
        import torch.nn.functional as F

        model = self.model.eval()
        confusion = ConfusionMatrix(self.classes)
        correct = 0
        # Segmentation: one image at a time, scored at its label's full resolution (a batch of
        # 2048x1024 class-score maps would be the trial's largest allocation).
        loader = self.loader(self.val_set, None, 1 if self.segmentation else self.per_rank, drop_last=False)
        with torch.no_grad():
            for inputs, targets in loader:
                inputs = inputs.to(self.device, self.dtype).contiguous(memory_format=self.memory_format)
                with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16,
                                    enabled=self.amp_dtype is not None):
                    output = model(inputs)
                output = (output[0] if isinstance(output, (tuple, list)) else output).float()
                if not self.segmentation:
                    correct += int((output.argmax(1).cpu() == torch.as_tensor(targets)).sum())
                    continue
                for logits, truth in zip(output, targets):
                    # Scored at the label's own resolution, as dfseg-eval scores.
                    logits = F.interpolate(logits[None], size=truth.shape[-2:], mode="bilinear", align_corners=False)
                    confusion.update(logits.argmax(1)[0].cpu().numpy(), truth.numpy())
        if not self.segmentation:
            return 100.0 * correct / len(self.val_set)
        miou = confusion.mean_iou()
        return 100.0 * miou if math.isfinite(miou) else 0.0


def _val_collate(batch: List[Any]) -> Any:
    import torch

    inputs = torch.stack([item[0] for item in batch])
    targets = [item[1] for item in batch]  # segmentation labels keep their own sizes
    if not isinstance(targets[0], int):
        return inputs, targets
    return inputs, torch.as_tensor(targets)


def _train(group: distributed.Group, config: TrainerConfig, arch: Any, weights_out: Optional[str],
           trial_dir: Optional[str], _unused: Any) -> TrainingResult:
    loop = _Loop(group, config, arch)
    fingerprint = ckpt.fingerprint(_settings(arch, config, loop.classes))
    losses = []  # type: List[float]
    progress = []  # type: List[Dict[str, Any]]
    first = 0
    lead = group.rank == 0
    if trial_dir is not None:
        state = ckpt.load_checkpoint(ckpt.checkpoint_path(trial_dir), fingerprint)
        if state is not None:
            loop.restore(state)
            first, losses, progress = int(state["epoch"]), list(state["losses"]), list(state["progress"])
        if lead:
            os.makedirs(trial_dir, exist_ok=True)
            # The progress file holds what the checkpoint holds: epochs after it are trained again.
            _write_progress(trial_dir, progress)
            _log(trial_dir, "resumed after epoch {} of {}".format(first, config.epochs) if first else
                 "training {} for {} epochs ({} steps of {} images each)".format(
                     arch.short(), config.epochs, loop.steps, config.batch_size))
    score = None  # type: Optional[float]
    for epoch in range(first, config.epochs):
        start = time.time()
        epoch_losses = loop.train_epoch(epoch, trial_dir)
        train_s = time.time() - start
        losses.extend(epoch_losses)
        last = epoch + 1 == config.epochs
        score = None
        if last or (config.val_every and (epoch + 1) % config.val_every == 0):
            score = loop.validate() if lead else None
        record = {"epoch": epoch + 1, "epochs": config.epochs,
                  "loss": float(sum(epoch_losses) / len(epoch_losses)) if epoch_losses else None,
                  "accuracy": score, "images": len(epoch_losses) * config.batch_size, "seconds": round(train_s, 3)}
        progress.append(record)
        if lead and trial_dir is not None:
            ckpt.save_checkpoint(ckpt.checkpoint_path(trial_dir),
                                 loop.state(epoch + 1, losses, progress, fingerprint))
            _write_progress(trial_dir, progress)
            _log(trial_dir, "epoch {}/{}: loss {} {}({:.1f} s)".format(
                epoch + 1, config.epochs, record["loss"], "" if score is None else "val {:.2f} ".format(score),
                time.time() - start))
        distributed.barrier(group)
        if epoch + 1 < config.epochs and _stop_agreed(group, trial_dir):
            raise TrialStopped("stopped by the search after epoch {}".format(epoch + 1))
    if not lead:
        return TrainingResult(0.0, losses, progress)
    if progress and progress[-1]["accuracy"] is not None and first < config.epochs:
        score = progress[-1]["accuracy"]
    else:
        score = loop.validate()
    if weights_out is not None:
        from ..weights import save_weights

        save_weights(loop.model.eval(), weights_out)
    return TrainingResult(float(score), losses, progress)


def _stop_agreed(group: distributed.Group, trial_dir: Optional[str]) -> bool:
    """Rank 0 reads the stop request and every rank follows it, so no rank waits for another."""
    if group.world == 1:
        return stop_requested(trial_dir)
    import torch

    wanted = group.rank == 0 and stop_requested(trial_dir)
    flag = torch.tensor([1.0 if wanted else 0.0], device=torch.device(group.device))
    return bool(distributed.all_reduce_sum(flag, group)[0] > 0)


def _write_progress(trial_dir: str, progress: List[Dict[str, Any]]) -> None:
    write_atomic(os.path.join(trial_dir, PROGRESS_NAME),
                 "".join(json.dumps(record, sort_keys=True) + "\n" for record in progress).encode("utf-8"))


def _log(trial_dir: str, line: str) -> None:
    path = os.path.join(trial_dir, "train.log")
    with no_space_as_error(path), open(path, "a") as log:
        log.write("{} {}\n".format(time.strftime("%Y-%m-%dT%H:%M:%S"), line))


def _logits(output: Any, targets: Any) -> Any:
    import torch.nn.functional as F

    if isinstance(output, (tuple, list)):
        output = output[0]
    if output.dim() == 4 and output.shape[-2:] != targets.shape[-2:]:
        output = F.interpolate(output, size=targets.shape[-2:], mode="bilinear", align_corners=False)
    return output


class TrainerEvaluator:
    """Evaluator wrapper around ``fit`` (picklable for process pools and Ray): each trial trains in its
    directory, so a trial run again (``--resume``, a retry) continues from its last checkpoint."""

    def __init__(self, config: TrainerConfig, classes: Optional[int] = None, progress: bool = False,
                 check_devices: bool = True) -> None:
        check_config(config)
        if check_devices:
            distributed.check_devices(config.devices, config.device)
        self.info = check_dataset(config.data, classes, config.labels, config.loader_workers,
                                  progress=progress)  # type: DatasetInfo
        if self.info.train < config.batch_size and config.epochs:
            raise UserError("{}: the train split has {} images, fewer than --batch-size {}; lower the batch".format(
                config.data, self.info.train, config.batch_size))
        self.config = config

    def __call__(self, trial: Any, trial_dir: str) -> float:
        try:
            return fit(trial.arch, self.config, trial_dir=trial_dir).score
        except UserError:
            raise
        except Exception as exc:
            if "UserError" in str(exc):  # raised in a loader worker: its one line
                raise _one_line(exc) from None
            raise
