"""End-to-end model benchmarks: every (model, size) as one record, measured with the rotating protocol.

Models of one input size are measured together (rotating in rounds), so their ratios come from the
same conditions; sizes are measured one after another.  Every model is also timed against the drift
reference (``dfseg.bench.drift``): ``relative`` is its time as a multiple of the reference's, which
compares across runs and machines' speed changes where the ms do not.  On a Jetson, rail power is sampled while each
model runs (W and mJ per frame); elsewhere those fields are None.

Device side: Python 3.6, no torch.
"""

import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..build_config import BuildConfig
from ..jetson import Reading, TelemetrySampler, total_power_w
from .model_files import ModelSource, ModelSpec
from .protocol import COMPUTE, E2E, Protocol, Subject, median, noise_warnings
from .report import progress_bar
from .subjects import measure_models


def _group_by_size(specs: Sequence[ModelSpec]) -> List[List[ModelSpec]]:
    groups: Dict[str, List[ModelSpec]] = {}
    for spec in specs:
        groups.setdefault(str(spec.size), []).append(spec)
    return list(groups.values())


class _PowerTagger:
    """Wraps subjects so that each telemetry reading's power is counted for the model being timed."""

    def __init__(self) -> None:
        self.current: Optional[str] = None
        self.samples: Dict[str, List[float]] = {}

    def wrap(self, subject: Subject) -> Subject:
        def tagged(fn):
            def run(*args):
                self.current = subject.name
                return fn(*args)
            return run
        return subject.wrapped(tagged)

    def record(self, reading: Reading) -> None:
        watts = total_power_w(reading.rails_w)
        if watts is not None:
            self.samples.setdefault(self.current or "", []).append(watts)

    def watts(self, name: str) -> Optional[float]:
        values = self.samples.get(name)
        return sum(values) / len(values) if values else None


def benchmark_models(
    specs: Sequence[ModelSpec],
    source: ModelSource,
    protocol: Protocol,
    backend: str,
    config: BuildConfig,
    threads: Optional[int] = None,
    clock: Callable[[], float] = time.perf_counter,
    show_progress: bool = True,
    into: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Measure every spec; returns {"records": [...], "warnings": [...]}, filled in as each size group is
    measured: ``into`` (when given) is that dict, so a caller that Ctrl-C or SIGTERM interrupts keeps
    the records measured so far."""
    result = into if into is not None else {}
    records: List[Dict[str, Any]] = result.setdefault("records", [])
    warnings: List[str] = result.setdefault("warnings", [])
    groups = _group_by_size(specs)
    bar = progress_bar(len(specs), show_progress, "benchmark", "model")
    try:
        for group in groups:
            tagger = _PowerTagger()
            sampler = TelemetrySampler(interval_s=0.1, on_reading=tagger.record, power_only=True)
            # Sessions are opened (and wrapped) first; the sampler runs around the measurement only.
            artefacts: Dict[str, Optional[str]] = {}
            results = measure_models(((spec.label, source.model_path(spec)) for spec in group), protocol, backend,
                                     threads, clock, wrap=tagger.wrap, during=sampler, config=config,
                                     artefacts=artefacts, reference=source.reference_path())
            warnings.extend(noise_warnings(results, protocol))
            for spec in group:
                result = results[spec.label]
                e2e = result.modes[E2E]
                compute = result.modes.get(COMPUTE)
                relative = result.relative or {}
                watts = tagger.watts(spec.label)
                records.append({
                    "model": spec.name,
                    "size": str(spec.size),
                    "arch": None if spec.arch is None else spec.arch.short(),
                    "backend": backend,
                    "precision": config.precision,
                    "artefact": artefacts.get(spec.label),
                    "threads": threads,
                    "median_ms": round(e2e.median_ms, 4),
                    "p90_ms": round(e2e.p90_ms, 4),
                    "p99_ms": round(e2e.p99_ms, 4),
                    "mean_ms": round(e2e.mean_ms, 4),
                    "std_ms": round(e2e.std_ms, 4),
                    "cv": round(e2e.cv, 4),
                    "fps": round(1000.0 / e2e.median_ms, 2) if e2e.median_ms > 0 else None,
                    "compute_median_ms": None if compute is None else round(compute.median_ms, 4),
                    "compute_p90_ms": None if compute is None else round(compute.p90_ms, 4),
                    "relative": round(relative[E2E].median_ms, 6) if E2E in relative else None,
                    "compute_relative": round(relative[COMPUTE].median_ms, 6) if COMPUTE in relative else None,
                    "reference_ms": round(median(result.reference_ms), 5) if result.reference_ms else None,
                    "runs": e2e.count,
                    "rounds": e2e.rounds,
                    "round_spread": round(e2e.round_spread, 4),
                    "remeasured": result.remeasured,
                    "noisy": result.noisy,
                    "watts": None if watts is None else round(watts, 3),
                    "mj_per_frame": None if watts is None else round(watts * e2e.median_ms, 3),
                })
            bar.update(len(group))
    finally:
        bar.close()
    return result
