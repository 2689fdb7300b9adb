"""Procedural street scenes in Cityscapes format, for demos, benchmarks and tests that need a model to
learn something real on a CPU in minutes.

Each scene has sky, buildings, a road in perspective (with lane markings), sidewalks on both sides and
cars whose size follows their distance; geometry, colours, textures and lighting vary per image.
Labels are Cityscapes trainIds (road 0, sidewalk 1, building 2, sky 10, car 13), so every dfseg tool
that reads Cityscapes (the trainer, dfseg-eval, calibration) reads these sets unchanged.

    root/leftImg8bit/{split}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png
    root/gtFine/{split}/{city}/{city}_{seq:06d}_{frame:06d}_gtFine_labelTrainIds.png (and _labelIds.png)

Host or device side (numpy and OpenCV, no torch).
"""

import os
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from .errors import UserError
from .fileio import write_image_atomic

ROAD, SIDEWALK, BUILDING, SKY, CAR = 0, 1, 2, 10, 13
CLASSES = {"road": ROAD, "sidewalk": SIDEWALK, "building": BUILDING, "sky": SKY, "car": CAR}
# trainId -> Cityscapes labelId (dfseg-eval reads labelIds ground truth).
LABEL_IDS = {ROAD: 7, SIDEWALK: 8, BUILDING: 11, SKY: 23, CAR: 26}
IGNORE = 255


def _cv2():
    try:
        import cv2  # type: ignore
    except ImportError:
        raise UserError("generating street scenes needs OpenCV: pip install 'opencv-python-headless<5'") from None
    return cv2


