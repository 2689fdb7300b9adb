"""Measuring a latency table: resumable, atomic, never half-written as complete.

Parts are measured in chunks; each chunk's sessions rotate in rounds (``protocol.measure``) together
with the per-call overhead probe, so every entry is ``part - overhead`` measured side by side, and
the table counts the overhead once per network (``meta.overhead_ms``).  Parts are timed in context,
between boundary stubs (``dfseg.bench.boundary``); the stubs' cost per tensor shape is measured
first (its probes rotated together with the overhead probe), recorded in ``meta.boundary`` and
taken off every entry.  Each finished chunk is appended to the journal (``OUT.journal.jsonl``, the
one ``dfseg.journal``: fsync'd, locked, a torn last line cut away) and the table is rewritten atomically with
``"complete": false``; an interrupted run started again with the same options skips what the journal
holds.  Only when every part is measured is the table written with ``"complete": true`` and the
journal removed.

Device side: Python 3.6, no torch.
"""

import itertools
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from ..build_config import BuildConfig
from ..errors import UserError
from ..journal import read_records
from ..latency.in_network import factor_class, fit_in_network, in_network_extra, sample_network
from ..latency.table import SCHEMA, LatencyTable
from ..parts import Part, network_parts
from .boundary import Shape, boundary_shapes, probe_name, shape_label, stub_ms
from .drift import REFERENCE_ID, reference_times
from .model_files import ModelSource, ModelSpec
from .protocol import CLOCKS, Measurement, Protocol, median, robust_spread
from .report import progress_bar
from .subjects import measure_models
from .table_journal import (
    BOUNDARY,
    IN_NETWORK,
    OVERHEAD,
    REFERENCE,
    TIMING,
    TableJournal,
    check_header,
    entry_from,
    journal_path,
    table_entry,
)
from .table_meta import in_network_meta, measurement_meta, reference_summary


def continued_table(out_path: str) -> Optional[LatencyTable]:
    """The table at ``out_path`` that a run into it continues, or None when there is none yet; a file there
    that is no table (of any completeness), or an unreadable journal beside it, is an error naming the
    way out, raised before any work starts."""
    read_records(journal_path(out_path))
    if not os.path.exists(out_path):
        return None
    try:
        return LatencyTable.load(out_path, allow_incomplete=True)
    except UserError as exc:
        raise UserError("{}; a table run continues only a table it wrote: write to another file, or delete it (an "
                        "interrupted run's journal {} keeps what it measured)".format(exc, journal_path(out_path))
                        ) from None


def journal_header(meta: Dict[str, Any], backend: str, threads: Optional[int], clock: str,
                   config: Optional[BuildConfig]) -> Dict[str, Any]:
    """The settings a table run's journal starts with: a run resumes only a journal of the same ones."""
    header = {"schema": SCHEMA, "backend": backend, "precision": meta.get("precision"), "threads": threads,
              "device": meta.get("device"), "clock": clock, "timing": TIMING}
    if config is not None and config.network_typing != "auto":  # a TensorRT 10 weak-typed table is another table
        header["network_typing"] = config.network_typing
    return header


def check_resumable(out_path: str, meta: Dict[str, Any], backend: str, threads: Optional[int], clock: str,
                    config: Optional[BuildConfig]) -> Optional[LatencyTable]:
    """What ``measure_table`` would refuse about the table at ``out_path`` and its journal, asked before any
    line is printed (``dfseg-bench --table``): a table or an unfinished journal of other settings.  Returns
    the table being continued (None for a new one)."""
    old = continued_table(out_path)
    if old is not None:
        check_continuable(out_path, old, meta)
    path = journal_path(out_path)
    check_header(path, read_records(path)[0], journal_header(meta, backend, threads, clock, config))
    return old


def check_continuable(out_path: str, old: LatencyTable, meta: Dict[str, Any]) -> None:
    """A UserError unless a run with ``meta`` (``table_meta.device_meta``) can add entries to ``old``, the
    table at ``out_path``: the same backend, precision and device, and entries measured as this dfseg
    measures them."""
    for field in ("backend", "precision", "device"):
        if old.meta.get(field) not in (None, meta.get(field)):
            raise UserError("{}: the existing table was measured with {} {!r}, not {!r}; write to another "
                            "file".format(out_path, field, old.meta.get(field), meta.get(field)))
    if old.entries and (BOUNDARY not in old.meta or REFERENCE not in old.meta
                        or (old.meta.get(REFERENCE) or {}).get("id") != REFERENCE_ID):
        raise UserError("{}: the existing table was measured by an older dfseg (without boundary stubs or "
                        "without the drift reference {!r}); its entries do not add up with new ones: write to "
                        "another file".format(out_path, REFERENCE_ID))


