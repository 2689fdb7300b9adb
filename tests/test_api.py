"""dfseg.load and Model(frame): a real tiny DF-Seg exported to ONNX, real ONNX Runtime, and the
same class maps as the Segmenter that dfseg-run uses."""

import os
import re
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from test_live_pipeline import FRAMES, HEIGHT, WIDTH, count_frames, tiny_onnx, write_video

import dfseg
from dfseg import api
from dfseg.backends.onnxrt import MAX_THREADS, OnnxRuntimeRunner
from dfseg.errors import UserError
from dfseg.live.pipeline import MAX_QUEUE_SIZE
from dfseg.live.segmenter import Segmenter
from dfseg.live.sinks import MAX_OUTPUT_FPS


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory) -> str:
    return tiny_onnx(str(tmp_path_factory.mktemp("api") / "tiny.onnx"))


def frame(seed: int = 0, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, (height, width, 3)).astype(np.uint8)


def test_model_call_matches_the_segmenter_of_dfseg_run(onnx_path) -> None:
    image = frame()
    with dfseg.load(onnx_path, backend="onnxruntime", threads=1) as model:
        classes = model(image)
    with OnnxRuntimeRunner(onnx_path, threads=1) as runner:
        expected = Segmenter(runner).segment(image)
    assert classes.dtype == np.uint8 and classes.shape == (HEIGHT, WIDTH)
    np.testing.assert_array_equal(classes, expected)
    assert not model.runner.is_active


def test_colour_mask_and_overlay_have_the_frame_shape(onnx_path) -> None:
    image = frame(1)
    with dfseg.load(onnx_path, backend="auto", threads=1) as model:
        classes = model(image)
    mask = api.colorize(classes)
    blend = api.overlay(image, classes)
    assert mask.shape == blend.shape == image.shape
    palette = api.palette_bgr()
    np.testing.assert_array_equal(mask[0, 0], palette[classes[0, 0]])
    assert len(api.class_names()) == 19


def test_bad_input_is_a_one_line_user_error(onnx_path, tmp_path) -> None:
    with pytest.raises(UserError, match="missing.onnx: file not found; give an existing .onnx file"):
        dfseg.load(str(tmp_path / "missing.onnx"))
    with dfseg.load(onnx_path, backend="onnxruntime", threads=1) as model:
        with pytest.raises(UserError, match="BGR uint8"):
            model(frame().astype(np.float32))
        with pytest.raises(UserError, match="BGR uint8"):
            model(frame()[:, :, 0])
    with pytest.raises(UserError, match="already closed"):
        model(frame())


@pytest.mark.parametrize("threads", ["2", 0, -1, 1.5, True, MAX_THREADS + 1, 100000])
def test_threads_must_be_a_whole_number_from_one_to_the_maximum(onnx_path, threads) -> None:
    # 0 would silently become ONNX Runtime's default (every core), a string a pybind TypeError, and
    # 100000 threads would take minutes to start (dfseg-run --threads has the same bounds).
    with pytest.raises(UserError, match=r"^threads: expected a whole number from 1 to {}, got {}$".format(
            MAX_THREADS, repr(threads))):
        dfseg.load(onnx_path, backend="onnxruntime", threads=threads)


