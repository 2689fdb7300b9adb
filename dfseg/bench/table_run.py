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
import math
import os
from typing import Any, Dict, List, Optional, Sequence

from ..build_config import BuildConfig
from ..errors import UserError
from ..journal import Journal
from ..latency.table import SCHEMA, LatencyTable
from ..parts import Part
from .boundary import Shape, boundary_shapes, probe_name, shape_label, stub_ms
from .protocol import CLOCKS, COMPUTE, Measurement, Protocol, median
from .report import progress_bar
from .sources import ModelSource
from .subjects import measure_models

OVERHEAD = "overhead"
BOUNDARY = "boundary"
TIMING = "between boundary stubs"  # journal header: journals of bare parts (older dfseg) are not resumed


def journal_path(table_path: str) -> str:
    return table_path + ".journal.jsonl"


class TableJournal:
    """A table run's progress in the one journal (``dfseg.journal``): a header with the settings,
    then the measured boundary stubs, and per chunk its overhead and entries.  Every record is
    checked on replay: one of the wrong shape (an edited or foreign file) is an error naming it."""

    def __init__(self, path: str, header: Dict[str, Any]) -> None:
        self.path = path
        self.header = header
        self.entries: Dict[str, Dict[str, Any]] = {}
        self.overheads: List[float] = []
        self.boundaries: Dict[str, float] = {}  # shape label -> one boundary stub (ms)
        self._journal = Journal(path)
        try:
            records = self._journal.open()
            if records:
                self._replay(records)
            else:
                self._journal.append(dict(header, type="header"))
        except BaseException:
            self._journal.close()
            raise

    def _replay(self, records: List[Dict[str, Any]]) -> None:
        if records[0].get("type") != "header":
            raise UserError("{}: not a dfseg table journal; delete it to start the table over".format(self.path))
        old = {k: v for k, v in records[0].items() if k != "type"}
        differing = sorted(k for k in self.header if old.get(k) != self.header[k])
        if differing:
            raise UserError("{}: an unfinished table was started with different settings ({}: {} then, {} now); "
                            "use the same options to resume, or delete the journal to start over".format(
                                self.path, ", ".join(differing), [old.get(k) for k in differing],
                                [self.header[k] for k in differing]))
        for position, record in enumerate(records[1:], start=2):
            kind = record.get("type")
            if kind == "entry":
                key, entry = record.get("key"), record.get("entry")
                if not isinstance(key, str) or not isinstance(entry, dict):
                    self._bad(position, 'an entry needs "key" (text) and "entry" (an object)')
                for field in ENTRY_NUMBERS:
                    if not _is_time(entry.get(field)):
                        self._bad(position, "entry {} has {} {!r}, not a time in ms".format(key, field, entry.get(field)))
                self.entries[key] = entry
            elif kind == OVERHEAD:
                if not _is_time(record.get("median_ms")):
                    self._bad(position, "overhead {!r} is not a time in ms".format(record.get("median_ms")))
                self.overheads.append(float(record["median_ms"]))
            elif kind == BOUNDARY:
                if not isinstance(record.get("shape"), str) or not _is_time(record.get("stub_ms")):
                    self._bad(position, 'a boundary needs "shape" (text) and "stub_ms" (a time in ms)')
                self.boundaries[record["shape"]] = float(record["stub_ms"])
            else:
                self._bad(position, "unknown record type {!r}".format(kind))

    def _bad(self, position: int, problem: str) -> None:
        raise UserError("{}: record {}: {}; the journal was edited or is not dfseg's: delete it to measure those "
                        "parts again".format(self.path, position, problem))

    def add_chunk(self, overhead_ms: float, entries: Dict[str, Dict[str, Any]]) -> None:
        records = [{"type": OVERHEAD, "median_ms": overhead_ms}]
        records += [{"type": "entry", "key": key, "entry": entry} for key, entry in sorted(entries.items())]
        # Memory first: a signal that lands once the records are on disk must find them here too, or the
        # partial table written on the way out would miss what the journal already holds.
        before = dict(self.entries)
        self.overheads.append(overhead_ms)
        self.entries.update(entries)
        try:
            self._journal.append_many(records)
        except OSError:
            self.overheads.pop()
            self.entries = before
            raise

    def add_boundaries(self, stubs: Dict[str, float]) -> None:
        self._journal.append_many([{"type": BOUNDARY, "shape": label, "stub_ms": ms}
                                   for label, ms in sorted(stubs.items())])
        self.boundaries.update(stubs)

    def close(self) -> None:
        self._journal.close()

    def remove(self) -> None:
        self._journal.remove()


