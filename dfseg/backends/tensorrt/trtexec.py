"""The trtexec backend: builds and times TensorRT engines by driving NVIDIA's ``trtexec`` binary, for
machines where the TensorRT Python bindings do not match the Python in use (JetPack 4.6 ships them
for its system Python 3.6 only).

Commands are argv lists (never a shell).  Results come from trtexec's own files:
``--exportTimes`` (per-inference trace), ``--exportProfile`` (per-layer times) and
``--exportOutput`` (output values), plus its console summary.  What each release accepts and writes
differs (NVIDIA's ``samples/common/sampleOptions.cpp``, ``sampleReporting.cpp`` and
``sampleInference.cpp`` at each tag; ``tests/fakes/trtexec/facts.py`` cites each fact; the parsers
are in ``trtexec_output``):

* build without inference: ``--buildOnly`` up to 8.5, ``--skipInference`` from 8.6 (8.6 takes both,
  10.x only the new name); an option a release does not know fails the whole run.
* binding lines: ``Created input binding for X with dimensions D`` (8.2-8.5), ``Input binding for X
  with dimensions D is created.`` (8.6, 10.3), ``... with dimensions D and type T is created.``
  (10.16, 11).
* exportTimes: 8.2 and 8.4 write every query, warm-up ones included (8.2 with ``endToEndMs``); from
  8.5 only the timed queries.  Which it is comes from the release, not from the fields.
* exportProfile: 8.2 has ``timeMs``/``averageMs``/``percentage`` per layer; from 8.4 ``medianMs`` too.
* console: up to 8.4 one ``percentile(99%)`` per metric (8.2 also an ``End-to-End Host Latency``
  line); from 8.5 ``percentile(90%)``, ``(95%)`` and ``(99%)``.
* 11.0 turns data transfers off and spin waiting and CUDA graphs on by default: the timing command
  asks for transfers (``--includeDataTransfers``) and no graphs (``--noCudaGraph``), so its figures
  mean what they mean on every other release.

trtexec is a benchmarking tool: each run is a new process that loads the engine and times a loop of
queries on random inputs.  dfseg uses it to build engines and to time them (``measure``: one process
per timed block); ``infer`` works but costs a process and a text dump per call, so nothing that runs
frames (``dfseg-run``, ``dfseg-eval``) uses it.

Device side: Python 3.6, no torch.
"""

import os
import re
import shutil
import subprocess
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...build_config import BuildConfig
from ...errors import UserError
from ...fileio import sha256_file
from ..base import ModelFileRunner, TensorMeta, TimingResult
from .builder import check_engine_precision, checked_source
from .compat import supported, typing_for
from .engines import EngineCache, EngineSpec, device_label
from .trtexec_output import (
    TRT_DTYPES,
    LayerProfile,
    TraceTimes,
    parse_console,
    parse_output,
    parse_profile,
    parse_times,
    trace_has_warmups,
    version_from_tag,
)
from .trtexec_path import DEFAULT_LOCATIONS, locate_trtexec


class TrtexecError(RuntimeError):
    """trtexec ran but failed; the message carries the tail of its output."""


# ---------------------------------------------------------------------------------------- discovery
def find_trtexec(explicit: Optional[str] = None) -> str:
    """Path of the trtexec binary: ``explicit``, $TRTEXEC, PATH, then JetPack's install location."""
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise UserError("trtexec {!r}: not an executable file; pass the path of TensorRT's trtexec".format(explicit))
    found = locate_trtexec()
    if found:
        return found
    raise UserError("trtexec not found on PATH or in {}: install TensorRT (JetPack ships it in "
                    "/usr/src/tensorrt/bin) or set TRTEXEC=/path/to/trtexec".format(", ".join(DEFAULT_LOCATIONS)))