def measure_table(
    parts: Sequence[Part],
    source: ModelSource,
    out_path: str,
    meta: Dict[str, Any],
    protocol: Protocol,
    backend: str = "onnxruntime",
    threads: Optional[int] = 1,
    chunk_size: int = 8,
    show_progress: bool = True,
    clock: str = "wall",
    config: Optional[BuildConfig] = None,
    calibration: Sequence[ModelSpec] = (),
) -> LatencyTable:
    """Measure every part not yet in ``out_path`` (or its journal), calibrate the in-network factor on the
    ``calibration`` networks (``calibrate``), and write the complete table."""
    existing: Dict[str, Dict[str, Any]] = {}
    existing_meta: Dict[str, Any] = {}
    old = continued_table(out_path)
    if old is not None:
        check_continuable(out_path, old, meta)
        existing, existing_meta = old.entries, old.meta
    journal = TableJournal(journal_path(out_path), journal_header(meta, backend, threads, clock, config))
    try:
        return _measure_into(journal, parts, source, out_path, existing, existing_meta, meta, protocol, backend,
                             threads, chunk_size, show_progress, clock, config, calibration)
    finally:
        journal.close()


class _Run:
    """What one table run measures with, and what it has found so far (for the writes on the way)."""

    def __init__(self, source: ModelSource, protocol: Protocol, backend: str, threads: Optional[int], clock: str,
                 config: Optional[BuildConfig]) -> None:
        self.source = source
        self.protocol = protocol
        self.backend = backend
        self.threads = threads
        self.clock = CLOCKS[clock]
        self.config = config
        self.reference_spreads: List[float] = []  # the reference's robust spread within each measurement
        self.noise: List[float] = []

    def measure(self, named: Iterable[Tuple[str, str]]) -> Tuple[Dict[str, Measurement], float]:
        """Measure with the reference; returns the results and the reference's median time (ms) around them."""
        results = measure_models(named, self.protocol, self.backend, self.threads, self.clock, config=self.config,
                                 reference=self.source.reference_path())
        around = reference_times(results)
        self.reference_spreads.append(robust_spread(around))
        return results, median(around)


def _measure_into(journal: "TableJournal", parts: Sequence[Part], source: ModelSource, out_path: str,
                  existing: Dict[str, Dict[str, Any]], existing_meta: Dict[str, Any], meta: Dict[str, Any],
                  protocol: Protocol, backend: str, threads: Optional[int], chunk_size: int, show_progress: bool,
                  clock: str, config: Optional[BuildConfig], calibration: Sequence[ModelSpec]) -> LatencyTable:
    run = _Run(source, protocol, backend, threads, clock, config)
    done = set(existing) | set(journal.entries)
    todo = [part for part in parts if part.key not in done]
    known = dict((existing_meta.get(BOUNDARY) or {}).get("stub") or {})
    known.update(journal.boundaries)
    shapes = sorted({shape for part in todo for shape in boundary_shapes(part) if shape_label(shape) not in known})
    for i in range(0, len(shapes), chunk_size):
        journal.add_boundaries(*_measure_boundaries(shapes[i:i + chunk_size], run))
    known.update(journal.boundaries)
    bar = progress_bar(len(todo), show_progress, "latency table", "part")

    def write(complete: bool) -> LatencyTable:
        return _write(out_path, existing, journal, existing_meta, meta, run, known, complete=complete)

    try:
        chunks = [todo[i:i + chunk_size] for i in range(0, len(todo), chunk_size)]
        if not chunks and not journal.overheads and "overhead_ms" not in existing_meta:
            chunks = [[]]  # nothing left to measure, but the overhead is: measure it alone
        for chunk in chunks:
            entries, overhead, reference_ms = _measure_chunk(chunk, run, known)
            journal.add_chunk(overhead, reference_ms, entries)
            run.noise.extend(e["round_spread"] for e in entries.values())
            write(complete=False)
            bar.update(len(chunk))
        if calibration and journal.calibration is None:
            relative = dict(existing)
            relative.update(journal.entries)
            overhead = median(journal.overheads) if journal.overheads else existing_meta["overhead_relative"]
            journal.add_calibration(calibrate(calibration, run, relative, overhead, meta.get("precision")))
        table = write(complete=True)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, even during the last write: every journalled entry is kept
        if journal.entries:
            write(complete=False)
        raise
    finally:
        bar.close()
    journal.remove()
    return table


