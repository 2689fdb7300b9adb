"""dfseg-run: live semantic segmentation from a camera, stream, video or image folder.

Inputs and outputs are chosen by URI, as jetson-inference's segnet.py does::

    dfseg-run --model df1-seg-640x360.onnx csi://0 http://0.0.0.0:8080
    dfseg-run --model model.engine /dev/video0 display://0
    dfseg-run --model model.onnx clip.mp4 out.mp4
    dfseg-run --model model.onnx frames/ annotated/ --save-labels labels/
    dfseg-run --model df1-seg --weights df1-seg.safetensors --size 640x360 clip.mp4 out.mp4   (host: exports)

With no output, a window opens where there is a display, else the run is headless (``none``).
On the device this takes an .onnx file or a TensorRT engine and never imports torch; a model name
(with ``--weights``) is exported to ONNX first, which needs the host extras (torch).

Exit codes: 0 done, 1 a live source was lost for good, 2 bad input, 130 interrupted (Ctrl-C), 143
terminated (SIGTERM); outputs are finalised in every case.
"""

import argparse
import contextlib
import os
import sys
import tempfile
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from ..backends.base import existing_artefact
from ..errors import UserError
from ..sizes import Size, parse_size
from ..uri import local_inputs
from .common import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    ArgumentParser,
    add_build_options,
    build_config_from_args,
    check_build_files,
    number,
    run_command,
    whole_number,
)

if TYPE_CHECKING:
    from ..api import Model
    from ..live.sinks import Sink
    from ..live.sources import Source

EXIT_SOURCE_LOST = 1
UNTRAINED_WARNING = (
    "\n" + "!" * 78 + "\n"
    "!!  WARNING: {} runs with UNTRAINED (random) weights: the segmentation shown is\n"
    "!!  MEANINGLESS.  Pass --weights FILE (dfseg-convert the released .caffemodel, or train).\n"
    + "!" * 78 + "\n"
)


