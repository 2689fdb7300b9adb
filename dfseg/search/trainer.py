"""Built-in trainer (``--trainer DATA_DIR``): trains a candidate with the paper's recipe on a
scaled-down schedule and returns top-1 accuracy (classification) or mIoU (segmentation), in %.

Recipe (section 4.2): SGD, momentum 0.9, weight decay 1e-4, linear warm-up, then poly learning
rate with power 2.  Epochs, batch size and peak learning rate are configurable.

Datasets (detected from the directory layout):
- image folders: ``DATA/train/<class>/*`` and ``DATA/val/<class>/*``
- Cityscapes format: ``DATA/leftImg8bit/{train,val}/<city>/*_leftImg8bit.*`` with labels
  ``DATA/gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.*`` (255 = ignore)
Images are ``.npy`` (HxWx3 uint8, BGR) or anything OpenCV reads; inputs are prepared with
``dfseg.preprocess`` (BGR, mean subtracted, x0.008) at the space's input size.
"""

import glob
import math
import os
from typing import Any, List, NamedTuple, Optional, Tuple

import numpy as np

from ..cityscapes import IGNORE_LABEL
from ..errors import UserError
from ..eval import ConfusionMatrix
from ..preprocess import CITYSCAPES_MEAN_BGR, IMAGENET_MEAN_BGR, INPUT_SCALE, resize_bilinear
from ..sizes import Size

IMAGE_EXTENSIONS = (".npy", ".png", ".jpg", ".jpeg", ".bmp")


class TrainerConfig(NamedTuple):
    data: str
    epochs: int = 2
    batch_size: int = 32
    lr: float = 0.1
    device: str = "cpu"
    input_size: Size = Size(224, 224)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 2.0
    warmup_fraction: float = 0.1
    seed: int = 0
    threads: Optional[int] = None


def read_image(path: str, labels: bool = False) -> np.ndarray:
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    try:
        import cv2
    except ImportError:
        raise UserError("{}: reading images needs opencv-python-headless<5 (or store them as .npy)".format(path)) from None
    image = cv2.imread(path, cv2.IMREAD_GRAYSCALE if labels else cv2.IMREAD_COLOR)
    if image is None:
        raise UserError("{}: unreadable image".format(path))
    return image


def _files(pattern: str) -> List[str]:
    return sorted(p for p in glob.glob(pattern) if p.lower().endswith(IMAGE_EXTENSIONS))


def is_segmentation_dataset(root: str) -> bool:
    return os.path.isdir(os.path.join(root, "leftImg8bit"))


def _class_folders(root: str, split: str) -> List[str]:
    folder = os.path.join(root, split)
    if not os.path.isdir(folder):
        return []
    return sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))


def load_classification(root: str, split: str, size: Size) -> Tuple[np.ndarray, np.ndarray, int]:
    """Images and labels of ``split``; the classes (and so the model's class count) are the folders
    of ``train``, and every class folder of ``split`` must be one of them."""
    train_classes = _class_folders(root, "train")
    if not train_classes:
        raise UserError("{}: expected DATA/train/<class>/<images> (or a Cityscapes-format leftImg8bit/)".format(root))
    unknown = sorted(set(_class_folders(root, split)) - set(train_classes))
    if unknown:
        raise UserError("{}: class folder {!r} has no counterpart in {}; add it to train/ or remove it".format(
            os.path.join(root, split), unknown[0], os.path.join(root, "train")))
    samples = _classification_samples(root, split, train_classes)
    images = [_prepare(read_image(path), size, IMAGENET_MEAN_BGR, path) for path, _ in samples]
    labels = [label for _, label in samples]
    return np.stack(images), np.asarray(labels, dtype=np.int64), len(train_classes)


def _classification_samples(root: str, split: str, classes: List[str]) -> List[Tuple[str, int]]:
    samples = [(path, label) for label, name in enumerate(classes)
               for path in _files(os.path.join(root, split, name, "*"))]
    if not samples:
        raise UserError("{}: no images in {}/<class>/ ({})".format(root, split, " ".join(IMAGE_EXTENSIONS)))
    return samples