def test_load_takes_a_pathlib_path_and_refuses_other_types_in_one_line(onnx_path, tmp_path) -> None:
    import pathlib

    # a pathlib.Path was an AttributeError ('PosixPath' object has no attribute 'endswith'), None a TypeError
    with dfseg.load(pathlib.Path(onnx_path), backend="onnxruntime", threads=1) as model:
        assert model(frame()).shape == (HEIGHT, WIDTH)
    with pytest.raises(UserError, match=r"^{}: file not found; give an existing \.onnx file".format(
            re.escape(str(tmp_path / "missing.onnx")))):
        dfseg.load(tmp_path / "missing.onnx")
    # a path without a model suffix is a missing file too, not 'neither a preset nor a valid short form'
    with pytest.raises(UserError, match=r"^{}: file not found".format(re.escape(str(tmp_path / "model")))):
        dfseg.load(str(tmp_path / "model"))
    for bad in (None, 3, b"tiny.onnx"):
        with pytest.raises(UserError, match=r"^model: expected a file path or a model name \(a str or pathlib.Path\), "
                                            r"got {}$".format(type(bad).__name__)):
            dfseg.load(bad)
    with pytest.raises(UserError, match=r"^weights: expected a file path or a model name .*got int$"):
        dfseg.load("df1-seg", weights=5)
    # a string was taken letter by letter ("provider 'C' is not installed")
    for providers in ("CPUExecutionProvider", [None]):
        with pytest.raises(UserError, match=r"^providers: expected a list of ONNX Runtime provider names"):
            dfseg.load(onnx_path, backend="onnxruntime", providers=providers)
    with pytest.raises(UserError, match=r"^config: expected a dfseg.build_config.BuildConfig, got str; pass precision="):
        dfseg.load(onnx_path, backend="onnxruntime", config="fp16")


def test_load_at_fp16_prints_nothing_unless_logging_is_configured(onnx_path, tmp_path) -> None:
    """Deriving the FP16 graph logs a note for dfseg-run; with no logging configured, logging's last-resort
    handler printed it on stderr from dfseg.load too (a real child process: pytest's own log capture
    would hide the difference)."""
    code = (
        "import logging, sys\nimport dfseg\n"
        "if sys.argv[1] == 'configured':\n    logging.basicConfig(format='LOG %(message)s')\n"
        "with dfseg.load({!r}, backend='onnxruntime', precision='fp16', threads=1) as model:\n"
        "    print(model.runner.config.precision)\n"
        "print(logging.getLogger('dfseg').handlers)\n"
    ).format(onnx_path)
    for how in ("silent", "configured"):  # the graph is derived once per cache: a folder of its own each
        cwd = tmp_path / how
        cwd.mkdir()
        proc = subprocess.run([sys.executable, "-c", code, how], capture_output=True, text=True, timeout=120,
                              cwd=str(cwd))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "fp16\n[]\n"  # and no handler left behind on the dfseg logger
        if how == "silent":
            assert proc.stderr == ""
        else:
            assert proc.stderr.startswith("LOG deriving the fp16 graph of "), proc.stderr


def test_threads_takes_a_numpy_integer_too(onnx_path) -> None:
    with dfseg.load(onnx_path, backend="onnxruntime", threads=np.int64(1)) as model:
        assert model(frame()).shape == (HEIGHT, WIDTH)


def test_an_empty_frame_is_a_user_error_naming_its_shape(onnx_path) -> None:
    with dfseg.load(onnx_path, backend="onnxruntime", threads=1) as model:
        for shape in ((0, 0, 3), (0, WIDTH, 3), (HEIGHT, 0, 3)):
            with pytest.raises(UserError, match=r"^frame: empty, shape \({}, {}, 3\)".format(*shape[:2])):
                model(np.zeros(shape, np.uint8))
        assert model(frame(height=1, width=1)).shape == (1, 1)  # one pixel is a frame


def test_overlay_refuses_a_class_map_of_another_size() -> None:
    with pytest.raises(UserError, match=r"^classmap: shape \(10, 10\) does not match the frame's \(48, 64\)"):
        api.overlay(frame(height=48, width=64), np.zeros((10, 10), np.uint8))
    with pytest.raises(UserError, match="^frame: expected a BGR uint8 array"):
        api.overlay(frame()[:, :, 0], np.zeros((HEIGHT, WIDTH), np.uint8))