def build_parser() -> argparse.ArgumentParser:
    from ..backends.onnxrt import MAX_THREADS, MIN_THREADS
    from ..live.pipeline import DEFAULT, LATENCY_POLICIES, MAX_QUEUE_SIZE, MIN_QUEUE_SIZE
    from ..live.render import OVERLAY_MODES
    from ..live.scheduling import IDLE, POLICIES
    from ..live.sinks import MAX_OUTPUT_FPS, MIN_OUTPUT_FPS
    from ..live.sources import LOOP_FOREVER

    parser = ArgumentParser(
        prog="dfseg-run",
        description="Live semantic segmentation: INPUT (csi://0, /dev/video0, rtsp://..., video file, image "
        "folder) -> OUTPUTs (display://0, http://HOST:PORT, out.mp4, frames/, none).",
    )
    parser.add_argument("input", nargs="?", help="csi://N, /dev/videoN, v4l2://N, rtsp://..., a video file, an image or a folder")
    parser.add_argument("outputs", nargs="*", help="display://0, http://HOST:PORT, video file, folder/, none (default: "
                        "a window if there is a display, else none)")
    parser.add_argument("--camera", metavar="N", help="V4L2/USB camera number or csi://N (instead of INPUT)")
    parser.add_argument("--model", required=True,
                        help="ONNX file, TensorRT engine, or (host) a model name such as df1-seg to export")
    parser.add_argument("--weights", help="weights for a model name (safetensors from dfseg-convert or training)")
    parser.add_argument("--backend", default="auto", help="auto, onnxruntime or tensorrt (default: auto: tensorrt "
                        "for engines and where its Python module imports, else onnxruntime)")
    parser.add_argument("--providers", help="ONNX Runtime providers, comma separated (cpu, cuda, tensorrt)")
    parser.add_argument("--threads", type=whole_number(MIN_THREADS, MAX_THREADS),
                        help="ONNX Runtime intra-op threads ({} to {})".format(MIN_THREADS, MAX_THREADS))
    add_build_options(parser)
    parser.add_argument("--size", help="network input size WIDTHxHEIGHT or 360p/720p (exported models, dynamic ONNX)")
    parser.add_argument("--overlay", default="blend", choices=OVERLAY_MODES, help="blend, mask or side (default blend)")
    parser.add_argument("--alpha", type=number(0.0), default=0.5, help="blend opacity of the class colours (default 0.5)")
    parser.add_argument("--no-legend", action="store_true", help="do not draw the class legend")
    parser.add_argument("--no-status", action="store_true", help="do not draw the FPS status line")
    parser.add_argument("--save-labels", metavar="DIR", help="also write each class map (trainIds, PNG) to DIR, "
                        "for dfseg-eval --predictions")
    parser.add_argument("--max-frames", type=whole_number(1), help="stop after this many frames")
    parser.add_argument("--profile", action="store_true",
                        help="at the end, print where each frame's time went: every stage's thread CPU time, its "
                             "work time and its waits for input and for the next stage (also on the status page), and the "
                             "latency percentiles (p50, p95, p99, mean) from capture to class map and to the outputs")
    parser.add_argument("--input-loop", type=whole_number(LOOP_FOREVER), default=0, metavar="N",
                        help="replay a file or folder N more times (-1: forever), e.g. to demo a stream")
    parser.add_argument("--helper-priority", choices=POLICIES, default=IDLE,
                        help="how decoding, preprocessing and drawing share the CPU with inference: idle (Linux "
                             "SCHED_IDLE: only on cores that inference leaves free; moved to nice if they starve) "
                             "or nice (+5 nicer); default idle")
    parser.add_argument("--http-token-file", metavar="FILE",
                        help="require the token in FILE (its first line) from every viewer of an http:// output: "
                             "open http://HOST:PORT/?token=TOKEN; or set the token in DFSEG_HTTP_TOKEN")
    parser.add_argument("--latency", choices=LATENCY_POLICIES, default=DEFAULT,
                        help="low: for live sources, the network always takes the newest frame and nothing waits behind a "
                             "backlog (freshest class maps; files keep every frame either way). default: today's queues")
    parser.add_argument("--queue-size", type=whole_number(MIN_QUEUE_SIZE, MAX_QUEUE_SIZE), default=2,
                        help="frames buffered between stages ({} to {}, default 2)".format(MIN_QUEUE_SIZE, MAX_QUEUE_SIZE))
    parser.add_argument("--output-fps", type=number(MIN_OUTPUT_FPS, maximum=MAX_OUTPUT_FPS),
                        help="frame rate of video outputs, {:g} to {:g} (default: the input's, else 30)".format(
                            MIN_OUTPUT_FPS, MAX_OUTPUT_FPS))
    parser.add_argument("--camera-size", default="1280x720", help="capture size for cameras (default 1280x720)")
    parser.add_argument("--camera-fps", type=whole_number(1), default=30, help="capture frame rate for cameras (default 30)")
    parser.add_argument("--reconnect-attempts", type=whole_number(0), default=5, help="reopen a lost camera/stream this often")
    parser.add_argument("--reconnect-delay", type=number(0.0), default=1.0, help="seconds between reconnection attempts")
    return parser


