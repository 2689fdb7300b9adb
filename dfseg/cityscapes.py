"""The Cityscapes label set: the 19 training classes, their colours, and the map from the dataset's
labelIds (what gtFine ``*_labelIds.png`` files hold) to trainIds (what the networks predict).

These are the public facts of the Cityscapes benchmark (labels.py of cityscapesScripts), restated
as our own table.  Device side: Python 3.6, numpy only.
"""

from typing import List, NamedTuple, Tuple

import numpy as np

IGNORE_LABEL = 255
NUM_CLASSES = 19


class CityscapesClass(NamedTuple):
    name: str
    label_id: int
    train_id: int
    color_rgb: Tuple[int, int, int]


# (name, labelId, trainId, RGB colour) for every labelId 0..33; trainId 255 = not evaluated.
LABELS = (
    CityscapesClass("unlabeled", 0, IGNORE_LABEL, (0, 0, 0)),
    CityscapesClass("ego vehicle", 1, IGNORE_LABEL, (0, 0, 0)),
    CityscapesClass("rectification border", 2, IGNORE_LABEL, (0, 0, 0)),
    CityscapesClass("out of roi", 3, IGNORE_LABEL, (0, 0, 0)),
    CityscapesClass("static", 4, IGNORE_LABEL, (0, 0, 0)),
    CityscapesClass("dynamic", 5, IGNORE_LABEL, (111, 74, 0)),
    CityscapesClass("ground", 6, IGNORE_LABEL, (81, 0, 81)),
    CityscapesClass("road", 7, 0, (128, 64, 128)),
    CityscapesClass("sidewalk", 8, 1, (244, 35, 232)),
    CityscapesClass("parking", 9, IGNORE_LABEL, (250, 170, 160)),
    CityscapesClass("rail track", 10, IGNORE_LABEL, (230, 150, 140)),
    CityscapesClass("building", 11, 2, (70, 70, 70)),
    CityscapesClass("wall", 12, 3, (102, 102, 156)),
    CityscapesClass("fence", 13, 4, (190, 153, 153)),
    CityscapesClass("guard rail", 14, IGNORE_LABEL, (180, 165, 180)),
    CityscapesClass("bridge", 15, IGNORE_LABEL, (150, 100, 100)),
    CityscapesClass("tunnel", 16, IGNORE_LABEL, (150, 120, 90)),
    CityscapesClass("pole", 17, 5, (153, 153, 153)),
    CityscapesClass("polegroup", 18, IGNORE_LABEL, (153, 153, 153)),
    CityscapesClass("traffic light", 19, 6, (250, 170, 30)),
    CityscapesClass("traffic sign", 20, 7, (220, 220, 0)),
    CityscapesClass("vegetation", 21, 8, (107, 142, 35)),
    CityscapesClass("terrain", 22, 9, (152, 251, 152)),
    CityscapesClass("sky", 23, 10, (70, 130, 180)),
    CityscapesClass("person", 24, 11, (220, 20, 60)),
    CityscapesClass("rider", 25, 12, (255, 0, 0)),
    CityscapesClass("car", 26, 13, (0, 0, 142)),
    CityscapesClass("truck", 27, 14, (0, 0, 70)),
    CityscapesClass("bus", 28, 15, (0, 60, 100)),
    CityscapesClass("caravan", 29, IGNORE_LABEL, (0, 0, 90)),
    CityscapesClass("trailer", 30, IGNORE_LABEL, (0, 0, 110)),
    CityscapesClass("train", 31, 16, (0, 80, 100)),
    CityscapesClass("motorcycle", 32, 17, (0, 0, 230)),
    CityscapesClass("bicycle", 33, 18, (119, 11, 32)),
)

TRAIN_CLASSES = tuple(sorted((c for c in LABELS if c.train_id != IGNORE_LABEL), key=lambda c: c.train_id))
CLASS_NAMES = tuple(c.name for c in TRAIN_CLASSES)  # type: Tuple[str, ...]


# The labelIds of the official table: any other id in a labelIds image is no Cityscapes class.
LABEL_IDS = frozenset(cls.label_id for cls in LABELS)


def label_to_train_lut() -> np.ndarray:
    """A 256-entry uint8 lookup table: ``lut[label_ids]`` gives trainIds (255 where not evaluated)."""
    lut = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    for cls in LABELS:
        lut[cls.label_id] = cls.train_id
    return lut


def train_to_label_lut() -> np.ndarray:
    """The inverse for the 19 classes (what the official benchmark server wants); 255 -> 0 (unlabeled)."""
    lut = np.zeros(256, dtype=np.uint8)
    for cls in TRAIN_CLASSES:
        lut[cls.train_id] = cls.label_id
    return lut


def palette_bgr(num_classes: int = NUM_CLASSES) -> np.ndarray:
    """A 256x3 uint8 BGR colour table for class maps (OpenCV order); unknown ids are black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    for cls in TRAIN_CLASSES[:num_classes]:
        red, green, blue = cls.color_rgb
        table[cls.train_id] = (blue, green, red)
    return table


def class_names(num_classes: int = NUM_CLASSES) -> List[str]:
    """Names for ``num_classes`` outputs: the Cityscapes names, ``class N`` beyond them."""
    names = list(CLASS_NAMES[:num_classes])
    names.extend("class {}".format(i) for i in range(len(names), num_classes))
    return names