def test_overlay_leaves_the_callers_frame_alone_and_takes_any_view() -> None:
    """overlay returns a new image: the frame passed in is not blended over (the README's example keeps
    using it), and a read-only frame or a reversed view (frame[:, ::-1]) works like its contiguous copy."""
    image = frame(3)
    before = image.copy()
    classes = np.random.RandomState(3).randint(0, 19, image.shape[:2]).astype(np.uint8)
    blend = api.overlay(image, classes)
    np.testing.assert_array_equal(image, before)
    assert blend is not image and not np.array_equal(blend, image)
    image.setflags(write=False)
    np.testing.assert_array_equal(api.overlay(image, classes), blend)
    flipped, flipped_classes = before[:, ::-1], classes[:, ::-1]
    np.testing.assert_array_equal(api.overlay(flipped, flipped_classes),
                                  api.overlay(np.ascontiguousarray(flipped), np.ascontiguousarray(flipped_classes)))


@pytest.mark.parametrize("classmap", [np.full((4, 4), 99.5), np.zeros((4, 4, 1), np.uint8), [[0, 1], [2, 3]],
                                      np.zeros((4, 4), bool)], ids=["float", "3d", "list", "bool"])
def test_colorize_and_overlay_want_integer_class_ids(classmap) -> None:
    with pytest.raises(UserError, match="^classmap: expected an integer array of class ids"):
        api.colorize(classmap)
    with pytest.raises(UserError, match="^classmap: expected an integer array of class ids"):
        api.overlay(frame(height=4, width=4), classmap)


def test_class_ids_outside_the_palette_are_a_user_error_and_wide_integers_work() -> None:
    for ids in (np.full((4, 4), 300, np.int32), np.full((4, 4), -1, np.int64)):
        with pytest.raises(UserError, match=r"^classmap: class ids must lie in 0\.\.255"):
            api.colorize(ids)
    ids = np.arange(16, dtype=np.int64).reshape(4, 4)
    np.testing.assert_array_equal(api.colorize(ids), api.colorize(ids.astype(np.uint8)))


@pytest.mark.parametrize("num_classes", [0, -1, 257, "19", 19.0, True])
def test_num_classes_of_the_colour_helpers_is_a_whole_number_from_one_to_256(num_classes) -> None:
    # -1 coloured only 18 classes (the class table sliced from its end), "19" was a TypeError inside it
    ids = np.zeros((4, 4), np.uint8)
    expected = r"^num_classes: expected a whole number from 1 to 256, got {}$".format(re.escape(repr(num_classes)))
    with pytest.raises(UserError, match=expected):
        api.colorize(ids, num_classes=num_classes)
    with pytest.raises(UserError, match=expected):
        api.overlay(frame(height=4, width=4), ids, num_classes=num_classes)
    ids[0, 0] = 18
    assert api.colorize(ids, num_classes=18)[0, 0].tolist() == [0, 0, 0]  # ids from num_classes on are black
    assert api.colorize(ids, num_classes=np.int64(19))[0, 0].tolist() == api.palette_bgr()[18].tolist()


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> str:
    return write_video(str(tmp_path_factory.mktemp("api-video") / "clip.avi"))


@pytest.mark.parametrize("latency", ["default", "low"])  # the low-latency policy never drops a file's frames
def test_stream_delivers_every_frame_of_a_file_in_order(onnx_path, video, tmp_path, latency) -> None:
    labels = tmp_path / "labels"
    with dfseg.load(onnx_path, backend="onnxruntime", threads=1) as model:
        with model.stream(video, outputs=[str(labels) + "/"], latency=latency) as stream:
            results = list(stream)
        assert [r.index for r in results] == list(range(FRAMES))
        for r in results:
            assert r.frame.shape == (HEIGHT, WIDTH, 3) and r.frame.dtype == np.uint8
            assert r.classmap.shape == r.frame.shape[:2] and r.classmap.dtype == np.uint8
            assert r.captured <= r.classified and r.latency_ms >= 0
            assert r.latency_ms == pytest.approx((r.classified - r.captured) * 1000.0)
            np.testing.assert_array_equal(r.classmap, model(r.frame))  # each class map belongs to its frame
            assert r.image.shape == r.frame.shape and not np.array_equal(r.image, r.frame)  # drawn on a copy
    assert sorted(p.name for p in labels.iterdir()) == ["{:06d}.png".format(i) for i in range(FRAMES)]
    latency = stream.latency()
    assert latency["classmap"]["frames"] == latency["output"]["frames"] == FRAMES
    assert 0 <= latency["classmap"]["p50"] <= latency["classmap"]["p95"] <= latency["classmap"]["p99"]
    summary = stream.summary
    assert (summary.frames_captured, summary.frames_written, summary.frames_dropped) == (FRAMES, FRAMES, 0)
    assert summary.latency_ms == latency