def _main(argv: Optional[List[str]]) -> int:
    args = build_parser().parse_args(argv)
    from ..backends import refuse_trtexec

    refuse_trtexec(args.backend)
    args.build_config = build_config_from_args(args)
    input_uri = _input_uri(args)
    size = parse_size(args.size) if args.size else None

    from ..live.sinks import HttpSink
    from ..live.sources import open_source

    camera_size = parse_size(args.camera_size)
    source = open_source(
        input_uri, camera_size.width, camera_size.height, args.camera_fps, args.reconnect_attempts, args.reconnect_delay,
        args.input_loop,
    )
    running = {}  # type: Dict[str, Any]  # the runner and pipeline, for the status page once they exist
    sinks = _open_sinks(args, input_uri, source, running)
    source.open()  # an input that cannot be opened is an error before a model is exported or loaded
    try:
        # Ports bound, output files claimed, the display checked: each refusal comes before the banner and
        # before a model is exported or loaded (the pipeline's own open() of an open sink does nothing).
        # An http:// output's address line and open-server warning wait for the model: one that cannot be
        # loaded is then one error line too (its page, "loading" meanwhile, serves no frame before that).
        held = []  # type: List[str]
        for sink in sinks:
            if isinstance(sink, HttpSink):
                sink.log = sink.warn = held.append
            sink.open()
        with _load_model(args, size) as model:
            for line in held:
                print(line, file=sys.stderr, flush=True)
            running["runner"] = model.runner
            return _run(args, source, model, sinks, running)
    except BaseException:
        _release(source, sinks)  # what failed before the pipeline (which finalises them itself) ran
        raise


def _load_model(args: argparse.Namespace, size: Optional[Size]) -> "Model":
    """The active model.  Only a model name needs a scratch folder (its export), and it is gone again
    once the runtime has read the file, as in ``dfseg.load``: a run ended by SIGKILL (which no process
    can clean up after) or by the OOM killer leaves no /tmp/dfseg-run-* folder, unless mid-load."""
    from ..api import Model
    from ..backends import get_runner

    with contextlib.ExitStack() as stack:
        scratch = "" if os.path.isfile(args.model) else stack.enter_context(
            tempfile.TemporaryDirectory(prefix="dfseg-run-"))
        model_path, backend = _resolve_model(args, size, scratch)
        providers = args.providers.split(",") if args.providers else None
        runner = get_runner(backend, model_path, providers=providers, threads=args.threads, config=args.build_config)
        return Model(runner, size)


def _release(source: "Source", sinks: List["Sink"]) -> None:
    """Close every sink and the source after a failure; the failure is what gets reported, not a
    second error while closing (closing twice does nothing)."""
    for sink in reversed(sinks):  # last opened first: a folder two outputs made goes with the last one
        try:
            sink.close()
        except Exception:  # the first error is the one the user needs
            pass
    source.close()


def _open_sinks(args: argparse.Namespace, input_uri: str, source: "Source", running: Dict[str, Any]) -> List["Sink"]:
    """Every output, checked before any work: none may be the input, lie inside an input folder,
    be named twice, or sit where nothing can be written."""
    from ..fileio import check_outputs
    from ..live.sinks import (
        OUTPUT_FOLDERS,
        ImageFolderSink,
        check_frame_names,
        default_output,
        open_sink,
        output_paths,
    )

    def status() -> dict:
        from ..live.http import run_status

        return run_status(running.get("pipeline"), running.get("runner"), os.path.basename(args.model),
                          args.build_config.precision, source.description)

    outputs = args.outputs or [default_output()]
    fps = args.output_fps or 30.0
    token = _http_token(args)
    sinks = [open_sink(uri, fps, status, http_token=token) for uri in outputs]
    if args.save_labels:
        sinks.append(ImageFolderSink(args.save_labels, labels=True))
    inputs = local_inputs(input_uri) + [args.model, args.weights]
    check_build_files(args.build_config, inputs, outputs=output_paths(sinks))
    check_outputs(output_paths(sinks), inputs=inputs + [args.build_config.calibration],
                  folders=OUTPUT_FOLDERS, outside_inputs=True)
    check_frame_names(source, sinks)
    return sinks


def _http_token(args: argparse.Namespace) -> Optional[str]:
    """The HTTP view's token: the first line of --http-token-file, else $DFSEG_HTTP_TOKEN, else none."""
    from ..live.http import TOKEN_ENV, check_token

    if args.http_token_file:
        try:
            with open(args.http_token_file, encoding="utf-8") as handle:
                first = handle.readline()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError("--http-token-file {}: cannot read it ({}); give a text file whose first line is the "
                            "token".format(args.http_token_file, getattr(exc, "strerror", None) or exc)) from None
        return check_token(first, "--http-token-file " + args.http_token_file)
    if os.environ.get(TOKEN_ENV):
        return check_token(os.environ[TOKEN_ENV], TOKEN_ENV)
    return None


