"""The paper's training recipe (section 4.2): augmentation and learning-rate schedule.

Segmentation: random scale (default 0.5-2.0, relative to the space's input size), random crop at the
training size (``crop``, default the input size; padded with the mean colour and the ignore label where
the scaled image is smaller), horizontal flip; labels are resampled by nearest neighbour, so 255 stays
255.  Classification: random resized crop (the paper's "scaling and stretching": area 8-100 %, aspect
3/4-4/3) and flip; validation resizes the short side to ``input / val_crop`` and takes the centre crop.
Segmentation is validated at the space's full input size.

Every random draw comes from a generator seeded by (seed, epoch, sample), so a sample is augmented the
same way whichever process or loader worker reads it: resumed and data-parallel runs see the same data
as a single uninterrupted one.
"""

import math
from typing import NamedTuple, Tuple

import numpy as np

from ...cityscapes import IGNORE_LABEL
from ...errors import UserError
from ...sizes import Size


class Recipe(NamedTuple):
    scale: Tuple[float, float] = (0.5, 2.0)  # segmentation: random scale relative to the input size
    crop: Size = None  # type: ignore  # segmentation training crop; None: the input size
    flip: bool = True
    area: Tuple[float, float] = (0.08, 1.0)  # classification: random resized crop's share of the image
    aspect: Tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    val_crop: float = 0.875  # classification validation: centre crop's share of the resized short side


def check_recipe(recipe: Recipe) -> None:
    low, high = recipe.scale
    if not (0 < low <= high and math.isfinite(high)):
        raise UserError("--scale {}-{}: give 0 < MIN <= MAX, e.g. 0.5-2.0".format(low, high))
    if not 0 < recipe.val_crop <= 1:
        raise UserError("--val-crop {}: must be in (0, 1]".format(recipe.val_crop))


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index])


def _cv2():
    import cv2

    return cv2


def segmentation_train(image: np.ndarray, label: np.ndarray, size: Size, recipe: Recipe, mean: Tuple[float, ...],
                       rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Random scale, crop (padding with ``mean`` / ignore) and flip of one image and its label."""
    cv2 = _cv2()
    crop = recipe.crop or size
    scale = rng.uniform(*recipe.scale)
    width = max(1, int(round(size.width * scale)))
    height = max(1, int(round(size.height * scale)))
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST)
    pad_h, pad_w = max(0, crop.height - height), max(0, crop.width - width)
    if pad_h or pad_w:
        image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=tuple(float(m) for m in mean))
        label = cv2.copyMakeBorder(label, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=IGNORE_LABEL)
    top = int(rng.integers(0, image.shape[0] - crop.height + 1))
    left = int(rng.integers(0, image.shape[1] - crop.width + 1))
    image = image[top:top + crop.height, left:left + crop.width]
    label = label[top:top + crop.height, left:left + crop.width]
    if recipe.flip and rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    return image, label


def segmentation_val(image: np.ndarray, size: Size) -> np.ndarray:
    """The whole image at the input size (its label stays at full resolution for scoring)."""
    cv2 = _cv2()
    return cv2.resize(image, (size.width, size.height), interpolation=cv2.INTER_LINEAR)


def classification_train(image: np.ndarray, size: Size, recipe: Recipe, rng: np.random.Generator) -> np.ndarray:
    """Random resized crop (torchvision's RandomResizedCrop rule, ten tries then the centre) and flip."""
    cv2 = _cv2()
    rows, cols = image.shape[:2]
    box = None
    for _ in range(10):
        area = rows * cols * rng.uniform(*recipe.area)
        aspect = math.exp(rng.uniform(math.log(recipe.aspect[0]), math.log(recipe.aspect[1])))
        w, h = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if 0 < w <= cols and 0 < h <= rows:
            box = (int(rng.integers(0, rows - h + 1)), int(rng.integers(0, cols - w + 1)), h, w)
            break
    if box is None:
        side = min(rows, cols)
        box = ((rows - side) // 2, (cols - side) // 2, side, side)
    top, left, h, w = box
    image = cv2.resize(image[top:top + h, left:left + w], (size.width, size.height), interpolation=cv2.INTER_LINEAR)
    if recipe.flip and rng.random() < 0.5:
        image = image[:, ::-1]
    return image


def classification_val(image: np.ndarray, size: Size, recipe: Recipe) -> np.ndarray:
    cv2 = _cv2()
    rows, cols = image.shape[:2]
    scale = max(size.width, size.height) / recipe.val_crop / min(rows, cols)
    width, height = max(size.width, int(round(cols * scale))), max(size.height, int(round(rows * scale)))
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    top, left = (height - size.height) // 2, (width - size.width) // 2
    return image[top:top + size.height, left:left + size.width]


def learning_rate(lr: float, warmup_fraction: float, poly_power: float, step: int, total: int) -> float:
    """Linear warm-up to ``lr`` over the first ``warmup_fraction`` of steps, then poly (power 2)."""
    warmup = max(1, int(round(warmup_fraction * total)))
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (1.0 - progress) ** poly_power


class PolySchedule:
    """``learning_rate`` as a ``LambdaLR`` factor (a picklable object, so the scheduler's state saves)."""

    def __init__(self, warmup_fraction: float, poly_power: float, total: int) -> None:
        self.warmup_fraction, self.poly_power, self.total = warmup_fraction, poly_power, total

    def __call__(self, step: int) -> float:
        return learning_rate(1.0, self.warmup_fraction, self.poly_power, step, self.total)