def test_a_live_source_drops_stale_frames_in_a_stream_too(onnx_path) -> None:
    """The stream runs dfseg-run's live policy: a camera faster than the consumer loses its oldest
    frames, never the newest (the consumer is slower by construction: its first write waits for the
    camera to finish)."""
    from test_live_pipeline import BurstCamera, RecordingSink

    camera = BurstCamera(300)
    with dfseg.load(onnx_path, backend="onnxruntime", threads=1) as model:
        with model.stream_to(camera, [RecordingSink(gate=camera.exhausted)], None, queue_size=1) as stream:
            indices = [result.index for result in stream]
    summary = stream.summary
    assert summary.frames_captured == 300 and summary.frames_written + summary.frames_dropped == 300
    assert 0 < len(indices) <= 12 and indices == sorted(set(indices)) and indices[-1] == 299


def test_leaving_the_loop_stops_the_threads_and_finalises_the_video(onnx_path, video, tmp_path) -> None:
    baseline = threading.active_count()
    out = tmp_path / "out.avi"
    with dfseg.load(onnx_path, backend="onnxruntime", threads=1) as model:
        for result in model.stream(video, outputs=[str(out)], max_frames=FRAMES):  # no reference kept: break closes it
            if result.index == 4:
                break
        assert threading.active_count() == baseline
        assert count_frames(str(out)) == (5, (HEIGHT, WIDTH, 3))  # every frame handed out was written, and playable
        assert not [p for p in tmp_path.iterdir() if "partial" in p.name]

        with model.stream(video) as stream:
            assert next(stream).image is None  # nothing drawn without outputs
        assert threading.active_count() == baseline
        assert stream.pipeline.source.capture is None  # released
        assert stream.summary.end_reason == "closed by the caller"

        with pytest.raises(RuntimeError, match="the caller's own error"):
            with model.stream(video) as stream:
                for _result in stream:
                    raise RuntimeError("the caller's own error")
        assert threading.active_count() == baseline and stream.pipeline.source.capture is None

        unused = model.stream(video)  # opened, never iterated: close() still releases the source
        unused.close()
        assert unused.pipeline.source.capture is None and threading.active_count() == baseline


def test_closing_the_model_ends_its_open_streams(onnx_path, video, tmp_path) -> None:
    """model.close() in the middle of a stream used to leave the pipeline running on a released runtime:
    the next frame raised RunnerError ("not active; use it as a context manager or call activate()")."""
    baseline = threading.active_count()
    out = tmp_path / "out.avi"
    model = dfseg.load(onnx_path, backend="onnxruntime", threads=1)
    stream = model.stream(video, outputs=[str(out)])
    unused = model.stream(video)  # opened, never iterated
    assert next(stream).index == 0
    model.close()
    assert list(stream) == [] and stream.summary.end_reason == "closed by the caller"
    assert stream.pipeline.source.capture is None and unused.pipeline.source.capture is None
    assert threading.active_count() == baseline and not model.runner.is_active
    assert count_frames(str(out))[0] >= 1  # finalised and playable
    with pytest.raises(UserError, match="already closed"):
        model.stream(video)