ENTRY_NUMBERS = ("median_ms", "p90_ms")


def _is_time(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            and value >= 0)


def entry_from(measurement: Measurement, overhead_ms: float, mode: str = COMPUTE,
               boundary_ms: float = 0.0) -> Dict[str, Any]:
    """A table entry: the stubbed part's time net of the per-call overhead and of its boundary stubs."""
    stats = measurement.preferred(mode)
    net = overhead_ms + boundary_ms
    return {
        "median_ms": round(max(stats.median_ms - net, 0.0), 5),
        "p90_ms": round(max(stats.p90_ms - net, 0.0), 5),
        "std_ms": round(stats.std_ms, 5),
        "count": stats.count,
        "raw_median_ms": round(stats.median_ms, 5),
        "boundary_ms": round(boundary_ms, 5),
        "round_spread": round(stats.round_spread, 5),
        "remeasured": measurement.remeasured,
    }


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
) -> LatencyTable:
    """Measure every part not yet in ``out_path`` (or its journal) and write the complete table."""
    existing: Dict[str, Dict[str, Any]] = {}
    existing_meta: Dict[str, Any] = {}
    if os.path.exists(out_path):
        try:
            old = LatencyTable.load(out_path, allow_incomplete=True)
        except UserError as exc:
            raise UserError("{}; it is not a table this run can continue: write to another file, or delete it (a "
                            "run's journal {} keeps what it measured)".format(exc, journal_path(out_path))) from None
        for field in ("backend", "precision", "device"):
            if old.meta.get(field) not in (None, meta.get(field)):
                raise UserError("{}: the existing table was measured with {} {!r}, not {!r}; write to another "
                                "file".format(out_path, field, old.meta.get(field), meta.get(field)))
        if old.entries and BOUNDARY not in old.meta:
            raise UserError("{}: the existing table timed parts without boundary stubs (an older dfseg); its "
                            "entries do not add up with new ones: write to another file".format(out_path))
        existing, existing_meta = old.entries, old.meta
    header = {"schema": SCHEMA, "backend": backend, "precision": meta.get("precision"), "threads": threads,
              "device": meta.get("device"), "clock": clock, "timing": TIMING}
    if config is not None and config.network_typing != "auto":  # a TensorRT 10 weak-typed table is another table
        header["network_typing"] = config.network_typing
    journal = TableJournal(journal_path(out_path), header)
    try:
        return _measure_into(journal, parts, source, out_path, existing, existing_meta, meta, protocol, backend,
                             threads, chunk_size, show_progress, clock, config)
    finally:
        journal.close()


