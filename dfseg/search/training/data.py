"""Datasets streamed from disk (``torch.utils.data``): nothing but file names is held in memory, so a
trial's memory does not grow with the dataset.

Layouts (detected from the directory):
- image folders (ImageNet layout): ``DATA/train/<class>/*`` and ``DATA/val/<class>/*``
- Cityscapes: ``DATA/leftImg8bit/{train,val}/<city>/*_leftImg8bit.*`` with labels
  ``DATA/gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.*`` (trainIds, 255 = ignore) or, as a stock
  download has them, ``*_gtFine_labelIds.*`` (the 34 labelIds, mapped to trainIds by the official
  table in ``dfseg.cityscapes``).
Images are ``.npy`` (HxWx3 uint8, BGR) or anything OpenCV reads; inputs are prepared as
``dfseg.preprocess`` does (BGR, mean subtracted, x0.008).

``check_dataset`` reads every label and every image's header before a search spends its first trial:
a missing split, a label of another size than its image, an id outside the mapping or the class count,
or an unreadable file is a one-line UserError.
"""

import glob
import os
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from ...cityscapes import IGNORE_LABEL, LABEL_IDS, label_to_train_lut
from ...errors import UserError
from ...preprocess import CITYSCAPES_MEAN_BGR, IMAGENET_MEAN_BGR, INPUT_SCALE
from ...sizes import Size
from .recipe import Recipe, classification_train, classification_val, sample_rng, segmentation_train, segmentation_val

IMAGE_EXTENSIONS = (".npy", ".png", ".jpg", ".jpeg", ".bmp")
LABEL_KINDS = ("auto", "trainIds", "labelIds")
_SUFFIX = {"trainIds": "_gtFine_labelTrainIds", "labelIds": "_gtFine_labelIds"}


def read_image(path: str, labels: bool = False) -> np.ndarray:
    """An image (HxWx3 BGR) or, with ``labels``, a label image as stored: read as grey, a colour label
    would become a blend of its channels and a 16-bit one its high byte, wrong ids with no error."""
    if path.endswith(".npy"):
        try:
            image = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UserError("{}: unreadable .npy ({}); replace or remove the file".format(path, exc)) from None
    else:
        try:
            import cv2
        except ImportError:
            raise UserError("{}: reading images needs opencv-python-headless<5 (or store them as .npy)".format(
                path)) from None
        image = cv2.imread(path, cv2.IMREAD_UNCHANGED if labels else cv2.IMREAD_COLOR)
        if image is None:
            raise UserError("{}: unreadable image; replace or remove the file".format(path))
    if labels and (image.ndim != 2 or not np.issubdtype(image.dtype, np.integer)):
        raise UserError("{}: a label must be an HxW integer image (one id per pixel), got {} {}; store the ids as "
                        "a single-channel PNG".format(path, image.dtype, "x".join(map(str, image.shape))))
    return image


def image_shape(path: str) -> Tuple[int, int]:
    """(height, width) of an image from its header where Pillow can read one (a whole decode otherwise)."""
    if path.endswith(".npy"):
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UserError("{}: unreadable .npy ({}); replace or remove the file".format(path, exc)) from None
        _colour(array, path)  # the header says it all: no trial should be the first to find out
        return tuple(array.shape[:2])  # type: ignore
    try:
        from PIL import Image
    except ImportError:
        return read_image(path).shape[:2]  # type: ignore
    try:
        with Image.open(path) as opened:
            opened.verify()  # the file's structure and checksums, without decoding it
            width, height = opened.size
    except Exception:  # Pillow raises many types for a damaged file
        raise UserError("{}: unreadable image; replace or remove the file".format(path)) from None
    return height, width


def _files(pattern: str) -> List[str]:
    return sorted(p for p in glob.glob(pattern) if p.lower().endswith(IMAGE_EXTENSIONS))


def is_segmentation_dataset(root: str) -> bool:
    return os.path.isdir(os.path.join(root, "leftImg8bit"))


def class_folders(root: str, split: str) -> List[str]:
    folder = os.path.join(root, split)
    if not os.path.isdir(folder):
        return []
    return sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))


def classification_samples(root: str, split: str) -> Tuple[List[Tuple[str, int]], int]:
    """(image, class) pairs of ``split`` and the class count; the classes are the folders of ``train``,
    and every class folder of ``split`` must be one of them."""
    classes = class_folders(root, "train")
    if not classes:
        raise UserError("{}: expected DATA/train/<class>/<images> (or a Cityscapes-format leftImg8bit/)".format(root))
    if len(classes) < 2:  # every prediction would be right: 100% for any architecture
        raise UserError("{}: one class folder ({!r}); classification needs at least two, one folder per "
                        "class".format(os.path.join(root, "train"), classes[0]))
    if not os.path.isdir(os.path.join(root, split)):
        raise UserError("{}: split {}/ is missing; a dataset needs train/ and val/".format(root, split))
    unknown = sorted(set(class_folders(root, split)) - set(classes))
    if unknown:
        raise UserError("{}: class folder {!r} has no counterpart in {}; add it to train/ or remove it".format(
            os.path.join(root, split), unknown[0], os.path.join(root, "train")))
    samples = [(path, label) for label, name in enumerate(classes)
               for path in _files(os.path.join(root, split, name, "*"))]
    if not samples:
        raise UserError("{}: no images in {}/<class>/ ({})".format(root, split, " ".join(IMAGE_EXTENSIONS)))
    return samples, len(classes)


