"""Cityscapes evaluation: mean IoU over the 19 training classes (ignore label 255).

The confusion matrix accumulates one image at a time with ``np.bincount``, so memory stays flat
over the 500 validation images.  Predictions come either from a model (any backend, precision or
engine, through ``dfseg.live.segmenter.Segmenter``) or from saved label images (``--predictions``).

Dataset layout (the official one)::

    ROOT/leftImg8bit/SPLIT/CITY/CITY_SEQ_FRAME_leftImg8bit.png
    ROOT/gtFine/SPLIT/CITY/CITY_SEQ_FRAME_gtFine_labelIds.png

Ground truth is read as labelIds and mapped to trainIds (``dfseg.cityscapes``).

Device side: Python 3.6, no torch (numpy and OpenCV only).
"""

import glob
import os
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional

import numpy as np

from .cityscapes import IGNORE_LABEL, LABEL_IDS, NUM_CLASSES, class_names, label_to_train_lut
from .errors import UserError
from .fileio import write_json_atomic

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
PREDICTION_ENCODINGS = ("trainids", "labelids")
# labelIds -> trainIds, built once (read-only: shared by every read_truth / read_predictions call).
LABEL_TO_TRAIN = label_to_train_lut()
LABEL_TO_TRAIN.setflags(write=False)
KNOWN_LABEL_IDS = np.zeros(256, bool)  # cityscapes.LABEL_IDS as a lookup table over a label image's ids
KNOWN_LABEL_IDS[[i for i in LABEL_IDS if 0 <= i < 256]] = True
KNOWN_LABEL_IDS.setflags(write=False)


class Sample(NamedTuple):
    """One evaluation image: its Cityscapes id (``CITY_SEQ_FRAME``), image and ground-truth paths."""

    key: str
    image_path: str
    label_path: str
    label_is_train_ids: bool


class ConfusionMatrix:
    """Rows: ground truth class; columns: predicted class, plus one last column for predictions
    outside 0..num_classes-1 (they count against recall, never as a class)."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    def update(self, prediction: np.ndarray, truth: np.ndarray) -> None:
        """Add one image: ``truth`` in trainIds (255 ignored), ``prediction`` the same shape."""
        if prediction.shape != truth.shape:
            raise ValueError("prediction shape {} != ground truth shape {}".format(prediction.shape, truth.shape))
        n = self.num_classes
        valid = truth != IGNORE_LABEL
        gt = truth[valid].astype(np.int64)
        if gt.size and gt.max() >= n:
            raise ValueError("ground truth holds class {} but only {} classes are evaluated".format(gt.max(), n))
        pred = prediction[valid].astype(np.int64)
        pred[(pred < 0) | (pred >= n)] = n
        self.matrix += np.bincount(gt * (n + 1) + pred, minlength=n * (n + 1)).reshape(n, n + 1)

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for a class absent from both ground truth and predictions."""
        n = self.num_classes
        true_positive = np.diag(self.matrix[:, :n]).astype(np.float64)
        union = self.matrix.sum(axis=1) + self.matrix[:, :n].sum(axis=0) - true_positive
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union > 0, true_positive / np.maximum(union, 1), np.nan)

    def mean_iou(self) -> float:
        values = self.iou()
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.trace(self.matrix[:, : self.num_classes]) / total) if total else float("nan")