def _measure_into(journal: "TableJournal", parts: Sequence[Part], source: ModelSource, out_path: str,
                  existing: Dict[str, Dict[str, Any]], existing_meta: Dict[str, Any], meta: Dict[str, Any],
                  protocol: Protocol, backend: str, threads: Optional[int], chunk_size: int, show_progress: bool,
                  clock: str, config: Optional[BuildConfig]) -> LatencyTable:
    done = set(existing) | set(journal.entries)
    todo = [part for part in parts if part.key not in done]
    known = dict((existing_meta.get(BOUNDARY) or {}).get("stub_ms") or {})
    known.update(journal.boundaries)
    shapes = sorted({shape for part in todo for shape in boundary_shapes(part) if shape_label(shape) not in known})
    for i in range(0, len(shapes), chunk_size):
        journal.add_boundaries(_measure_boundaries(shapes[i:i + chunk_size], source, protocol, backend, threads,
                                                   CLOCKS[clock], config))
    known.update(journal.boundaries)
    bar = progress_bar(len(todo), show_progress, "latency table", "part")
    noise: List[float] = []
    try:
        chunks = [todo[i:i + chunk_size] for i in range(0, len(todo), chunk_size)]
        if not chunks and not journal.overheads and "overhead_ms" not in existing_meta:
            chunks = [[]]  # nothing left to measure, but the overhead is: measure it alone
        for chunk in chunks:
            entries, overhead_ms = _measure_chunk(chunk, source, protocol, backend, threads, CLOCKS[clock], known,
                                                  config)
            journal.add_chunk(overhead_ms, entries)
            noise.extend(e["round_spread"] for e in entries.values())
            _write(out_path, existing, journal, existing_meta, meta, protocol, noise, known, complete=False)
            bar.update(len(chunk))
        table = _write(out_path, existing, journal, existing_meta, meta, protocol, noise, known, complete=True)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, even during the last write: every journalled entry is kept
        if journal.entries:
            _write(out_path, existing, journal, existing_meta, meta, protocol, noise, known, complete=False)
        raise
    finally:
        bar.close()
    journal.remove()
    return table


def _measure_boundaries(shapes: Sequence[Shape], source: ModelSource, protocol: Protocol, backend: str,
                        threads: Optional[int], clock, config: Optional[BuildConfig]) -> Dict[str, float]:
    """One boundary stub's cost for each shape, from its probe and the overhead probe measured side by side."""
    named = itertools.chain([(OVERHEAD, source.overhead_path())],
                            ((probe_name(shape), source.boundary_path(shape)) for shape in shapes))
    results = measure_models(named, protocol, backend, threads, clock, config=config)

    def median_of(name: str) -> float:
        return results[name].preferred().median_ms

    overhead_ms = median_of(OVERHEAD)
    return {shape_label(shape): round(stub_ms(median_of(probe_name(shape)), overhead_ms), 5) for shape in shapes}


def _measure_chunk(chunk: Sequence[Part], source: ModelSource, protocol: Protocol, backend: str,
                   threads: Optional[int], clock, stubs: Dict[str, float], config: Optional[BuildConfig]):
    named = itertools.chain([(OVERHEAD, source.overhead_path())],
                            ((part.key, source.part_path(part)) for part in chunk))
    results = measure_models(named, protocol, backend, threads, clock, config=config)
    overhead_ms = results[OVERHEAD].preferred().median_ms
    entries = {part.key: entry_from(results[part.key], overhead_ms,
                                    boundary_ms=sum(stubs[shape_label(s)] for s in boundary_shapes(part)))
               for part in chunk}
    return entries, overhead_ms


def _write(out_path: str, existing: Dict[str, Dict[str, Any]], journal: TableJournal, existing_meta: Dict[str, Any],
           meta: Dict[str, Any], protocol: Protocol, noise: List[float], stubs: Dict[str, float],
           complete: bool) -> LatencyTable:
    entries = dict(existing)
    entries.update(journal.entries)
    merged = dict(existing_meta)
    merged.update(meta)
    overheads = list(journal.overheads)
    if overheads:
        merged["overhead_ms"] = round(median(overheads), 5)
    merged["protocol"] = dict(protocol.to_json(), threads=journal.header.get("threads"), mode=COMPUTE,
                              clock=journal.header.get("clock"),
                              overhead="per-call overhead probe measured with every chunk; entries are net of it "
                                       "and meta.overhead_ms is counted once per network")
    merged[BOUNDARY] = {"stub_ms": {label: stubs[label] for label in sorted(stubs)},
                        "method": "parts timed in context, between depthwise 1x1 stubs on every input and the output "
                                  "(so layout reorders and residual fusion are as inside a network); entries are net "
                                  "of the stubs: one stub of a CxHxW tensor = (T(2 chained stubs) - overhead) / 2"}
    if noise:
        ordered = sorted(noise)
        merged["noise"] = {"median_round_spread": round(median(ordered), 5), "max_round_spread": round(ordered[-1], 5),
                           "entries_measured": len(ordered)}
    table = LatencyTable(entries, merged, path=out_path)
    table.save(out_path, complete=complete)
    return table