# ---------------------------------------------------------------------------------------- commands
def build_command(trtexec: str, onnx: str, save_engine: str, config: BuildConfig,
                  version: Tuple[int, int] = (10, 0), timing_cache: Optional[str] = None) -> List[str]:
    """argv that builds ``onnx`` into ``save_engine`` without running inference, with only the flags
    trtexec ``version`` has.  On 11.x (and on 10.x unless ``config.network_typing`` is weak) ``onnx`` must
    already be the FP16/Q-DQ graph (``dfseg.precision.graph_for``): the precision is in the graph."""
    config = config.checked()
    # --skipInference first exists in 8.6; 8.2-8.5 know only --buildOnly, which 10.x no longer accepts.
    argv = [trtexec, "--onnx={}".format(onnx), "--saveEngine={}".format(save_engine),
            "--skipInference" if version >= (8, 6) else "--buildOnly", "--profilingVerbosity=detailed"]
    if version >= (8, 4):
        argv.append("--memPoolSize=workspace:{}".format(int(config.workspace_mb)))
    else:
        argv.append("--workspace={}".format(int(config.workspace_mb)))
    strong = graph_typed(version, config)
    if strong:
        if version < (11, 0):
            argv.append("--stronglyTyped")  # 11.x: always on, and the flag is gone
    elif config.precision == "fp16":
        argv.append("--fp16")
    elif config.precision == "int8":
        if not config.calibration_cache:
            raise UserError("int8 with trtexec {}.{} and weak typing needs a calibration cache (--calibration-cache "
                            "FILE); make one with the tensorrt backend or choose fp16".format(*version))
        # --fp16 too: layers without INT8 kernels fall back to FP16 rather than FP32.
        argv += ["--int8", "--fp16", "--calib={}".format(config.calibration_cache)]
    if config.fp32_layers and not strong and config.precision != "fp32":
        prefixes = [name for name in config.fp32_layers if name.endswith("/")]
        if prefixes:
            raise UserError("--fp32-layers {}: trtexec matches exact layer names, not prefixes; give the node names "
                            "(or use the tensorrt backend)".format(",".join(prefixes)))
        if version < (8, 4):
            raise UserError("keeping layers in FP32 needs trtexec 8.4+ (--layerPrecisions); this is {}.{}: use "
                            "the tensorrt backend".format(*version))
        argv += ["--precisionConstraints=obey",
                 "--layerPrecisions={}".format(",".join("{}:fp32".format(name) for name in config.fp32_layers))]
    if timing_cache:
        argv.append("--timingCacheFile={}".format(timing_cache))
    return argv


def graph_typed(version: Tuple[int, int], config: BuildConfig) -> bool:
    """Whether trtexec ``version`` builds ``config``'s precision from the graph (``compat.typing_for``)."""
    return typing_for(supported(version), config.precision, config.network_typing)


def time_command(trtexec: str, engine: str, warmup_ms: int, iterations: int, export_times: str,
                 export_profile: Optional[str] = None, version: Tuple[int, int] = (10, 0)) -> List[str]:
    """argv that times ``engine``: a fixed number of queries after a time-based warm-up, with the data
    transfers, spin waiting and no CUDA graphs on every release (11.0 changed all three defaults)."""
    argv = [trtexec, "--loadEngine={}".format(engine), "--warmUp={}".format(int(warmup_ms)),
            "--iterations={}".format(int(iterations)), "--duration=0", "--exportTimes={}".format(export_times)]
    if version >= (11, 0):
        # Spin waiting is the default; --useSpinWait and --separateProfileRun are deprecated no-ops.
        argv += ["--includeDataTransfers", "--noCudaGraph"]
    else:
        argv.append("--useSpinWait")  # transfers on and CUDA graphs off are these releases' defaults
    if export_profile:
        argv.append("--exportProfile={}".format(export_profile))
        if version < (11, 0):
            # A separate profiling pass: the per-layer profiler's synchronisation does not slow the timed run.
            argv.append("--separateProfileRun")
    return argv


def probe_command(trtexec: str, engine: str) -> List[str]:
    """argv that loads ``engine`` and runs one query: its console names every binding."""
    return [trtexec, "--loadEngine={}".format(engine), "--warmUp=0", "--iterations=1", "--duration=0"]


def infer_command(trtexec: str, engine: str, inputs: Dict[str, str], export_output: str) -> List[str]:
    argv = probe_command(trtexec, engine) + ["--exportOutput={}".format(export_output)]
    if inputs:
        argv.append("--loadInputs={}".format(",".join("{}:{}".format(n, p) for n, p in sorted(inputs.items()))))
    return argv


def run_trtexec(argv: Sequence[str], timeout_s: float = 1800.0) -> str:
    """Run trtexec; its console output, or TrtexecError with the last lines when it fails."""
    try:
        done = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s,
                              universal_newlines=True)  # noqa: UP021 -- text= needs Python 3.7
    except subprocess.TimeoutExpired:
        raise TrtexecError("trtexec did not finish within {:.0f} s: {}".format(timeout_s, " ".join(argv))) from None
    except OSError as exc:
        raise TrtexecError("cannot run {}: {}".format(argv[0], exc.strerror)) from None
    if done.returncode != 0 or "&&&& FAILED" in done.stdout:
        tail = "\n".join(done.stdout.strip().splitlines()[-15:])
        raise TrtexecError("trtexec failed (exit {}): {}\n{}".format(done.returncode, " ".join(argv), tail))
    return done.stdout