def find_samples(root: str, split: str = "val", limit: Optional[int] = None) -> List[Sample]:
    """Every image of ``split`` under a Cityscapes-format ``root`` with its ground truth, sorted."""
    image_dir = os.path.join(root, "leftImg8bit", split)
    label_dir = os.path.join(root, "gtFine", split)
    for directory in (image_dir, label_dir):
        if not os.path.isdir(directory):
            raise UserError(
                "{}: not found; --data must be a Cityscapes folder holding leftImg8bit/{}/CITY/ and "
                "gtFine/{}/CITY/ (or pass --split)".format(directory, split, split)
            )
    samples = []
    for image_path in sorted(glob.glob(os.path.join(image_dir, "*", "*" + IMAGE_SUFFIX))):
        city = os.path.basename(os.path.dirname(image_path))
        key = os.path.basename(image_path)[: -len(IMAGE_SUFFIX)]
        label_ids = os.path.join(label_dir, city, key + LABEL_IDS_SUFFIX)
        train_ids = os.path.join(label_dir, city, key + TRAIN_IDS_SUFFIX)
        if os.path.isfile(label_ids):
            samples.append(Sample(key, image_path, label_ids, False))
        elif os.path.isfile(train_ids):
            samples.append(Sample(key, image_path, train_ids, True))
        else:
            raise UserError("{}: ground truth missing for {} (expected {})".format(label_dir, image_path, label_ids))
        if limit is not None and len(samples) >= limit:
            break
    if not samples:
        raise UserError("{}: no *{} images found; is --data the Cityscapes root?".format(image_dir, IMAGE_SUFFIX))
    return samples


def read_label(path: str) -> np.ndarray:
    """An 8-bit single-channel label image as a uint8 array."""
    import cv2

    label = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if label is None:
        raise UserError("{}: cannot read this label image (missing or not an image)".format(path))
    if label.ndim != 2:
        raise UserError("{}: a label image must have one channel, this one has shape {}".format(path, label.shape))
    if label.dtype != np.uint8 and label.size and (int(label.max()) > 255 or int(label.min()) < 0):
        # as uint8 the id would wrap (256 -> 0) into another class with no error
        raise UserError("{}: holds id {}, outside the 8-bit ids 0..255 of a label image; fix the label".format(
            path, int(label.max()) if int(label.max()) > 255 else int(label.min())))
    return label.astype(np.uint8)


def read_truth(sample: Sample) -> np.ndarray:
    label = read_label(sample.label_path)
    if sample.label_is_train_ids:
        return label
    present = np.flatnonzero(np.bincount(label.ravel(), minlength=256))
    unknown = present[~KNOWN_LABEL_IDS[present]]
    if unknown.size:  # it would be ignored silently, as if the pixel were unlabelled
        raise UserError("{}: labelId {} is outside the Cityscapes table (0..33); fix the label, or name the file "
                        "*{} if it holds trainIds".format(sample.label_path, int(unknown[0]), TRAIN_IDS_SUFFIX))
    return LABEL_TO_TRAIN[label]


def index_predictions(directory: str) -> Dict[str, str]:
    """Map each Cityscapes id (``CITY_SEQ_FRAME``, the first three ``_`` fields of a file name) to
    its prediction file under ``directory`` (searched recursively; .png only)."""
    if not os.path.isdir(directory):
        raise UserError("--predictions {}: not a directory".format(directory))
    found = {}  # type: Dict[str, str]
    for dirpath, _, filenames in os.walk(directory):
        for filename in filenames:
            if not filename.endswith(".png"):
                continue
            key = "_".join(os.path.splitext(filename)[0].split("_")[:3])
            if key in found:
                raise UserError(
                    "--predictions {}: two files for {}: {} and {}".format(
                        directory, key, found[key], os.path.join(dirpath, filename)
                    )
                )
            found[key] = os.path.join(dirpath, filename)
    return found


def iterate_predictions(
    samples: Iterable[Sample], directory: str, encoding: str = "trainids"
) -> Iterator[np.ndarray]:
    """Saved predictions for ``samples``, in trainIds (``labelids`` files are mapped)."""
    if encoding not in PREDICTION_ENCODINGS:
        raise UserError("--prediction-ids {!r}: choose one of {}".format(encoding, ", ".join(PREDICTION_ENCODINGS)))
    index = index_predictions(directory)
    for sample in samples:
        path = index.get(sample.key)
        if path is None:
            raise UserError("--predictions {}: no prediction for {} (expected {}*.png)".format(directory, sample.key, sample.key))
        label = read_label(path)
        yield LABEL_TO_TRAIN[label] if encoding == "labelids" else label


