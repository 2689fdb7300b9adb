"""The one runner interface every inference backend implements (Polygraphy's BaseRunner style).

A runner is a context manager: ``activate()`` loads the model (lazily importing the backend's
library), ``infer(feed)`` maps input names to numpy arrays and returns output names to arrays, and
``deactivate()`` frees everything.  ``time_inference`` is the single timing hook: a time-based
warm-up, then timed runs with ``synchronize()`` before each clock read so asynchronous devices are
measured honestly.  Backends that can separate compute from copies (TensorRT with CUDA events) set
``last_compute_ms`` in ``infer_impl``; the timing hook then reports both.

Device side: Python 3.6, numpy only.
"""

import os
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from ..build_config import BuildConfig
from ..errors import UserError


class TensorMeta(NamedTuple):
    shape: Tuple[int, ...]
    dtype: np.dtype


class TimingResult(NamedTuple):
    """Per-run wall times (end to end: copies + compute) and, where the backend splits them, compute."""

    e2e_ms: List[float]
    compute_ms: Optional[List[float]]
    warmup_runs: int
    warmup_s: float


class RunnerError(RuntimeError):
    """A runner was used out of order (infer before activate, activate twice)."""


def existing_artefact(runner: object) -> Optional[str]:
    """``runner.artefact`` while that file exists, else None: a model name's export lives in a scratch
    folder that dfseg-run removes once the runtime has loaded it, and no report should name a deleted file."""
    artefact = getattr(runner, "artefact", None)
    return artefact if artefact and os.path.exists(artefact) else None


class BaseRunner:
    """Subclasses implement ``activate_impl``, ``infer_impl``, ``deactivate_impl`` and
    ``input_metadata_impl``; they may override ``synchronize`` and ``output_metadata``."""

    backend = "base"

    def __init__(self, name: Optional[str] = None) -> None:
        self.name = name or self.backend
        self.is_active = False
        self.last_compute_ms = None  # type: Optional[float]
        self.config = BuildConfig()  # what the model is built as; backends that build set their own
        self.built_model = None  # type: Optional[str]  the model file that is run (or an engine is built from)

    # -------------------------------------------------------------- lifecycle
    def activate(self) -> None:
        if self.is_active:
            raise RunnerError("{}: already active; deactivate() it first".format(self.name))
        self.activate_impl()
        self.is_active = True

    def deactivate(self) -> None:
        if not self.is_active:
            return
        try:
            self.deactivate_impl()
        finally:
            self.is_active = False

    def __enter__(self) -> "BaseRunner":
        self.activate()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.deactivate()

    # -------------------------------------------------------------- inference
    def input_metadata(self) -> Dict[str, TensorMeta]:
        self._require_active()
        return self.input_metadata_impl()

    def infer(self, feed: Dict[str, np.ndarray], check_inputs: bool = True) -> Dict[str, np.ndarray]:
        """Run once.  With ``check_inputs``, names, shapes and dtypes are checked against the model."""
        self._require_active()
        if check_inputs:
            self._check_feed(feed)
        self.last_compute_ms = None
        return self.infer_impl(feed)

    @property
    def artefact(self) -> Optional[str]:
        """The file that is actually run."""
        return self.built_model

    def synchronize(self) -> None:
        """Wait until queued device work is done.  Host-only backends have nothing to wait for."""

    def time_inference(
        self,
        feed: Dict[str, np.ndarray],
        warmup_s: float = 1.0,
        runs: int = 50,
        min_warmup_runs: int = 2,
        clock: Callable[[], float] = time.perf_counter,
    ) -> TimingResult:
        """Warm up for ``warmup_s`` seconds (at least ``min_warmup_runs`` runs), then time ``runs`` runs."""
        self._require_active()
        if runs < 1:
            raise UserError("runs: must be at least 1, got {}".format(runs))
        self._check_feed(feed)
        warmup_runs = 0
        warm_start = clock()
        while warmup_runs < min_warmup_runs or clock() - warm_start < warmup_s:
            self.infer_impl(feed)
            warmup_runs += 1
        self.synchronize()
        warmup_elapsed = clock() - warm_start
        e2e = []  # type: List[float]
        compute = []  # type: List[float]
        for _ in range(runs):
            self.last_compute_ms = None
            self.synchronize()
            start = clock()
            self.infer_impl(feed)
            self.synchronize()
            e2e.append((clock() - start) * 1000.0)
            if self.last_compute_ms is not None:
                compute.append(self.last_compute_ms)
        return TimingResult(e2e, compute if len(compute) == runs else None, warmup_runs, warmup_elapsed)

    # -------------------------------------------------------------- helpers
    def _require_active(self) -> None:
        if not self.is_active:
            raise RunnerError("{}: not active; use it as a context manager or call activate()".format(self.name))

    def _check_feed(self, feed: Dict[str, np.ndarray]) -> None:
        expected = self.input_metadata_impl()
        missing = sorted(set(expected) - set(feed))
        extra = sorted(set(feed) - set(expected))
        if missing or extra:
            raise UserError(
                "{}: inputs do not match the model: missing {}, unexpected {} (the model takes {})".format(
                    self.name, missing or "none", extra or "none", ", ".join(sorted(expected))
                )
            )
        for name, meta in expected.items():
            array = feed[name]
            shape_ok = len(array.shape) == len(meta.shape) and all(
                want is None or want < 0 or want == got for want, got in zip(meta.shape, array.shape)
            )
            if not shape_ok or array.dtype != meta.dtype:
                raise UserError(
                    "{}: input {!r} is {} {}, the model wants {} {}".format(
                        self.name, name, array.dtype, tuple(array.shape), meta.dtype, tuple(meta.shape)
                    )
                )

    def make_feed(self, seed: int = 0) -> Dict[str, np.ndarray]:
        """Random inputs matching ``input_metadata`` (dynamic dimensions become 1)."""
        rng = np.random.RandomState(seed)
        feed = {}
        for name, meta in self.input_metadata().items():
            shape = tuple(1 if (d is None or d < 0) else d for d in meta.shape)
            if np.issubdtype(meta.dtype, np.floating):
                feed[name] = rng.standard_normal(shape).astype(meta.dtype)
            else:
                feed[name] = rng.randint(0, 2, size=shape).astype(meta.dtype)
        return feed

    # -------------------------------------------------------------- to implement
    def activate_impl(self) -> None:
        raise NotImplementedError

    def deactivate_impl(self) -> None:
        raise NotImplementedError

    def infer_impl(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def input_metadata_impl(self) -> Dict[str, TensorMeta]:
        raise NotImplementedError


class ModelFileRunner(BaseRunner):
    """A runner of one model file built as a ``BuildConfig`` says (the TensorRT runners)."""

    def __init__(self, model_path: str, config: Optional[BuildConfig] = None, name: Optional[str] = None) -> None:
        if not os.path.isfile(model_path):
            raise UserError("{}: model file not found; export one with dfseg-export".format(model_path))
        super().__init__(name or os.path.basename(model_path))
        self.model_path = model_path
        self.config = (config or BuildConfig()).checked()
        self.precision = self.config.precision
        self.engine_path = None  # type: Optional[str]
        self.cache_hit = None  # type: Optional[bool]

    @property
    def artefact(self) -> Optional[str]:
        """The engine that runs (built from ``built_model``, or loaded as given)."""
        return self.engine_path or self.built_model