def trtexec_version(trtexec: str) -> Tuple[int, int, str]:
    """(major, minor, 'M.m.p') from the banner trtexec prints for any invocation (``--help``)."""
    try:
        done = subprocess.run([trtexec, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60,
                              universal_newlines=True)  # noqa: UP021 -- text= needs Python 3.7
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TrtexecError("cannot run {} --help: {}".format(trtexec, exc)) from None
    tag = re.search(r"\[TensorRT v(\d+)\]", done.stdout)
    if not tag:
        raise TrtexecError("{}: no '[TensorRT vNNNN]' banner in its --help output; is it trtexec?".format(trtexec))
    full = version_from_tag(tag.group(1))
    major, minor = full.split(".")[:2]
    return int(major), int(minor), full


# ---------------------------------------------------------------------------------------- runner
class TrtexecRunner(ModelFileRunner):
    """An ONNX model (built once into the engine cache) or a ready ``.engine``, run through trtexec.

    ``measure`` (and ``time_inference``) runs trtexec's own timing loop in one process and reads
    ``--exportTimes`` (end to end = H2D + compute + D2H, compute = GPU compute time), so neither
    process start-up nor host-side Python overhead is part of the numbers.  ``infer`` writes the
    inputs as raw files and reads ``--exportOutput``: one process per call, for checks, not frames.
    """

    backend = "trtexec"

    def __init__(self, model_path: str, config: Optional[BuildConfig] = None, trtexec: Optional[str] = None,
                 device: Optional[str] = None, timeout_s: float = 1800.0, name: Optional[str] = None) -> None:
        super().__init__(model_path, config, name)
        self.explicit_trtexec = trtexec
        self.cache = EngineCache(self.config.cache_dir)
        self.device = device
        self.timeout_s = timeout_s
        self.trtexec = None  # type: Optional[str]
        self.version = None  # type: Optional[str]
        self.version_key = (0, 0)  # (major, minor) of the trtexec in use
        self.console = None  # type: Optional[ConsoleSummary]
        self._inputs = {}  # type: Dict[str, TensorMeta]
        self._outputs = {}  # type: Dict[str, TensorMeta]

    def activate_impl(self) -> None:
        self.trtexec = find_trtexec(self.explicit_trtexec)
        major, minor, self.version = trtexec_version(self.trtexec)
        supported((major, minor))
        self.version_key = (major, minor)
        if self.model_path.endswith((".engine", ".plan", ".trt")):
            check_engine_precision(self.model_path, self.config)
            self.engine_path, self.cache_hit = self.model_path, True
        else:
            self.engine_path = self._build_cached((major, minor))
        # One query to learn the I/O bindings (and check the engine loads on this GPU); no outputs are
        # exported, which for a segmentation network would be millions of numbers as text.
        self.console = parse_console(run_trtexec(probe_command(self.trtexec, self.engine_path), self.timeout_s))
        if not any(binding.is_input for binding in self.console.bindings.values()):
            raise TrtexecError("{}: trtexec {} printed no input binding line; cannot learn the engine's inputs".format(
                self.engine_path, self.version))
        for name, binding in self.console.bindings.items():
            # trtexec before 10.16 does not print tensor types: float32, which dfseg's inputs always are.
            dtype = np.dtype(TRT_DTYPES.get(binding.dtype or "fp32", np.float32))
            (self._inputs if binding.is_input else self._outputs)[name] = TensorMeta(binding.shape, dtype)

    def _build_cached(self, version: Tuple[int, int]) -> str:
        config = self.config
        self.built_model = checked_source(self.model_path, config, graph_typed(version, config))
        spec = EngineSpec.create(
            self.built_model, {}, config.precision, self.version or "", self.device or _nvidia_device(),
            builder_flags={"builder": "trtexec", "workspace_mb": config.workspace_mb,
                           "fp32_layers": list(config.fp32_layers), "strongly_typed": graph_typed(version, config),
                           "calibration_cache": _hash_or_none(config.calibration_cache)
                           if config.precision == "int8" else None})
        timing_cache = config.timing_cache or self.cache.timing_cache_path(spec.tensorrt_version, spec.device)

        def build() -> bytes:
            os.makedirs(self.cache.root, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="dfseg-trtexec-") as work:
                target = os.path.join(work, "model.engine")
                run_trtexec(build_command(self.trtexec or "trtexec", self.built_model or self.model_path, target,
                                          config, version, timing_cache), self.timeout_s)
                with open(target, "rb") as handle:
                    return handle.read()

        _, self.cache_hit = self.cache.get_or_build(spec, build, extra={"builder": "trtexec",
                                                                        "build_config": config.to_dict()})
        return self.cache.engine_path(spec)

    def deactivate_impl(self) -> None:
        self.console = None

    def input_metadata_impl(self) -> Dict[str, TensorMeta]:
        return self._inputs

    def output_metadata(self) -> Dict[str, TensorMeta]:
        self._require_active()
        return dict(self._outputs)

    def infer_impl(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        with tempfile.TemporaryDirectory(prefix="dfseg-trtexec-") as work:
            paths = {}
            for name, array in feed.items():
                paths[name] = os.path.join(work, "input-{}.bin".format(len(paths)))
                np.ascontiguousarray(array, dtype=self._inputs[name].dtype).tofile(paths[name])
            out = os.path.join(work, "out.json")
            run_trtexec(infer_command(self.trtexec or "trtexec", self.engine_path or "", paths, out), self.timeout_s)
            # One cold query in a fresh process: its time says nothing about the engine's speed, so
            # last_compute_ms stays None (``measure`` times it).
            return parse_output(out, {name: meta.dtype for name, meta in self._outputs.items()})

    def time_inference(self, feed: Dict[str, np.ndarray], warmup_s: float = 1.0, runs: int = 50,
                       min_warmup_runs: int = 2, clock: Any = None) -> TimingResult:
        """trtexec's timing loop on random inputs (trtexec's own; ``feed`` only fixes the shapes)."""
        self._require_active()
        if runs < 1:
            raise UserError("runs: must be at least 1, got {}".format(runs))
        self._check_feed(feed)
        times, _ = self.measure(warmup_s, runs)
        return TimingResult(times.latency_ms, times.compute_ms, times.warmup_queries, warmup_s)

    def measure(self, warmup_s: float = 1.0, runs: int = 50,
                profile: bool = False) -> Tuple[TraceTimes, Optional[LayerProfile]]:
        """Trace of about ``runs`` timed queries (trtexec may time one more or fewer: its warm-up ends on a
        query boundary) from one trtexec process and, with ``profile``, a per-layer profile."""
        self._require_active()
        warmup_ms = int(round(warmup_s * 1000))
        with tempfile.TemporaryDirectory(prefix="dfseg-trtexec-") as work:
            times_path = os.path.join(work, "times.json")
            profile_path = os.path.join(work, "profile.json") if profile else None
            text = run_trtexec(time_command(self.trtexec or "trtexec", self.engine_path or "", warmup_ms, runs,
                                            times_path, profile_path, self.version_key), self.timeout_s)
            times = parse_times(times_path, warmup_ms=float(warmup_ms), has_warmups=trace_has_warmups(self.version_key))
            layers = parse_profile(profile_path) if profile_path else None
        self.console = parse_console(text)
        if self.console.timed_queries is not None and self.console.timed_queries != len(times.compute_ms):
            raise TrtexecError("trtexec {} timed {} queries but its --exportTimes file holds {} after the warm-up: "
                               "its trace format is not the one dfseg reads".format(
                                   self.version, self.console.timed_queries, len(times.compute_ms)))
        if self.console.warmup_queries is not None:
            times = times._replace(warmup_queries=self.console.warmup_queries)
        return times, layers


def _hash_or_none(path: Optional[str]) -> Optional[str]:
    return sha256_file(path) if path else None


def _nvidia_device() -> str:
    """GPU name and compute capability (nvidia-smi), else the Jetson board, else 'unknown-gpu'."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            done = subprocess.run([smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=30,
                                  universal_newlines=True)  # noqa: UP021 -- text= needs Python 3.7
            first = done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else ""
            if first:
                name, _, capability = first.partition(",")
                major, _, minor = capability.strip().partition(".")
                return device_label(name, int(major), int(minor or 0))
        except (OSError, ValueError, subprocess.TimeoutExpired):  # ValueError: "[N/A]" on old drivers
            pass
    from ...jetson import board_model

    return board_model() or "unknown-gpu"