def label_kind(root: str, labels: str = "auto") -> str:
    """``trainIds`` or ``labelIds``: with ``auto``, trainIds where the train split has them."""
    if labels not in LABEL_KINDS:
        raise UserError("--labels {}: choose one of {}".format(labels, ", ".join(LABEL_KINDS)))
    if labels != "auto":
        return labels
    pattern = os.path.join(root, "gtFine", "train", "*", "*" + _SUFFIX["trainIds"] + ".*")
    return "trainIds" if _files(pattern) else "labelIds"


def segmentation_samples(root: str, split: str, kind: str) -> List[Tuple[str, str]]:
    """(image, label) paths of ``split``; every image must have its label."""
    if not os.path.isdir(os.path.join(root, "leftImg8bit", split)):
        raise UserError("{}: split leftImg8bit/{}/ is missing; a Cityscapes-format dataset needs train/ and "
                        "val/".format(root, split))
    suffix = _SUFFIX[kind]
    samples = []
    for path in _files(os.path.join(root, "leftImg8bit", split, "*", "*_leftImg8bit.*")):
        city = os.path.basename(os.path.dirname(path))
        stem = os.path.basename(path).split("_leftImg8bit")[0]
        matches = _files(os.path.join(root, "gtFine", split, city, stem + suffix + ".*"))
        if not matches:
            raise UserError("{}: no label {}/gtFine/{}/{}/{}{}.*".format(path, root, split, city, stem, suffix))
        samples.append((path, matches[0]))
    if not samples:
        raise UserError("{}: no images in leftImg8bit/{}/<city>/*_leftImg8bit.*".format(root, split))
    return samples


def to_train_ids(label: np.ndarray, path: str, kind: str, classes: int) -> np.ndarray:
    """The trainIds of a label image (``kind`` labelIds: through the official table); an id outside the
    mapping or the model's classes is a UserError naming the file and the fix."""
    if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
        raise UserError("{}: a label must be an HxW integer image, got {} {}".format(
            path, label.dtype, "x".join(map(str, label.shape))))
    if kind == "labelIds":
        present = (np.flatnonzero(np.bincount(label.ravel(), minlength=256)) if label.dtype == np.uint8
                   else np.unique(label))
        unknown = [int(v) for v in present if int(v) not in LABEL_IDS]
        if unknown:
            raise UserError("{}: labelId {} is outside the Cityscapes table (0..33); fix the label, or pass "
                            "--labels trainIds if the file holds trainIds".format(path, unknown[0]))
        label = label_to_train_lut()[label]
    outside = label[((label < 0) | (label >= classes)) & (label != IGNORE_LABEL)]
    if outside.size:
        value = int(outside.max()) if outside.max() >= classes else int(outside.min())
        fix = ("give the architecture at least {0} classes (-k{0}) or fix the label".format(value + 1)
               if value >= classes else "fix the label")
        raise UserError("{}: label {} does not fit the model's {} classes (trainIds 0..{}, {} = ignore); {}".format(
            path, value, classes, classes - 1, IGNORE_LABEL, fix))
    return label


def check_sizes(label_shape: Tuple[int, ...], image_shape_: Tuple[int, ...], path: str) -> None:
    if tuple(label_shape[:2]) != tuple(image_shape_[:2]):
        raise UserError("{}: label is {}x{} but its image is {}x{}; labels must match their images' size".format(
            path, label_shape[1], label_shape[0], image_shape_[1], image_shape_[0]))


def _prepare(image: np.ndarray, mean: Tuple[float, ...], path: str) -> np.ndarray:
    return ((image.astype(np.float32) - np.asarray(mean, dtype=np.float32)) * np.float32(INPUT_SCALE)).transpose(2, 0, 1)


def _colour(image: np.ndarray, path: str) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise UserError("{}: expected an HxWx3 uint8 BGR image, got {} of shape {}; store images as uint8 "
                        "HxWx3".format(path, image.dtype, image.shape))
    return image