def test_stream_serves_the_status_page_and_prints_nothing(onnx_path, video, capfd) -> None:
    import json
    import urllib.request

    baseline = threading.active_count()
    with dfseg.load(onnx_path, backend="onnxruntime", threads=1) as model:
        with model.stream(video, outputs=["http://127.0.0.1:0"]) as stream:
            for result in stream:
                if result.index == 3:
                    port = stream.pipeline.sinks[0].port
                    with urllib.request.urlopen("http://127.0.0.1:{}/status.json".format(port), timeout=10) as response:
                        status = json.loads(response.read())
                    break
    assert status["state"] == "running" and status["frames"] == 4 and status["model"].startswith("tiny.onnx")
    assert status["latency"]["classmap"]["frames"] >= 4 and status["latency"]["output"]["frames"] == 4
    assert threading.active_count() == baseline  # the server's threads too
    assert capfd.readouterr() == ("", "")


STREAM_FOREVER = """
import sys
import dfseg

model_path, video, out = sys.argv[1:]
with dfseg.load(model_path, backend="onnxruntime", threads=1) as model:
    with model.stream(video, outputs=[out], loops=-1) as stream:
        for result in stream:
            pass
"""


def test_ctrl_c_in_a_stream_finalises_the_video_and_propagates(onnx_path, video, tmp_path) -> None:
    """A real SIGINT to a program looping over model.stream: KeyboardInterrupt reaches the program (the
    API does not swallow it), and the video written so far is playable."""
    import time

    from signals import like_a_terminal

    out, partial = tmp_path / "out.avi", tmp_path / ".out.partial.avi"
    proc = subprocess.Popen([sys.executable, "-c", STREAM_FOREVER, onnx_path, video, str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=like_a_terminal)
    deadline = time.time() + 60
    while not (partial.exists() and partial.stat().st_size > 2000) and time.time() < deadline:
        time.sleep(0.05)
    assert partial.exists(), "the stream never started writing"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode in (130, -signal.SIGINT), stderr.decode()
    assert stderr.decode().rstrip().endswith("KeyboardInterrupt") and stdout == b""  # nothing printed by dfseg
    frames, size = count_frames(str(out))
    assert frames > 0 and size == (HEIGHT, WIDTH, 3)
    assert not partial.exists()


def test_stream_bad_source_or_output_is_a_user_error_before_work(onnx_path, video, tmp_path) -> None:
    with dfseg.load(onnx_path, backend="onnxruntime", threads=1) as model:
        with pytest.raises(UserError, match="missing.mp4"):
            model.stream(str(tmp_path / "missing.mp4"))
        (tmp_path / "a-file").write_text("not a folder")
        with pytest.raises(UserError, match="a-file"):
            model.stream(video, outputs=[str(tmp_path / "a-file" / "out.avi")])
        with pytest.raises(UserError, match="is the input"):
            model.stream(video, outputs=[video])
        with pytest.raises(UserError, match="unknown output"):
            model.stream(video, outputs=["ftp://host/x"])
        with pytest.raises(UserError, match="latency: expected one of default, low, got 'lowest'"):
            model.stream(video, latency="lowest")
        # queue.Queue(0) would be unbounded: a live source's backlog without limit
        with pytest.raises(UserError, match=r"^queue_size: expected a whole number from 1 to {}, got 0$".format(
                MAX_QUEUE_SIZE)):
            model.stream(video, queue_size=0)
        with pytest.raises(UserError, match=r"^queue_size: expected a whole number from 1 to {}, got {}$".format(
                MAX_QUEUE_SIZE, 10 ** 12)):
            model.stream(video, queue_size=10 ** 12)
        for fps in (0, 0.001, float("inf"), 1e308, "30"):  # 0.001: OpenCV's writers cannot store it
            with pytest.raises(UserError, match=r"^output_fps: expected a finite number >= 0.01 and <= {}, got ".format(
                    MAX_OUTPUT_FPS)):
                model.stream(video, outputs=[str(tmp_path / "o.avi")], output_fps=fps)
        with pytest.raises(UserError, match=r"^loops: expected a whole number >= -1, got -7$"):
            model.stream(video, loops=-7)
        with pytest.raises(UserError, match=r"^loops: expected a whole number >= -1, got '2'$"):
            model.stream(video, loops="2")
        with pytest.raises(UserError, match=r"^max_frames: expected a whole number >= 1, got 0$"):
            model.stream(video, max_frames=0)
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]  # nothing written
    with pytest.raises(UserError, match="already closed"):
        model.stream(video)