def street_scene(width: int, height: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """One scene: (BGR uint8 image, trainId uint8 label), both height x width."""
    cv2 = _cv2()
    label = np.full((height, width), SKY, np.uint8)
    image = np.zeros((height, width, 3), np.float32)
    horizon = int(height * rng.uniform(0.35, 0.55))
    # Sky: a vertical gradient from a random blue-grey to a paler one.
    top, bottom = rng.uniform([150, 90, 40], [255, 200, 150]), rng.uniform([200, 180, 160], [255, 240, 230])
    ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    image[:] = top * (1 - ramp) + bottom * ramp
    # Buildings: a skyline of blocks standing on the horizon, each with its colour and windows.
    x = int(rng.integers(-width // 10, 0))
    while x < width:
        block = int(rng.integers(width // 12, width // 4))
        roof = int(horizon - rng.uniform(0.2, 0.95) * horizon)
        colour = rng.uniform([40, 50, 60], [170, 170, 190])
        x0, x1 = max(x, 0), min(x + block, width)
        if x1 > x0:
            label[roof:horizon + 2, x0:x1] = BUILDING
            image[roof:horizon + 2, x0:x1] = colour
            win = max(2, block // 8)
            for wy in range(roof + win, horizon - win, 2 * win):
                for wx in range(x0 + win // 2, x1 - win, 2 * win):
                    image[wy:wy + win, wx:wx + win] = colour * rng.uniform(0.35, 0.7)
        x += block
    # Road and sidewalks: trapezoids to a vanishing point on the horizon.
    vanish = width * rng.uniform(0.35, 0.65)
    spread = width * rng.uniform(0.55, 1.0)
    road_poly = np.array([[vanish - 2, horizon], [vanish + 2, horizon], [vanish + spread, height],
                          [vanish - spread, height]], np.int32)
    walk = width * rng.uniform(0.25, 0.6)
    left_walk = np.array([[0, horizon + 2], [vanish - 2, horizon], [vanish - spread, height],
                          [vanish - spread - walk, height], [0, height]], np.int32)
    right_walk = np.array([[vanish + 2, horizon], [width, horizon + 2], [width, height],
                           [vanish + spread + walk, height], [vanish + spread, height]], np.int32)
    for polygon, cls, low, high in ((left_walk, SIDEWALK, 120, 200), (right_walk, SIDEWALK, 120, 200),
                                    (road_poly, ROAD, 50, 110)):
        mask = np.zeros((height, width), np.uint8)
        cv2.fillPoly(mask, [polygon], 1)
        mask[:horizon] = 0
        region = mask.astype(bool)
        label[region] = cls
        shade = rng.uniform(low, high)
        image[region] = shade * rng.uniform(0.9, 1.1, 3)
    # Paving texture on the sidewalks, lane dashes on the road (both stay their class).
    rows = np.arange(height)[:, None]
    tiles = ((rows // 4 + np.arange(width)[None, :] // 6) % 2).astype(np.float32)
    image[label == SIDEWALK] *= (0.92 + 0.08 * tiles[label == SIDEWALK])[:, None]
    for y in range(horizon + 4, height, 12):
        t = (y - horizon) / float(height - horizon)
        dash = max(1, int(3 * t))
        cx = int(vanish)
        image[y:y + 3 + dash * 2, cx - dash:cx + dash + 1] = 235
    # Cars: boxes on the road, larger when nearer, with darker windows and wheels.
    for _ in range(int(rng.integers(1, 5))):
        y = int(rng.uniform(horizon + 0.1 * (height - horizon), height - 2))
        t = (y - horizon) / float(height - horizon)
        car_w = max(4, int(width * rng.uniform(0.12, 0.22) * t + 3))
        car_h = max(3, int(car_w * rng.uniform(0.55, 0.8)))
        half = spread * t
        cx = int(vanish + rng.uniform(-0.7, 0.7) * half)
        x0, x1 = max(cx - car_w // 2, 0), min(cx + car_w // 2, width)
        y0 = max(y - car_h, horizon)
        if x1 - x0 < 2 or y - y0 < 2:
            continue
        label[y0:y, x0:x1] = CAR
        body = rng.uniform(0, 255, 3)
        image[y0:y, x0:x1] = body
        image[y0:y0 + (y - y0) // 3, x0 + 1:x1 - 1] = body * 0.35
        image[y - max(1, (y - y0) // 5):y, x0:x1] = 25
    # Lighting: exposure, contrast and sensor noise per image.
    image = (image - 128) * rng.uniform(0.75, 1.2) + 128 * rng.uniform(0.7, 1.25)
    image += rng.normal(0, rng.uniform(3, 10), image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label


def write_street_dataset(root: str, counts: Sequence[Tuple[str, int]] = (("train", 64), ("val", 16)),
                         size: Tuple[int, int] = (128, 64), seed: int = 0, city: str = "synthetic") -> Dict[str, int]:
    """Write a Cityscapes-format street set under ``root``; returns images written per split."""
    _cv2()  # say what is missing before anything is written
    rng = np.random.default_rng(seed)
    width, height = size
    to_label_id = np.full(256, 0, np.uint8)
    for train_id, label_id in LABEL_IDS.items():
        to_label_id[train_id] = label_id
    written = {}
    for split, count in counts:
        images = os.path.join(root, "leftImg8bit", split, city)
        labels = os.path.join(root, "gtFine", split, city)
        os.makedirs(images, exist_ok=True)
        os.makedirs(labels, exist_ok=True)
        for index in range(count):
            image, label = street_scene(width, height, rng)
            stem = "{}_{:06d}_{:06d}".format(city, {"train": 0, "val": 1}.get(split, 2), index)
            for path, array in ((os.path.join(images, stem + "_leftImg8bit.png"), image),
                                (os.path.join(labels, stem + "_gtFine_labelTrainIds.png"), label),
                                (os.path.join(labels, stem + "_gtFine_labelIds.png"), to_label_id[label])):
                write_image_atomic(path, array)
        written[split] = count
    return written


def street_frames(count: int, size: Tuple[int, int], seed: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """``count`` scenes as (image, trainId label), e.g. for a clip that no training set has seen."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield street_scene(size[0], size[1], rng)


def present_classes(label: np.ndarray, ignore: Optional[int] = IGNORE) -> Tuple[int, ...]:
    return tuple(int(c) for c in np.unique(label) if c != ignore)