def _segmentation_samples(root: str, split: str) -> List[Tuple[str, str]]:
    """(image, trainIds label) paths of ``split``; every image must have its label."""
    samples = []
    for path in _files(os.path.join(root, "leftImg8bit", split, "*", "*_leftImg8bit.*")):
        city = os.path.basename(os.path.dirname(path))
        stem = os.path.basename(path).split("_leftImg8bit")[0]
        matches = _files(os.path.join(root, "gtFine", split, city, stem + "_gtFine_labelTrainIds.*"))
        if not matches:
            raise UserError("{}: no label {}/gtFine/{}/{}/{}_gtFine_labelTrainIds.*".format(path, root, split, city,
                                                                                            stem))
        samples.append((path, matches[0]))
    if not samples:
        raise UserError("{}: no images in leftImg8bit/{}/<city>/*_leftImg8bit.*".format(root, split))
    return samples


def check_dataset(root: str) -> None:
    """Raise UserError unless ``root`` is a trainable dataset (both splits, every label present),
    without reading a pixel: run before a search spends its first trial on it."""
    if not os.path.isdir(root):
        raise UserError("--trainer: dataset directory {} does not exist".format(root))
    for split in ("train", "val"):
        if is_segmentation_dataset(root):
            _segmentation_samples(root, split)
        else:
            classes = _class_folders(root, "train")
            if not classes:
                raise UserError("{}: expected DATA/train/<class>/<images> (or a Cityscapes-format "
                                "leftImg8bit/)".format(root))
            _classification_samples(root, split, classes)


