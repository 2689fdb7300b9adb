"""Timing subjects: an ONNX model on a backend, wrapped as a ``protocol.Subject``.

For ONNX Runtime the subject has two modes: ``e2e`` is ``session.run`` with numpy inputs and outputs
copied back (what an application sees), ``compute`` is ``run_with_iobinding`` with inputs and outputs
bound once up front (the graph's execution alone).  Latency tables and their validation use
``compute``.  Sessions get ``threads`` intra-op threads and no spinning, so idle sessions measured in
the same rotation do not steal cores.

trtexec times in its own process: its subject runs trtexec's timing loop once per round (warm-up,
the round's queries, spin waiting, data transfers on) and hands the per-query times trtexec measured to
the protocol -- ``e2e`` is trtexec's latency (H2D + GPU compute + D2H), ``compute`` its GPU compute time.

Device side: Python 3.6, no torch.
"""

import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ..backends import get_runner
from ..build_config import BuildConfig
from .protocol import COMPUTE, DEFAULT_PROTOCOL, E2E, Measurement, ModeFn, Protocol, Subject, measure

if TYPE_CHECKING:
    from ..backends.tensorrt.trtexec import TrtexecRunner
from .drift import REFERENCE_NAME


def onnx_subject(name: str, model: Union[str, bytes], backend: str = "onnxruntime", threads: Optional[int] = None,
                 providers: Optional[Sequence[str]] = None, seed: int = 0,
                 config: Optional[BuildConfig] = None) -> Subject:
    """Open ``model`` on ``backend``, built as ``config`` says, and return a subject that owns the session
    (``close()`` frees it); ``subject.artefact`` is the file that was built and is timed."""
    if backend == "onnxruntime":
        from ..backends.onnxrt import OnnxRuntimeRunner

        runner = OnnxRuntimeRunner(model, providers=providers, threads=threads, name=name, config=config)
    else:
        if not isinstance(model, str):
            raise ValueError("backend {} needs a model file".format(backend))
        runner = get_runner(backend, model, threads=threads, config=config)
    runner.activate()
    if backend == "trtexec":
        return _trtexec_subject(name, runner)
    try:
        feed = runner.make_feed(seed)
        runner.infer(feed)  # checks the feed once; timed calls skip the check
        modes: Dict[str, ModeFn] = {}

        def run_e2e() -> Optional[float]:
            runner.infer_impl(feed)
            runner.synchronize()
            return None

        modes[E2E] = run_e2e
        if backend == "onnxruntime":
            modes[COMPUTE] = _iobinding_run(runner.session, feed)
        elif runner.last_compute_ms is not None:
            def run_compute() -> Optional[float]:
                runner.infer_impl(feed)
                runner.synchronize()
                return runner.last_compute_ms

            modes[COMPUTE] = run_compute
    except BaseException:
        runner.deactivate()
        raise
    subject = Subject(name, modes, close=runner.deactivate)
    subject.artefact = runner.artefact
    return subject


def _trtexec_subject(name: str, runner: "TrtexecRunner") -> Subject:
    """A subject timed by trtexec itself: one trtexec process per round (``protocol.BlockFn``)."""

    def block(runs: int, warmup_s: float) -> Tuple[Dict[str, List[float]], int]:
        times, _ = runner.measure(warmup_s, runs)
        return {E2E: times.latency_ms, COMPUTE: times.compute_ms}, times.warmup_queries

    subject = Subject(name, {E2E: None, COMPUTE: None}, close=runner.deactivate, block=block)
    subject.artefact = runner.artefact
    return subject


def measure_models(named_paths: Iterable[Tuple[str, Union[str, bytes]]], protocol: Protocol = DEFAULT_PROTOCOL,
                   backend: str = "onnxruntime", threads: Optional[int] = None,
                   clock: Callable[[], float] = time.perf_counter,
                   wrap: Optional[Callable[[Subject], Subject]] = None,
                   during: Optional[Any] = None, config: Optional[BuildConfig] = None,
                   artefacts: Optional[Dict[str, Optional[str]]] = None,
                   reference: Optional[str] = None) -> Dict[str, Measurement]:
    """Open one subject per ``(name, model)``, measure them together (``protocol.measure``), close them all.

    ``named_paths`` is consumed lazily, one model opened after the other, and every subject opened so far
    is closed even when a later one fails to open or the measurement fails.  ``wrap`` (optional) replaces
    each subject as it is opened; ``during`` (optional) is a context manager entered around the
    measurement only (after every subject is open).  ``config`` builds every model (precision and the
    rest); ``artefacts`` (optional) receives each subject's built file by name.  ``reference`` (optional)
    is the drift reference's file: it is timed beside every subject, always in FP32 (its times are a
    measure of the machine's speed, not of a precision), and every result is also relative to it.
    """
    subjects: List[Subject] = []
    anchor: Optional[Subject] = None
    try:
        if reference is not None:
            base = BuildConfig() if config is None else BuildConfig(cache_dir=config.cache_dir,
                                                                   workspace_mb=config.workspace_mb,
                                                                   timing_cache=config.timing_cache)
            anchor = onnx_subject(REFERENCE_NAME, reference, backend, threads, config=base)
        for name, model in named_paths:
            subjects.append(onnx_subject(name, model, backend, threads, config=config))
            if artefacts is not None:
                artefacts[name] = subjects[-1].artefact
            if wrap is not None:
                subjects[-1] = wrap(subjects[-1])
        if during is None:
            return measure(subjects, protocol, clock=clock, reference=anchor)
        with during:
            return measure(subjects, protocol, clock=clock, reference=anchor)
    finally:
        for subject in subjects + ([anchor] if anchor is not None else []):
            subject.close()


def _iobinding_run(session, feed) -> ModeFn:
    """A callable running ``session`` with inputs and outputs bound once (no per-call copies)."""
    import onnxruntime

    outputs = session.run(None, feed)
    binding = session.io_binding()
    keep = []  # the OrtValues must outlive the binding
    for name, array in feed.items():
        value = onnxruntime.OrtValue.ortvalue_from_numpy(array)
        keep.append(value)
        binding.bind_ortvalue_input(name, value)
    for meta, array in zip(session.get_outputs(), outputs):
        value = onnxruntime.OrtValue.ortvalue_from_numpy(array.copy())
        keep.append(value)
        binding.bind_ortvalue_output(meta.name, value)

    def run() -> Optional[float]:
        session.run_with_iobinding(binding)
        return None

    run.keep = keep  # type: ignore[attr-defined]
    return run
