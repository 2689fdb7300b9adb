"""dfseg-run end to end: real video files written with OpenCV, real ONNX Runtime sessions, real
subprocesses (exit codes, SIGINT), and the threaded pipeline's frame accounting."""

import os
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from signals import like_a_terminal

from dfseg.backends.onnxrt import OnnxRuntimeRunner
from dfseg.errors import UserError
from dfseg.live.pipeline import Pipeline
from dfseg.live.render import Renderer
from dfseg.live.segmenter import Segmenter
from dfseg.live.sinks import ImageFolderSink, NullSink, VideoFileSink
from dfseg.live.sources import CaptureSource, Source, open_source, opencv_has_gstreamer

WIDTH, HEIGHT, FRAMES = 64, 48, 24
# A real, small DF-Seg (same decoder and layer kinds as df1-seg, narrow widths) keeps tests fast.
TINY_ARCH = "s16.16-16x1_32x1_32x1-wc19.19.32"


def tiny_onnx(path: str, width: int = WIDTH, height: int = HEIGHT, output: str = "classmap", arch: str = TINY_ARCH) -> str:
    """Export the tiny DF-Seg at width x height (random weights; seeded for repeatability)."""
    import torch

    from dfseg.export import export_onnx
    from dfseg.models import create_model

    if not os.path.exists(path):
        torch.manual_seed(0)
        export_onnx(create_model(arch), "{}x{}".format(width, height), path, output=output)
    return path