def _run(args: argparse.Namespace, source: "Source", model: "Model", sinks: List["Sink"], running: Dict[str, Any]) -> int:
    """The API's stream loop, with dfseg-run's signals (Ctrl-C and SIGTERM end it), messages and report."""
    from ..live.counters import format_fps, format_latency, format_profile
    from ..live.pipeline import INTERRUPTED, TERMINATED, follow_source_fps
    from ..live.render import Renderer

    runner = model.runner
    renderer = Renderer(args.overlay, args.alpha, legend=not args.no_legend)
    stream = model.stream_to(source, sinks, renderer, handle_signals=True, keep_frames=False,
                             queue_size=args.queue_size, max_frames=args.max_frames, status_line=not args.no_status,
                             helper_policy=args.helper_priority, latency=args.latency)
    running["pipeline"] = stream.pipeline
    if args.output_fps is None:
        follow_source_fps(source, sinks)
    built = existing_artefact(runner) or args.model  # not the deleted scratch export
    print("dfseg-run: {} -> {} ({} on {}, {}: {})".format(
        source.description, ", ".join(s.description for s in sinks), os.path.basename(args.model), runner.backend,
        runner.config.precision, built), file=sys.stderr, flush=True)
    with stream:
        for _ in stream:
            pass
    result = stream.pipeline.result()
    print(
        "dfseg-run: {} frames in {:.1f} s: pipeline {:.1f} FPS, network {} FPS, {} dropped ({})".format(
            result.frames_written, result.elapsed_s, result.pipeline_fps,
            format_fps(result.network_fps),
            result.frames_dropped, result.end_reason,
        ),
        file=sys.stderr, flush=True,
    )
    if args.profile:
        print(format_profile(result.profile, result.process_cpu_ms_per_frame, result.helper_policy), file=sys.stderr,
              flush=True)
        if any(result.latency_ms.values()):
            print(format_latency(result.latency_ms), file=sys.stderr, flush=True)
    if result.end_reason == INTERRUPTED:
        return EXIT_INTERRUPTED
    if result.end_reason == TERMINATED:
        return EXIT_TERMINATED
    if source.live and "disconnected" in result.end_reason:
        return EXIT_SOURCE_LOST
    return 0


def _input_uri(args: argparse.Namespace) -> str:
    if args.camera is not None and args.input is not None:
        # With --camera every positional is an output.
        args.outputs = [args.input] + list(args.outputs)
    if args.camera is not None:
        camera = str(args.camera)
        return camera if "://" in camera or camera.startswith("/dev/") else "v4l2://" + camera
    if args.input is None:
        raise UserError("no input: give INPUT (csi://0, /dev/video0, clip.mp4, frames/) or --camera N")
    return args.input


def _resolve_model(args: argparse.Namespace, size: Optional[Size], scratch: str) -> Tuple[str, str]:
    """(model file, backend): the API's ``model_file`` (a name is exported on the host), loudly."""
    from ..api import model_file

    def log(message: str) -> None:
        print(message if message.startswith("\n") else "dfseg-run: " + message, file=sys.stderr, flush=True)

    path = model_file(args.model, args.weights, size, scratch, log, untrained=UNTRAINED_WARNING)
    return path, _auto(args.backend, path)


def _auto(backend: str, model_path: str) -> str:
    from ..backends import resolve_backend

    choice = resolve_backend(backend, model_path)
    if choice.note:
        print("dfseg-run: {}".format(choice.note), file=sys.stderr, flush=True)
    return choice.backend


def main(argv: Optional[List[str]] = None) -> int:
    return run_command("dfseg-run", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
