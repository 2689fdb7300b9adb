"""INT8 calibration inputs: real images (folder, Cityscapes layout, video) written with OpenCV, fed
through dfseg.preprocess exactly as at inference; calibration cache files.  The TensorRT calibrator
class itself needs TensorRT and a GPU (tests/gpu)."""

import os

import numpy as np
import pytest

from dfseg.backends.tensorrt.calibrator import read_cache, write_cache
from dfseg.calibration import CalibrationFeeder, evenly_spaced, image_files
from dfseg.errors import UserError
from dfseg.preprocess import preprocess

cv2 = pytest.importorskip("cv2")


def frames(count, height=48, width=80):
    rng = np.random.RandomState(0)
    return [rng.randint(0, 255, size=(height, width, 3)).astype(np.uint8) for _ in range(count)]


def test_folder_of_images(tmp_path):
    images = frames(5)
    for index, image in enumerate(images):
        sub = tmp_path / ("a" if index < 3 else "b")
        sub.mkdir(exist_ok=True)
        assert cv2.imwrite(str(sub / "frame{}.png".format(index)), image)
    (tmp_path / "notes.txt").write_text("not an image")
    assert len(image_files(str(tmp_path))) == 5
    feeder = CalibrationFeeder(str(tmp_path), (1, 3, 32, 64), limit=10)
    batches = []
    while True:
        batch = feeder.next_batch()
        if batch is None:
            break
        batches.append(batch)
    assert len(batches) == 5 and feeder.batches_served == 5
    assert batches[0].shape == (1, 3, 32, 64) and batches[0].dtype == np.float32
    # Same preprocessing as inference (PNG is lossless, so the frame is bit-exact).
    np.testing.assert_array_equal(batches[0], preprocess(images[0], (64, 32)))


def test_batches_of_two_and_limit(tmp_path):
    for index, image in enumerate(frames(7)):
        cv2.imwrite(str(tmp_path / "{:02d}.png".format(index)), image)
    feeder = CalibrationFeeder(str(tmp_path), (2, 3, 16, 16), limit=5)
    shapes = []
    batch = feeder.next_batch()
    while batch is not None:
        shapes.append(batch.shape)
        batch = feeder.next_batch()
    assert shapes == [(2, 3, 16, 16), (2, 3, 16, 16)]  # 5 frames -> 2 full batches, the partial one dropped
    assert evenly_spaced(10, 4) == [0, 2, 5, 7] and evenly_spaced(3, 4) == [0, 1, 2]


def test_cityscapes_layout_prefers_train_left_images(tmp_path):
    for split, city in (("train", "aachen"), ("val", "frankfurt")):
        folder = tmp_path / "leftImg8bit" / split / city
        folder.mkdir(parents=True)
        cv2.imwrite(str(folder / "{}_000000_000019_leftImg8bit.png".format(city)), frames(1)[0])
    labels = tmp_path / "gtFine" / "train" / "aachen"
    labels.mkdir(parents=True)
    cv2.imwrite(str(labels / "aachen_000000_000019_gtFine_labelIds.png"), frames(1)[0][:, :, 0])
    found = image_files(str(tmp_path))
    assert [os.path.basename(f) for f in found] == ["aachen_000000_000019_leftImg8bit.png"]


def test_video_frames(tmp_path):
    path = str(tmp_path / "drive.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (80, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG video")
    for image in frames(12):
        writer.write(image)
    writer.release()
    feeder = CalibrationFeeder(path, (1, 3, 24, 40), limit=4)
    count = 0
    while feeder.next_batch() is not None:
        count += 1
    assert count == 4


def test_bad_sources_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        CalibrationFeeder(str(tmp_path / "missing"), (1, 3, 8, 8)).next_batch()
    with pytest.raises(UserError, match="no images"):
        CalibrationFeeder(str(tmp_path), (1, 3, 8, 8)).next_batch()
    text = tmp_path / "list.txt"
    text.write_text("x")
    with pytest.raises(UserError, match="not a video"):
        CalibrationFeeder(str(text), (1, 3, 8, 8)).next_batch()
    with pytest.raises(UserError, match="1x3xHxW"):
        CalibrationFeeder(str(tmp_path), (1, 1, 8, 8))


def test_cache_roundtrip(tmp_path):
    path = str(tmp_path / "engines" / "calibration-df1-seg.cache")
    assert read_cache(path) is None and read_cache(None) is None
    write_cache(path, b"TRT-8201-EntropyCalibration2\ninput: 3c010a14\n")
    assert read_cache(path).startswith(b"TRT-8201-EntropyCalibration2")
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".tmp-")]