def evaluate(
    samples: List[Sample],
    predictions: Iterable[np.ndarray],
    num_classes: int = NUM_CLASSES,
    progress: bool = True,
) -> ConfusionMatrix:
    """Accumulate the confusion matrix of ``predictions`` (trainIds, one per sample, in order)."""
    from tqdm import tqdm

    confusion = ConfusionMatrix(num_classes)
    pairs = tqdm(zip(samples, predictions), total=len(samples), desc="eval", unit="img", disable=not progress)
    for sample, prediction in pairs:
        truth = read_truth(sample)
        if prediction.shape != truth.shape:
            raise UserError(
                "prediction for {} is {}x{} but its ground truth is {}x{}; predictions must be full size".format(
                    sample.key, prediction.shape[1], prediction.shape[0], truth.shape[1], truth.shape[0]
                )
            )
        valid = truth[truth != IGNORE_LABEL]
        if valid.size and int(valid.max()) >= num_classes:
            raise UserError("{}: ground truth holds class {} but only {} classes (trainIds 0..{}, {} = ignore) are "
                            "evaluated; is it a labelIds file named as trainIds?".format(
                                sample.label_path, int(valid.max()), num_classes, num_classes - 1, IGNORE_LABEL))
        confusion.update(prediction, truth)
    return confusion


def report(confusion: ConfusionMatrix, images: int, source: Dict[str, Any]) -> Dict[str, Any]:
    """The JSON-ready result: mIoU, pixel accuracy, per-class IoU (null = class absent)."""
    names = class_names(confusion.num_classes)
    ious = confusion.iou()
    return {
        "miou": _finite_or_none(confusion.mean_iou()),
        "pixel_accuracy": _finite_or_none(confusion.pixel_accuracy()),
        "images": images,
        "classes": {name: _finite_or_none(value) for name, value in zip(names, ious)},
        "source": source,
        "confusion_matrix": confusion.matrix.tolist(),
    }


def format_table(result: Dict[str, Any]) -> str:
    """A per-class IoU table (percent) ending with the mean."""
    width = max(len(name) for name in result["classes"]) + 2
    lines = ["{:<{w}}{:>8}".format("class", "IoU %", w=width)]
    for name, value in result["classes"].items():
        lines.append("{:<{w}}{:>8}".format(name, "-" if value is None else "{:.2f}".format(100 * value), w=width))
    miou = result["miou"]
    lines.append("{:<{w}}{:>8}".format("mIoU", "-" if miou is None else "{:.2f}".format(100 * miou), w=width))
    lines.append("({} images)".format(result["images"]))
    return "\n".join(lines)


def write_report(path: str, result: Dict[str, Any]) -> None:
    write_json_atomic(path, result)


def plot_report(path: str, result: Dict[str, Any]) -> None:
    """Per-class IoU as a bar chart (PNG).  Needs matplotlib."""
    from .plots import pyplot, save_png

    plt = pyplot()

    names = list(result["classes"])
    values = [100 * (v or 0.0) for v in result["classes"].values()]
    figure, axes = plt.subplots(figsize=(10, 4))
    axes.bar(range(len(names)), values, color="#4a7ab5")
    axes.set_xticks(range(len(names)))
    axes.set_xticklabels(names, rotation=60, ha="right")
    axes.set_ylabel("IoU (%)")
    axes.set_ylim(0, 100)
    miou = result["miou"]
    axes.set_title("mIoU {:.2f}% over {} images".format(100 * (miou or 0.0), result["images"]))
    if miou is not None:
        axes.axhline(100 * miou, color="#c0392b", linestyle="--", linewidth=1)
    figure.tight_layout()
    save_png(figure, path, dpi=100)


def _finite_or_none(value: float) -> Optional[float]:
    return float(value) if np.isfinite(value) else None