class SegmentationDataset:
    """A Cityscapes-format split as a map-style ``torch.utils.data`` dataset: ``(CHW float32 input,
    HW int64 trainIds)``; training samples are augmented by the recipe, validation ones are the image at
    the input size and the label at full resolution.  Set ``epoch`` before each epoch's loader starts."""

    def __init__(self, root: str, split: str, size: Size, classes: int, labels: str = "auto",
                 recipe: Optional[Recipe] = None, train: bool = True, seed: int = 0) -> None:
        self.kind = label_kind(root, labels)
        self.samples = segmentation_samples(root, split, self.kind)
        self.size, self.classes, self.recipe, self.train, self.seed = size, classes, recipe or Recipe(), train, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Tuple[Any, Any]:
        import torch

        path, label_path = self.samples[index]
        image = _colour(read_image(path), path)
        label = read_image(label_path, labels=True)
        check_sizes(label.shape, image.shape, label_path)
        label = to_train_ids(label, label_path, self.kind, self.classes)
        if self.train:
            rng = sample_rng(self.seed, self.epoch, index)
            image, label = segmentation_train(image, label, self.size, self.recipe, CITYSCAPES_MEAN_BGR, rng)
        else:
            image = segmentation_val(image, self.size)
        return (torch.from_numpy(_prepare(image, CITYSCAPES_MEAN_BGR, path)),
                torch.from_numpy(np.ascontiguousarray(label).astype(np.int64)))


class ImageFolderDataset:
    """An image-folder split (ImageNet layout) as a map-style dataset: ``(CHW float32 input, class)``."""

    def __init__(self, root: str, split: str, size: Size, recipe: Optional[Recipe] = None, train: bool = True,
                 seed: int = 0) -> None:
        self.samples, self.classes = classification_samples(root, split)
        self.size, self.recipe, self.train, self.seed = size, recipe or Recipe(), train, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Tuple[Any, int]:
        import torch

        path, target = self.samples[index]
        image = _colour(read_image(path), path)
        if self.train:
            image = classification_train(image, self.size, self.recipe, sample_rng(self.seed, self.epoch, index))
        else:
            image = classification_val(image, self.size, self.recipe)
        return torch.from_numpy(_prepare(np.ascontiguousarray(image), IMAGENET_MEAN_BGR, path)), target


class _CheckDataset:
    """One sample's check per item, returning the error's line (a worker's exception would reach the
    main process as a multi-line traceback)."""

    def __init__(self, samples: List[Tuple[str, Any]], kind: Optional[str], classes: Optional[int]) -> None:
        self.samples, self.kind, self.classes = samples, kind, classes

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Optional[str]:
        path, label_path = self.samples[index]
        try:
            shape = image_shape(path)
            if self.kind is not None:
                label = read_image(label_path, labels=True)
                check_sizes(label.shape, shape, label_path)
                if self.classes is not None:
                    to_train_ids(label, label_path, self.kind, self.classes)
        except UserError as exc:
            return str(exc)
        return None


class DatasetInfo(NamedTuple):
    segmentation: bool
    classes: int  # classification: the train/ class folders; segmentation: the classes checked against
    train: int  # images in the train split
    val: int


def dataset_layout(root: str, labels: str = "auto") -> Tuple[Optional[str], Dict[str, List[Tuple[str, Any]]], int]:
    """Without reading a pixel: the label kind (None for image folders), each split's samples and the
    class folders' count; a missing directory, split or label is a UserError."""
    if not os.path.isdir(root):
        raise UserError("--trainer: dataset directory {} does not exist".format(root))
    splits = {}  # type: Dict[str, List[Tuple[str, Any]]]
    if is_segmentation_dataset(root):
        kind = label_kind(root, labels)
        for split in ("train", "val"):
            splits[split] = list(segmentation_samples(root, split, kind))
        return kind, splits, 0
    classes = 0
    for split in ("train", "val"):
        splits[split], classes = classification_samples(root, split)  # type: ignore
    return None, splits, classes


def check_dataset(root: str, classes: Optional[int] = None, labels: str = "auto", workers: int = 0,
                  progress: bool = False) -> DatasetInfo:
    """Raise UserError unless ``root`` is a trainable dataset: both splits, every label present, of its
    image's size and (given ``classes``) within the mapping and the class count, every image readable.
    Labels are read whole, images only to their headers; ``workers`` loader processes share the reading."""
    kind, splits, folders = dataset_layout(root, labels)
    segmentation = kind is not None
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    everything = splits["train"] + splits["val"]
    loader = DataLoader(_CheckDataset(everything, kind, classes), batch_size=None,
                        num_workers=workers, collate_fn=lambda item: item)
    for error in tqdm(loader, total=len(everything), desc="checking " + os.path.basename(root.rstrip("/")),
                      unit="image", disable=not progress, leave=False):
        if error is not None:
            raise UserError(error)
    return DatasetInfo(segmentation, (classes or 0) if segmentation else folders, len(splits["train"]),
                       len(splits["val"]))