def _measure_boundaries(shapes: Sequence[Shape], run: _Run) -> Tuple[Dict[str, float], float]:
    """One boundary stub's relative cost for each shape, from its probe and the overhead probe measured side
    by side, and the reference's time around them."""
    named = itertools.chain([(OVERHEAD, run.source.overhead_path())],
                            ((probe_name(shape), run.source.boundary_path(shape)) for shape in shapes))
    results, reference_ms = run.measure(named)

    def relative(name: str) -> float:
        return results[name].preferred_relative().median_ms

    overhead = relative(OVERHEAD)
    stubs = {shape_label(shape): round(stub_ms(relative(probe_name(shape)), overhead), 7) for shape in shapes}
    return stubs, reference_ms


def _measure_chunk(chunk: Sequence[Part], run: _Run, stubs: Dict[str, float]):
    named = itertools.chain([(OVERHEAD, run.source.overhead_path())],
                            ((part.key, run.source.part_path(part)) for part in chunk))
    results, reference_ms = run.measure(named)
    overhead = results[OVERHEAD].preferred_relative().median_ms
    entries = {part.key: entry_from(results[part.key], overhead,
                                    boundary=sum(stubs[shape_label(s)] for s in boundary_shapes(part)))
               for part in chunk}
    return entries, overhead, reference_ms


def calibrate(specs: Sequence[ModelSpec], run: _Run, entries: Dict[str, Dict[str, Any]], overhead: float,
              precision: Optional[str] = None) -> Dict[str, Any]:
    """The in-network model (``dfseg.latency.in_network``) fitted on whole networks measured beside the
    reference, against the sums of their parts: ``specs`` are networks the table covers, never the
    validation's.  Returns the journal's calibration record."""
    usable = [s for s in specs if s.arch is not None
              and all(p.key in entries for p in network_parts(s.arch, s.size.height, s.size.width))]
    if not usable:
        raise UserError("the calibration networks have parts the table lacks; this is a bug in dfseg, please "
                        "report it")
    results, reference_ms = run.measure((spec.label, run.source.model_path(spec)) for spec in usable)
    relative = {key: entry["relative"] for key, entry in entries.items()}
    samples = [sample_network(spec.label, [p.key for p in network_parts(spec.arch, spec.size.height, spec.size.width)],
                              relative, results[spec.label].preferred_relative().median_ms - overhead, precision)
               for spec in usable]
    fit = fit_in_network(samples)
    networks = [{"label": s.label, "parts": s.parts, "measured_relative": s.measured,
                 "sum_relative": round(s.summed, 6), "bottleneck_share": s.bottleneck_share, "factor": s.factor,
                 "fitted_relative": round(fit.predict(s), 6)} for s in samples]
    out = {"factors": {k: round(v, 5) for k, v in fit.factors.items()}, "networks": networks,
           "reference_ms": reference_ms}
    if fit.cache is not None:
        out["cache"] = {"capacity_mb": fit.cache.capacity_mb, "relative_per_mb": round(fit.cache.relative_per_mb, 7)}
    return out


def _write(out_path: str, existing: Dict[str, Dict[str, Any]], journal: TableJournal, existing_meta: Dict[str, Any],
           meta: Dict[str, Any], run: _Run, stubs: Dict[str, float], complete: bool) -> LatencyTable:
    relative = dict(existing)
    relative.update(journal.entries)
    merged = dict(existing_meta)
    merged.update(meta)
    chunk_ms = list((existing_meta.get(REFERENCE) or {}).get("chunks_ms") or []) + journal.reference_ms
    if journal.calibration is not None:
        chunk_ms.append(journal.calibration["reference_ms"])
    reference = reference_summary(chunk_ms, run.reference_spreads)
    reference_ms = reference["median_ms"]
    in_network = journal.calibration if journal.calibration is not None else existing_meta.get(IN_NETWORK)
    factors = (in_network or {}).get("factors") or {}
    precision = merged.get("precision")
    entries = {key: table_entry(entry, reference_ms, float(factors.get(factor_class(key), 1.0)),
                                in_network_extra(key, (in_network or {}).get("cache"), precision))
               for key, entry in relative.items()}
    if in_network is not None:
        merged[IN_NETWORK] = in_network_meta(in_network)
    measurement_meta(merged, reference, journal.overheads, run.protocol, journal.header, stubs, run.noise)
    table = LatencyTable(entries, merged, path=out_path)
    table.save(out_path, complete=complete)
    return table