def write_video(path: str, frames: int = FRAMES, width: int = WIDTH, height: int = HEIGHT) -> str:
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (width, height))
    assert writer.isOpened()
    for i in range(frames):
        image = np.zeros((height, width, 3), np.uint8)
        image[:] = (i * 10 % 256, 90, 200)
        cv2.circle(image, (i * 2 % width, height // 2), 8, (255, 255, 255), -1)
        writer.write(image)
    writer.release()
    return path


def count_frames(path: str):
    capture = cv2.VideoCapture(path)
    count, size = 0, None
    while True:
        ok, image = capture.read()
        if not ok:
            break
        count += 1
        size = image.shape
    capture.release()
    return count, size


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_onnx(str(tmp_path_factory.mktemp("model") / "tiny.onnx"))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(str(tmp_path_factory.mktemp("video") / "clip.avi"))


def run_cli(*args, timeout=120):
    # Through a wrapper that fails if torch was imported: the device path must not need it.
    code = (
        "import sys\nfrom dfseg.cli.run import main\nrc = main(sys.argv[1:])\n"
        "assert 'torch' not in sys.modules, 'dfseg-run imported torch'\nsys.exit(rc)\n"
    )
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)


def test_video_to_video_and_folder_keeps_every_frame(model, video, tmp_path):
    out = tmp_path / "out.avi"
    proc = run_cli("--model", model, video, str(out), str(tmp_path / "frames") + "/", "--save-labels", str(tmp_path / "labels"))
    assert proc.returncode == 0, proc.stderr
    assert count_frames(str(out)) == (FRAMES, (HEIGHT, WIDTH, 3))
    assert sorted(os.listdir(tmp_path / "frames")) == ["{:06d}.png".format(i) for i in range(FRAMES)]
    assert len(os.listdir(tmp_path / "labels")) == FRAMES
    assert not [name for name in os.listdir(tmp_path) if "partial" in name]
    assert "{} frames".format(FRAMES) in proc.stderr


def assert_labels_match(model, video, labels_dir, frames):
    """The class maps saved in ``labels_dir`` equal segmenting the video's first ``frames`` frames directly."""
    capture = cv2.VideoCapture(video)
    with OnnxRuntimeRunner(model) as runner:
        segmenter = Segmenter(runner)
        for i in range(frames):
            ok, image = capture.read()
            assert ok
            saved = cv2.imread(str(labels_dir / "{:06d}.png".format(i)), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(saved, segmenter.segment(image))
    capture.release()


@pytest.mark.parametrize("policy", [[], ["--latency", "low"]])  # a file keeps every frame under either policy
def test_saved_labels_equal_direct_segmentation_in_order(model, video, tmp_path, policy):
    """Each output belongs to its own input frame (the threads never reorder or mix frames)."""
    proc = run_cli("--model", model, video, "none", "--save-labels", str(tmp_path / "labels"), "--queue-size", "1",
                   *policy)
    assert proc.returncode == 0, proc.stderr
    assert_labels_match(model, video, tmp_path / "labels", FRAMES)


def test_image_folder_side_by_side_keeps_names(model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.RandomState(0)
    names = ["b_frame", "a_frame", "c_frame"]
    for name in names:
        cv2.imwrite(str(folder / (name + ".png")), rng.randint(0, 255, (HEIGHT + 10, WIDTH + 6, 3)).astype(np.uint8))
    proc = run_cli("--model", model, str(folder), str(tmp_path / "out") + "/", "--overlay", "side", "--alpha", "0.3")
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path / "out")) == sorted(name + ".png" for name in names)
    image = cv2.imread(str(tmp_path / "out" / "a_frame.png"))
    assert image.shape == (HEIGHT + 10, 2 * (WIDTH + 6), 3)  # frame size kept (not the network's), doubled


@pytest.mark.parametrize("signum, exit_code, said", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_finalises_the_video(model, video, tmp_path, signum, exit_code, said):
    """Ctrl-C and SIGTERM (docker stop, systemd) alike: the frames in flight are written and the
    video is finalised into a playable file."""
    out = tmp_path / "out.mp4"
    code = "import sys\nfrom dfseg.cli.run import main\nsys.exit(main(sys.argv[1:]))\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--model", model, video, str(out), "--input-loop", "-1"],
        stderr=subprocess.PIPE, text=True, preexec_fn=like_a_terminal,
    )
    partial = tmp_path / ".out.partial.mp4"
    deadline = time.time() + 60
    while not (partial.exists() and partial.stat().st_size > 2000) and time.time() < deadline:
        time.sleep(0.05)
    assert partial.exists(), "the run never started writing"
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == exit_code, stderr
    assert said in stderr and "Traceback" not in stderr
    frames, size = count_frames(str(out))
    assert frames > 0 and size == (HEIGHT, WIDTH, 3)
    assert not partial.exists()


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGTERM, 143), (signal.SIGKILL, -signal.SIGKILL)])
def test_a_run_leaves_no_scratch_folder_however_it_ends(video, tmp_path, signum, exit_code):
    """A model name is exported into a scratch folder in $TMPDIR that is gone once the runtime has read
    it: a run ended mid-stream by SIGTERM, or by SIGKILL (after which no process can clean up), leaves
    no dfseg-run-* folder behind (the test suite used to leave some on every run)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dfseg.cli.run", "--model", TINY_ARCH, "--size", "{}x{}".format(WIDTH, HEIGHT),
         video, "none", "--input-loop", "-1"],
        stderr=subprocess.PIPE, text=True, env=dict(os.environ, TMPDIR=str(temp)), stdin=subprocess.DEVNULL,
    )
    try:
        banner = "dfseg-run: {} ->".format(video)
        assert any(line.startswith(banner) for line in proc.stderr), "the run never started"  # reads up to it
    finally:
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == exit_code, stderr
    assert [name for name in os.listdir(str(temp)) if name.startswith("dfseg-")] == []  # others' files aside


def test_untrained_model_name_warns_loudly(video, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "dfseg.cli.run", "--model", TINY_ARCH, "--size", "{}x{}".format(WIDTH, HEIGHT),
         video, "none", "--max-frames", "3"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "UNTRAINED" in proc.stderr and "MEANINGLESS" in proc.stderr
    assert "3 frames" in proc.stderr


def test_model_name_with_weights_runs_those_weights_without_the_warning(model, video, tmp_path):
    """--model NAME --weights W exports W on the host: same class maps as the ONNX of the same weights."""
    import torch

    from dfseg.models import create_model
    from dfseg.weights import save_weights

    torch.manual_seed(0)  # the same seeded weights as the `model` fixture's export
    weights = save_weights(create_model(TINY_ARCH), str(tmp_path / "tiny.safetensors"))
    labels = tmp_path / "labels"
    proc = subprocess.run(  # the host path: exporting needs torch, so not run_cli's torch-free check
        [sys.executable, "-m", "dfseg.cli.run", "--model", TINY_ARCH, "--weights", weights, "--size",
         "{}x{}".format(WIDTH, HEIGHT), video, "none", "--save-labels", str(labels), "--max-frames", "3"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "UNTRAINED" not in proc.stderr
    assert_labels_match(model, video, labels, 3)


@pytest.mark.parametrize(
    "args, message",
    [
        (["nowhere.mp4", "none"], "nowhere.mp4: no such file"),
        (["VIDEO", "ftp://host/x"], "unknown output"),
        (["VIDEO", "out.xyz"], "unknown output type"),
        (["/dev/video97", "none"], "no such camera device"),
        (["VIDEO", "http://127.0.0.1:99999"], "expected http://HOST:PORT"),
        (["VIDEO", "none", "--max-frames", "0"], "--max-frames: must be at least 1, got 0"),
        (["VIDEO", "none", "--size", "640x360"], "was built for 64x48"),
        (["VIDEO", "none", "--latency", "fast"], "--latency: invalid choice: 'fast'"),
    ],
)
def test_bad_input_is_one_line_exit_2(model, video, tmp_path, args, message):
    args = [video if a == "VIDEO" else a for a in args]
    proc = run_cli("--model", model, *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_csi_without_gstreamer_says_what_to_do(model):
    proc = run_cli("--model", model, "csi://0", "none")
    if opencv_has_gstreamer():
        # With GStreamer but no Argus camera here, opening fails with a named error instead.
        assert proc.returncode == 2 and "csi://0" in proc.stderr
    else:
        assert proc.returncode == 2 and "without GStreamer" in proc.stderr and "/dev/video0" in proc.stderr


def test_display_without_a_gui_opencv_says_what_to_install(model, video):
    """The window itself is proven by ``make test-display`` (tests/display, a real X server)."""
    from dfseg.live.sinks import opencv_has_gui

    if opencv_has_gui():
        pytest.skip("this OpenCV has a GUI")
    proc = run_cli("--model", model, video, "display://0")
    assert proc.returncode == 2, proc.stderr
    assert "install opencv-python instead" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_missing_model_file(video):
    proc = run_cli("--model", "missing.onnx", video, "none")
    assert proc.returncode == 2 and "missing.onnx: file not found" in proc.stderr


def test_overlapping_stderr_silencers_in_two_threads_give_stderr_back(tmp_path):
    """Two streams' captures (API threads) may reopen their files at once and finish in either order:
    descriptor 2 stays silenced while either is inside and is the process's own stderr again once both
    are out (each restoring its own saved copy used to leave stderr on /dev/null for good)."""
    from dfseg.opencv_log import native_stderr_silenced

    def same(a, b):
        return (a.st_dev, a.st_ino, a.st_rdev) == (b.st_dev, b.st_ino, b.st_rdev)

    original = os.dup(2)
    devnull = os.stat(os.devnull)
    try:
        before = os.fstat(2)
        steps = {name: threading.Event() for name in ("a_in", "b_in", "a_out", "b_out")}
        seen = {}

        def first():
            with native_stderr_silenced():
                steps["a_in"].set()
                steps["b_in"].wait(30)
            seen["after_a"] = os.fstat(2)  # b is still inside
            steps["a_out"].set()

        def second():
            steps["a_in"].wait(30)
            with native_stderr_silenced():
                seen["both"] = os.fstat(2)
                steps["b_in"].set()
                steps["a_out"].wait(30)
            steps["b_out"].set()

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert steps["b_out"].is_set()
        assert same(seen["both"], devnull) and same(seen["after_a"], devnull)
        assert same(os.fstat(2), before)  # the process's stderr again
        with native_stderr_silenced(False):
            assert same(os.fstat(2), before)
    finally:
        os.dup2(original, 2)
        os.close(original)


# ------------------------------------------------------------------ in-process pipeline behaviour


class BurstCamera(Source):
    """Frames as fast as the pipeline takes them, flagged live like a camera; ``exhausted`` is set
    when the last frame has been read."""

    live = True
    description = "burst"

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.total = frames
        self.end_reason = None
        self.exhausted = threading.Event()

    def read(self):
        if self.frames_read >= self.total:
            self.end_reason = "burst over"
            self.exhausted.set()
            return None
        image = np.full((HEIGHT, WIDTH, 3), self.frames_read % 256, np.uint8)
        return self._frame(image)


class RecordingSink(NullSink):
    """Records frame names; with ``gate``, the first write waits for it, so the consumer is slower
    than the camera by construction rather than by a sleep."""

    def __init__(self, gate=None):
        super().__init__()
        self.names = []
        self.gate = gate

    def write(self, image, name, classes):
        if self.gate is not None and not self.names and not self.gate.wait(timeout=120):
            raise AssertionError("the camera never finished")
        self.names.append(name)
        super().write(image, name, classes)


def test_live_source_drops_stale_frames_file_source_does_not(model, video):
    with OnnxRuntimeRunner(model, threads=1) as runner:
        segmenter = Segmenter(runner)
        camera = BurstCamera(300)
        sink = RecordingSink(gate=camera.exhausted)
        result = Pipeline(camera, segmenter, Renderer(), [sink], queue_size=1).run()
        assert result.frames_captured == 300
        # Held up until all 300 were captured, the pipeline can hold only a few frames (one per
        # queue and per stage); a live source drops the rest, oldest first.
        assert 0 < result.frames_written <= 12 and result.frames_written + result.frames_dropped == 300
        indices = [int(name) for name in sink.names]
        assert indices == sorted(indices) and len(set(indices)) == len(indices)
        assert indices[-1] == 299  # the newest frame is never the one dropped

        sink = RecordingSink()
        source = open_source(video)
        result = Pipeline(source, segmenter, Renderer(), [sink], queue_size=1).run()
        assert (result.frames_captured, result.frames_written, result.frames_dropped) == (FRAMES, FRAMES, 0)
        assert sink.names == ["{:06d}".format(i) for i in range(FRAMES)]


def test_lost_camera_is_retried_then_the_run_ends_cleanly(model, tmp_path):
    """A live capture whose device disappears: reconnection is attempted, then the run ends with a
    message and the video output is still finalised."""
    path = write_video(str(tmp_path / "camera.avi"), frames=5)
    messages = []
    source = CaptureSource(path, "camera", live=True, reconnect_attempts=2, reconnect_delay=0.01, log=messages.append)
    source.open()
    os.unlink(path)  # the device goes away; the open handle still yields its frames
    out = tmp_path / "out.avi"
    with OnnxRuntimeRunner(model) as runner:
        result = Pipeline(source, Segmenter(runner), Renderer(), [VideoFileSink(str(out), 10.0)]).run()
    assert "disconnected" in result.end_reason and "2 reconnection attempts" in result.end_reason
    assert [m for m in messages if "reconnecting" in m] == ["camera: no frame; reconnecting (1/2)", "camera: no frame; reconnecting (2/2)"]
    assert result.frames_captured == 5 and result.frames_written + result.frames_dropped == 5  # live: may drop
    assert count_frames(str(out))[0] == result.frames_written >= 1


def test_stage_error_stops_everything_and_is_raised(model, video, tmp_path):
    class BrokenSink(ImageFolderSink):
        def write(self, image, name, classes):
            if self.frames_written == 3:
                raise UserError("disk full (simulated by this test's sink)")
            super().write(image, name, classes)

    with OnnxRuntimeRunner(model) as runner:
        pipeline = Pipeline(open_source(video), Segmenter(runner), Renderer(), [BrokenSink(str(tmp_path / "f"))])
        with pytest.raises(UserError, match="disk full"):
            pipeline.run()
    assert len(os.listdir(tmp_path / "f")) == 3


def test_d8_logits_are_upsampled_like_the_release(tmp_path):
    from dfseg.preprocess import upsample_nearest
    from dfseg.sizes import Size

    path = tiny_onnx(str(tmp_path / "d8.onnx"), 72, 40, output="logits", arch=TINY_ARCH.replace("wc19.19.32", "wc19.19.32-d8"))
    image = np.random.RandomState(3).randint(0, 255, (40, 72, 3)).astype(np.uint8)
    with OnnxRuntimeRunner(path) as runner:
        segmenter = Segmenter(runner)
        outputs = segmenter.infer(segmenter.prepare(image))
        small = segmenter.classmap(outputs)
        assert small.shape == (5, 9)
        full = segmenter.segment(image)
    np.testing.assert_array_equal(full, upsample_nearest(small, 8, Size(72, 40)))


def test_profile_accounts_for_every_frame_in_every_stage(model, video, tmp_path):
    """dfseg-run --profile: every stage saw every frame, and its work and waits fit in the run's wall time."""
    done = subprocess.run([sys.executable, "-m", "dfseg.cli.run", "--model", model, video, "none", "--profile"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    header = [i for i, line in enumerate(lines) if line.startswith("stage ")][0]
    rows = {}
    for line in lines[header + 1:header + 7]:
        name, *values = line.split()
        rows[name] = [float(v) for v in values]
    assert set(rows) == {"capture", "preprocess", "inference", "postprocess", "render", "output"}
    assert any(line.startswith("process CPU") for line in lines)
    latency = [line for line in lines if line.startswith("latency capture -> ")]
    assert [line.split()[3] for line in latency] == ["classmap", "output"]
    assert all("({} frames)".format(FRAMES) in line for line in latency)


def test_profile_numbers_add_up(model, video):
    from dfseg.backends import get_runner
    from dfseg.live.pipeline import Pipeline
    from dfseg.live.render import Renderer
    from dfseg.live.segmenter import Segmenter
    from dfseg.live.sinks import NullSink
    from dfseg.live.sources import open_source

    with get_runner("onnxruntime", model, threads=1) as runner:
        started = time.perf_counter()
        result = Pipeline(open_source(video), Segmenter(runner), Renderer(), [NullSink()]).run()
        wall_ms = (time.perf_counter() - started) * 1000.0
    assert result.frames_written == FRAMES
    for name, row in result.profile.items():
        assert row["frames"] == FRAMES, name
        assert 0 <= row["cpu_ms"] and 0 < row["work_ms"]
        # each stage's thread is either working or waiting: together at most the whole run
        assert (row["work_ms"] + row["wait_in_ms"] + row["wait_out_ms"]) * FRAMES <= wall_ms * 1.05, name
    assert result.profile["inference"]["work_ms"] > 0 and result.process_cpu_ms_per_frame > 0
    classmap, output = result.latency_ms["classmap"], result.latency_ms["output"]
    assert classmap["frames"] == output["frames"] == FRAMES
    for span in (classmap, output):
        assert 0 <= span["p50"] <= span["p95"] <= span["p99"] and span["mean"] >= 0
    # a frame is written after its class map is ready
    assert output["p50"] >= classmap["p50"] and output["mean"] >= classmap["mean"]


def test_latency_percentiles_are_nearest_rank():
    from dfseg.live.counters import percentiles

    assert percentiles([]) is None
    values = [float(v) for v in range(100, 0, -1)]  # 1..100, unsorted
    assert percentiles(values) == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "mean": 50.5, "frames": 100}
    assert percentiles([7.0]) == {"p50": 7.0, "p95": 7.0, "p99": 7.0, "mean": 7.0, "frames": 1}
    assert percentiles([1.0, 2.0, 3.0, 4.0, 1000.0])["p95"] == 1000.0


class HeldCamera(BurstCamera):
    """A live camera that delivers frame 0, then, once ``taken`` is set, the other ``burst - 1`` as fast
    as they are read; then (its last frame queued) it sets ``delivered`` and ends once ``release`` is set."""

    def __init__(self, burst):
        super().__init__(burst)
        self.taken = threading.Event()
        self.delivered = threading.Event()
        self.release = threading.Event()

    def read(self):
        if self.frames_read == 1 and not self.taken.wait(timeout=120):
            raise AssertionError("the pipeline never took frame 0")
        if self.frames_read >= self.total:
            self.delivered.set()
            if not self.release.wait(timeout=120):
                raise AssertionError("the test never released the camera")
        return super().read()


class HeldPipeline(Pipeline):
    """The real pipeline whose ``held`` stage holds its first item until the camera has delivered every
    frame, then releases the camera: that stage is slower than the camera by construction, not by a
    sleep.  The camera's frame 0 is the first taken.  It records the frame each inference started on
    and the most items any queue held."""

    def __init__(self, held, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.held = held
        self.inferred = []
        self.most_queued = 0

    def _hold(self, stage):
        self.most_queued = max([self.most_queued] + [q.qsize() for q in self.queues])
        if stage == self.held and not self.source.release.is_set():
            assert self.source.delivered.wait(timeout=120), "the camera never delivered its burst"
            self.source.release.set()

    def _preprocess(self, frame):
        self.source.taken.set()
        return super()._preprocess(frame)

    def _inference(self, item):
        self._hold("inference")
        self.inferred.append(item[0].index)
        return super()._inference(item)

    def _render(self, item):
        self._hold("render")
        return super()._render(item)


def run_held(model, held, burst=30):
    with OnnxRuntimeRunner(model, threads=1) as runner:
        sink = RecordingSink()
        pipeline = HeldPipeline(held, HeldCamera(burst), Segmenter(runner), Renderer(), [sink], queue_size=4,
                                latency="low")
        result = pipeline.run()
    assert result.latency_policy == "low" and all(q.maxsize == 1 for q in pipeline.queues)
    assert pipeline.most_queued <= 1
    assert result.frames_captured == burst and result.frames_written + result.frames_dropped == burst
    assert result.frames_dropped == sum(result.drops.values())
    indices = [int(name) for name in sink.names]
    assert indices == sorted(indices) and indices[-1] == burst - 1  # in order; the newest is never dropped
    return pipeline, result, indices


def test_low_latency_inference_takes_the_newest_captured_frame(model):
    """While the network works on frame 0 the camera delivers 29 more: the next inference starts on
    the newest of them, the 28 between are dropped at capture and nowhere else."""
    pipeline, result, indices = run_held(model, "inference")
    assert pipeline.inferred == indices == [0, 29]
    assert result.drops == {"capture": 28, "preprocess": 0, "inference": 0, "postprocess": 0, "render": 0}


def test_low_latency_slow_drawing_pauses_inference_and_loses_no_class_map(model):
    """While the drawing holds frame 0's class map, inference finishes at most two more (one waiting in
    the queue, one waiting to be put; no newer one replaces them, none is computed for nothing), then
    takes the newest frame."""
    pipeline, result, indices = run_held(model, "render")
    assert indices == pipeline.inferred and len(indices) in (2, 3, 4)  # 0, [up to 2 waiting], the newest
    assert pipeline.clocks["postprocess"].items == result.frames_written  # every class map was written
    assert result.drops == {"capture": 30 - len(indices), "preprocess": 0, "inference": 0, "postprocess": 0,
                            "render": 0}


class RenderDropGate:
    """A gate for RecordingSink that opens once the render stage of ``pipeline`` has dropped a frame."""

    def __init__(self):
        self.pipeline = None

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while not self.pipeline.drops["render"] and time.monotonic() < deadline:
            time.sleep(0.001)
        return bool(self.pipeline.drops["render"])


def test_low_latency_slow_output_gets_the_newest_drawn_frame(model):
    """An output slower than the camera (held until render had to drop): the drawn frame waiting for
    it is replaced by a newer drawn one, counted against render; frame -> class map drops nothing."""

    class UntilRenderDrops(BurstCamera):
        def read(self):
            if gate.pipeline.drops["render"]:
                self.total = self.frames_read
            return super().read()

    gate = RenderDropGate()
    with OnnxRuntimeRunner(model, threads=1) as runner:
        sink = RecordingSink(gate=gate)
        pipeline = gate.pipeline = Pipeline(UntilRenderDrops(100000), Segmenter(runner), Renderer(), [sink],
                                            latency="low")
        result = pipeline.run()
    assert result.frames_written + result.frames_dropped == result.frames_captured
    assert result.drops["preprocess"] == result.drops["inference"] == result.drops["postprocess"] == 0
    assert result.drops["render"] > 0 and result.frames_dropped == sum(result.drops.values())
    assert pipeline.clocks["postprocess"].items == result.frames_written + result.drops["render"]
    indices = [int(name) for name in sink.names]
    assert indices == sorted(indices) and indices[-1] == result.frames_captured - 1


def test_low_latency_policy_keeps_every_frame_of_a_file(model, video):
    with OnnxRuntimeRunner(model, threads=1) as runner:
        sink = RecordingSink()
        pipeline = Pipeline(open_source(video), Segmenter(runner), Renderer(), [sink], latency="low")
        result = pipeline.run()
    assert result.latency_policy == "default" and result.drops == dict.fromkeys(result.drops, 0)
    assert (result.frames_captured, result.frames_written, result.frames_dropped) == (FRAMES, FRAMES, 0)
    assert sink.names == ["{:06d}".format(i) for i in range(FRAMES)]


def test_unknown_latency_policy_is_one_line(model, video):
    with OnnxRuntimeRunner(model, threads=1) as runner:
        with pytest.raises(UserError, match="latency: expected one of default, low, got 'fast'"):
            Pipeline(open_source(video), Segmenter(runner), None, [], latency="fast")