def test_stream_option_types_are_one_line_user_errors(onnx_path, video, tmp_path) -> None:
    out = str(tmp_path / "labels") + "/"
    with dfseg.load(onnx_path, backend="onnxruntime", threads=1) as model:
        # a string was taken one letter per output ("output folder .: named twice")
        with pytest.raises(UserError, match="^{}$".format(re.escape(
                "outputs: expected a list of outputs, e.g. outputs=[{0!r}], got {0!r}".format(out)))):
            model.stream(video, outputs=out)
        for alpha in ("x", None, float("nan"), 2):  # "x" was a TypeError from render.py
            with pytest.raises(UserError, match=r"^alpha: expected a finite number >= 0.0 and <= 1.0, got "):
                model.stream(video, outputs=[out], alpha=alpha)
            with pytest.raises(UserError, match=r"^alpha: "):  # checked without outputs too
                model.stream(video, alpha=alpha)
        with pytest.raises(UserError, match=r"^--overlay 'blnd': choose one of blend, mask, side$"):
            model.stream(video, overlay="blnd")
        for fps in (0, "30", 2.5):  # ignored for a file, but passed on to a camera
            with pytest.raises(UserError, match=r"^camera_fps: expected a whole number >= 1, got "):
                model.stream(video, camera_fps=fps)
        # 5 was an AttributeError; "" silently left the view open to anyone, "abc" was a guessable token
        with pytest.raises(UserError, match=r"^http_token: expected a str, got int$"):
            model.stream(video, outputs=["http://127.0.0.1:0"], http_token=5)
        for token in ("", "abc", "has a space in it 0123456789"):
            with pytest.raises(UserError, match=r"^http_token: the HTTP token must be at least"):
                model.stream(video, outputs=["http://127.0.0.1:0"], http_token=token)
        with model.stream(video, outputs=None, max_frames=2) as stream:  # None: no outputs, as the default
            assert [r.index for r in stream] == [0, 1]
    assert list(tmp_path.iterdir()) == []


def test_a_stream_that_cannot_start_releases_its_source(onnx_path, video, monkeypatch) -> None:
    """The source is opened before the pipeline is built; when building fails, the file or camera is
    released again rather than held until the process ends."""
    from dfseg.live.sources import CaptureSource
    released = []
    real_close = CaptureSource.close

    def close(self) -> None:
        released.append(self.capture is not None)
        real_close(self)

    def broken_pipeline(*args, **kwargs):
        raise MemoryError("no memory for the queues")

    monkeypatch.setattr(CaptureSource, "close", close)
    monkeypatch.setattr(api, "Pipeline", broken_pipeline)
    with dfseg.load(onnx_path, backend="onnxruntime", threads=1) as model:
        with pytest.raises(MemoryError):
            model.stream(video)
    assert released == [True]  # closed once, while it still held an open capture