def load_segmentation(root: str, split: str, size: Size, classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """Images and trainId labels of ``split``; every label must be below ``classes`` or 255 (ignore)."""
    images, labels = [], []
    for path, label_path in _segmentation_samples(root, split):
        image = read_image(path)
        label = _check_labels(read_image(label_path, labels=True), label_path, image.shape[:2], classes)
        images.append(_prepare(image, size, CITYSCAPES_MEAN_BGR, path))
        labels.append(_resize_labels(label, size))
    return np.stack(images), np.stack(labels).astype(np.int64)


def _check_labels(label: np.ndarray, path: str, image_shape: Tuple[int, ...], classes: int) -> np.ndarray:
    if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
        raise UserError("{}: a trainIds label must be an HxW integer image, got {} {}".format(
            path, label.dtype, "x".join(map(str, label.shape))))
    if label.shape != tuple(image_shape):
        raise UserError("{}: label is {}x{} but its image is {}x{}; labels must match their images' size".format(
            path, label.shape[1], label.shape[0], image_shape[1], image_shape[0]))
    outside = label[((label < 0) | (label >= classes)) & (label != IGNORE_LABEL)]
    if outside.size:
        value = int(outside.max()) if outside.max() >= classes else int(outside.min())
        fix = ("give the architecture at least {0} classes (-k{0}) or fix the label".format(value + 1)
               if value >= classes else "fix the label")
        raise UserError("{}: label {} does not fit the model's {} classes (trainIds 0..{}, {} = ignore); {}".format(
            path, value, classes, classes - 1, IGNORE_LABEL, fix))
    return label


def _prepare(image: np.ndarray, size: Size, mean: Any, path: str) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3:
        raise UserError("{}: expected an HxWx3 BGR image, got shape {}".format(path, image.shape))
    pixels = resize_bilinear(image, size)
    return ((pixels - np.asarray(mean, dtype=np.float32)) * np.float32(INPUT_SCALE)).transpose(2, 0, 1)


def _resize_labels(label: np.ndarray, size: Size) -> np.ndarray:
    rows = (np.arange(size.height) * label.shape[0] // size.height)
    cols = (np.arange(size.width) * label.shape[1] // size.width)
    return label[rows][:, cols]


def learning_rate(config: TrainerConfig, step: int, total: int) -> float:
    """Linear warm-up to ``lr`` over the first ``warmup_fraction`` of steps, then poly (power 2)."""
    warmup = max(1, int(round(config.warmup_fraction * total)))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return config.lr * (1.0 - progress) ** config.poly_power


class TrainingResult(NamedTuple):
    score: float  # top-1 accuracy (classification) or mIoU (segmentation) on the val split, in %
    losses: List[float]  # training loss of every optimiser step, in order


def train_and_evaluate(arch: Any, config: TrainerConfig) -> float:
    """Train ``arch`` on ``config.data`` and return its validation score in %."""
    return fit(arch, config).score


def fit(arch: Any, config: TrainerConfig, weights_out: Optional[str] = None) -> TrainingResult:
    """Train ``arch`` with the paper's recipe for ``config.epochs`` (0: the initialised model) and
    score it on the val split; ``weights_out`` (optional) receives the trained weights (safetensors)."""
    import torch
    import torch.nn.functional as F

    from ..models import create_model

    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    size = config.input_size
    segmentation = is_segmentation_dataset(config.data)
    if segmentation != arch.is_segmentation:
        raise UserError("{}: a {} dataset cannot train {} architecture {}".format(
            config.data, "segmentation" if segmentation else "classification",
            "a segmentation" if arch.is_segmentation else "a backbone", arch.short()))
    # The class count has one source per task: the architecture for segmentation (its decoder's
    # last width), the train/ class folders for classification.  The model and the scoring use it.
    if segmentation:
        classes = arch.classes
        x_train, y_train = load_segmentation(config.data, "train", size, classes)
        x_val, y_val = load_segmentation(config.data, "val", size, classes)
    else:
        x_train, y_train, classes = load_classification(config.data, "train", size)
        x_val, y_val, _ = load_classification(config.data, "val", size)
    model = create_model(arch, num_classes=classes)
    device = torch.device(config.device)
    model = model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    batches = max(1, math.ceil(len(x_train) / config.batch_size))
    total = batches * config.epochs
    step = 0
    losses = []  # type: List[float]
    for _ in range(config.epochs):
        order = rng.permutation(len(x_train))
        for b in range(batches):
            rows = order[b * config.batch_size:(b + 1) * config.batch_size]
            if rows.size < 2 and len(x_train) >= 2:
                continue  # BatchNorm needs more than one sample
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step, total)
            inputs = torch.from_numpy(x_train[rows]).to(device)
            targets = torch.from_numpy(y_train[rows]).to(device)
            logits = _logits(model(inputs), targets)
            loss = F.cross_entropy(logits, targets, ignore_index=IGNORE_LABEL)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.item()))
            step += 1
    model.eval()
    if weights_out is not None:
        from ..weights import save_weights

        save_weights(model, weights_out)
    confusion = ConfusionMatrix(classes)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x_val), config.batch_size):
            inputs = torch.from_numpy(x_val[start:start + config.batch_size]).to(device)
            targets = torch.from_numpy(y_val[start:start + config.batch_size]).to(device)
            predicted = _logits(model(inputs), targets).argmax(1).cpu().numpy()
            truth = targets.cpu().numpy()
            if segmentation:
                confusion.update(predicted, truth)
            else:
                correct += int((predicted == truth).sum())
    if not segmentation:
        return TrainingResult(100.0 * correct / len(x_val), losses)
    miou = confusion.mean_iou()
    return TrainingResult(100.0 * miou if math.isfinite(miou) else 0.0, losses)


def _logits(output: Any, targets: Any) -> Any:
    import torch.nn.functional as F

    if isinstance(output, (tuple, list)):
        output = output[0]
    if output.dim() == 4 and output.shape[-2:] != targets.shape[-2:]:
        output = F.interpolate(output, size=targets.shape[-2:], mode="bilinear", align_corners=False)
    return output


class TrainerEvaluator:
    """Evaluator wrapper around ``train_and_evaluate`` (picklable for process pools and Ray)."""

    def __init__(self, config: TrainerConfig) -> None:
        check_dataset(config.data)
        self.config = config

    def __call__(self, trial: Any, trial_dir: str) -> float:
        return train_and_evaluate(trial.arch, self.config)