def test_stream_of_a_damaged_video_is_a_user_error_and_prints_nothing(onnx_path, video, tmp_path) -> None:
    """OpenCV's own AVI parser complains on the C stderr about a file cut inside its headers; a program
    using the API sees the UserError and nothing else (a real child process: the descriptor is the point)."""
    damaged = tmp_path / "cut.avi"
    with open(video, "rb") as handle:
        damaged.write_bytes(handle.read()[:600])
    code = (
        "import dfseg\nfrom dfseg.errors import UserError\n"
        "with dfseg.load({!r}, backend='onnxruntime', threads=1) as model:\n"
        "    try:\n        model.stream({!r})\n    except UserError as exc:\n        print(exc)\n"
    ).format(onnx_path, str(damaged))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}  # no log level set by anyone
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.startswith("{}: cannot open it".format(damaged)), proc.stdout


def test_import_dfseg_stays_cheap() -> None:
    code = "import sys, dfseg; assert callable(dfseg.load); print(sorted(m for m in ('torch', 'onnxruntime', 'cv2', 'dfseg.api') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, check=True).stdout.decode()
    assert out.strip() == "[]"


def readme_examples() -> list:
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_example_runs_as_printed(onnx_path, tmp_path) -> None:
    import shutil

    import cv2

    examples = readme_examples()
    assert len(examples) == 2, "README.md: the Python API section should have the frame and the stream example"
    shutil.copy(onnx_path, str(tmp_path / "df1-seg.onnx"))
    cv2.imwrite(str(tmp_path / "frame.png"), frame(2))
    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (WIDTH, HEIGHT))
    for i in range(FRAMES):
        writer.write(frame(i))
    writer.release()
    printed = []
    for example in examples:
        script = tmp_path / "example.py"
        script.write_text(example)
        done = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), capture_output=True)
        assert done.returncode == 0, done.stderr.decode()
        printed.append(done.stdout.decode().splitlines())
    image = cv2.imread(str(tmp_path / "overlay.png"))
    assert image is not None and image.shape == (HEIGHT, WIDTH, 3)
    assert len(printed[0]) == 1 and printed[0][0] in api.class_names()
    assert count_frames(str(tmp_path / "clip.mp4")) == (FRAMES, (HEIGHT, WIDTH, 3))  # the input as written
    assert count_frames(str(tmp_path / "annotated.mp4")) == (FRAMES, (HEIGHT, WIDTH, 3))
    assert [line.split(":")[0] for line in printed[1][:-1]] == ["frame {}".format(i) for i in range(FRAMES)]
    assert printed[1][-1].startswith("latency p50 ")


def test_a_model_name_with_weights_is_exported_and_runs_as_the_exported_file_does(tmp_path):
    """On the host, dfseg.load takes a name and weights as dfseg-run --model NAME --weights does."""
    import warnings

    import torch
    from safetensors.torch import save_file
    from test_live_pipeline import TINY_ARCH

    from dfseg.export import export_onnx
    from dfseg.models import create_model

    torch.manual_seed(3)
    network = create_model(TINY_ARCH)
    weights = str(tmp_path / "w.safetensors")
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, weights)
    reference = str(tmp_path / "ref.onnx")
    export_onnx(create_model(TINY_ARCH, pretrained_weights=weights), "{}x{}".format(WIDTH, HEIGHT), reference,
                output="classmap")
    frame = np.random.RandomState(1).randint(0, 255, (HEIGHT, WIDTH, 3)).astype(np.uint8)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        with dfseg.load(TINY_ARCH, weights=weights, size="{}x{}".format(WIDTH, HEIGHT)) as named:
            got = named(frame)
    assert not [w for w in said if "dfseg" in str(w.filename) or "weights" in str(w.message)]  # nothing from dfseg
    with dfseg.load(reference) as exported:
        assert np.array_equal(got, exported(frame))
    with pytest.warns(UserWarning, match="random weights"):
        dfseg.load(TINY_ARCH, size="{}x{}".format(WIDTH, HEIGHT)).close()
    with pytest.raises(UserError, match="nowhere.safetensors: file not found"):
        dfseg.load(TINY_ARCH, weights=str(tmp_path / "nowhere.safetensors"))
    with pytest.raises(UserError, match="is already a model file"):
        dfseg.load(reference, weights=weights)
