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
from ..journal import Journal
from ..latency.table import SCHEMA, LatencyTable, is_time
from ..parts import Part, network_parts, parse_part_key, part_weight_count
from .boundary import Shape, boundary_shapes, probe_name, shape_label, stub_ms
from .protocol import CLOCKS, COMPUTE, Measurement, Protocol, median, robust_spread
from .reference import REFERENCE_ID, drift_summary, reference_times
from .report import progress_bar
from .sources import ModelSource, ModelSpec
from .subjects import measure_models

OVERHEAD = "overhead"
BOUNDARY = "boundary"
REFERENCE = "reference"
CALIBRATION = "calibration"
IN_NETWORK = "in_network"
# Journal header: journals of older dfseg (bare parts, or times not relative to the reference) are not resumed.
TIMING = "between boundary stubs, relative to {}".format(REFERENCE_ID.split(":")[0])


def journal_path(table_path: str) -> str:
    return table_path + ".journal.jsonl"


class TableJournal:
    """A table run's progress in the one journal (``dfseg.journal``): a header with the settings,
    then the measured boundary stubs, and per chunk its overhead and entries.  Times are stored
    relative to the drift reference, with the reference's own time in each chunk, so a table resumed
    later (at another machine speed) still adds up.  Every record is checked on replay: one of the
    wrong shape (an edited or foreign file) is an error naming it."""

    def __init__(self, path: str, header: Dict[str, Any]) -> None:
        self.path = path
        self.header = header
        self.entries: Dict[str, Dict[str, Any]] = {}  # relative entries, see entry_from
        self.overheads: List[float] = []  # relative to the reference
        self.reference_ms: List[float] = []  # the reference's median in each measured chunk
        self.boundaries: Dict[str, float] = {}  # shape label -> one boundary stub, relative to the reference
        self.calibration: Optional[Dict[str, Any]] = None  # the in-network factor, once measured
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
                    if not is_time(entry.get(field)):
                        self._bad(position, "entry {} has {} {!r}, not a non-negative number".format(
                            key, field, entry.get(field)))
                self.entries[key] = entry
            elif kind == OVERHEAD:
                if not is_time(record.get("relative")) or not _is_positive(record.get("reference_ms")):
                    self._bad(position, 'an overhead needs "relative" (a non-negative number) and "reference_ms" '
                                        "(a time in ms)")
                self.overheads.append(float(record["relative"]))
                self.reference_ms.append(float(record["reference_ms"]))
            elif kind == BOUNDARY:
                if not isinstance(record.get("shape"), str) or not is_time(record.get("stub")):
                    self._bad(position, 'a boundary needs "shape" (text) and "stub" (a non-negative number)')
                self.boundaries[record["shape"]] = float(record["stub"])
            elif kind == CALIBRATION:
                factors = record.get("factors")
                if not isinstance(factors, dict) or not all(_is_positive(v) for v in factors.values()) \
                        or not isinstance(record.get("networks"), list):
                    self._bad(position, 'a calibration needs "factors" (positive numbers by kind) and "networks" '
                                        "(a list)")
                cache = record.get("cache")
                if cache is not None and not (isinstance(cache, dict) and _is_positive(cache.get("capacity_mb"))
                                              and _is_positive(cache.get("relative_per_mb"))):
                    self._bad(position, 'a calibration\'s "cache" needs "capacity_mb" and "relative_per_mb" (positive '
                                        "numbers)")
                self.calibration = {k: v for k, v in record.items() if k != "type"}
            elif kind == REFERENCE:
                if not _is_positive(record.get("reference_ms")):
                    self._bad(position, 'a reference needs "reference_ms" (a time in ms)')
                self.reference_ms.append(float(record["reference_ms"]))
            else:
                self._bad(position, "unknown record type {!r}".format(kind))

    def _bad(self, position: int, problem: str) -> None:
        raise UserError("{}: record {}: {}; the journal was edited or is not dfseg's: delete it to measure those "
                        "parts again".format(self.path, position, problem))

    def add_chunk(self, overhead: float, reference_ms: float, entries: Dict[str, Dict[str, Any]]) -> None:
        records = [{"type": OVERHEAD, "relative": overhead, "reference_ms": reference_ms}]
        records += [{"type": "entry", "key": key, "entry": entry} for key, entry in sorted(entries.items())]
        # Memory first: a signal that lands once the records are on disk must find them here too, or the
        # partial table written on the way out would miss what the journal already holds.
        before = dict(self.entries)
        self.overheads.append(overhead)
        self.reference_ms.append(reference_ms)
        self.entries.update(entries)
        try:
            self._journal.append_many(records)
        except OSError:
            self.overheads.pop()
            self.reference_ms.pop()
            self.entries = before
            raise

    def add_boundaries(self, stubs: Dict[str, float], reference_ms: float) -> None:
        self._journal.append_many([{"type": REFERENCE, "reference_ms": reference_ms}]
                                  + [{"type": BOUNDARY, "shape": label, "stub": value}
                                     for label, value in sorted(stubs.items())])
        self.reference_ms.append(reference_ms)
        self.boundaries.update(stubs)

    def add_calibration(self, calibration: Dict[str, Any]) -> None:
        self._journal.append(dict(calibration, type=CALIBRATION))
        self.calibration = calibration

    def close(self) -> None:
        self._journal.close()

    def remove(self) -> None:
        self._journal.remove()


ENTRY_NUMBERS = ("relative", "p90_relative")


def _is_positive(value: Any) -> bool:
    return is_time(value) and value > 0


def entry_from(measurement: Measurement, overhead: float, mode: str = COMPUTE, boundary: float = 0.0
               ) -> Dict[str, Any]:
    """A journal entry, relative to the reference: the stubbed part's time net of the per-call overhead and
    of its boundary stubs (``table_entry`` turns it into ms)."""
    stats = measurement.preferred_relative(mode)
    net = overhead + boundary
    return {
        "relative": round(max(stats.median_ms - net, 0.0), 7),
        "p90_relative": round(max(stats.p90_ms - net, 0.0), 7),
        "std_relative": round(stats.std_ms, 7),
        "count": stats.count,
        "raw_relative": round(stats.median_ms, 7),
        "boundary_relative": round(boundary, 7),
        "measured_ms": round(measurement.preferred(mode).median_ms, 5),
        "round_spread": round(stats.round_spread, 5),
        "remeasured": measurement.remeasured,
    }


def table_entry(entry: Dict[str, Any], reference_ms: float, factor: float = 1.0, extra: float = 0.0
                ) -> Dict[str, Any]:
    """A table entry: the journal's relative entry, with its times in ms at the reference's speed, scaled by the
    in-network factor and with the in-network extra time added (``calibrate``)."""
    out = dict(entry)
    out["median_ms"] = round((entry["relative"] * factor + extra) * reference_ms, 5)
    out["p90_ms"] = round((entry["p90_relative"] * factor + extra) * reference_ms, 5)
    out["std_ms"] = round(entry.get("std_relative", 0.0) * reference_ms, 5)
    out["boundary_ms"] = round(entry.get("boundary_relative", 0.0) * reference_ms, 5)
    out["raw_median_ms"] = round(entry.get("raw_relative", 0.0) * reference_ms, 5)
    return out


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
        if old.entries and (BOUNDARY not in old.meta or REFERENCE not in old.meta
                            or (old.meta.get(REFERENCE) or {}).get("id") != REFERENCE_ID):
            raise UserError("{}: the existing table was measured by an older dfseg (without boundary stubs or "
                            "without the drift reference {!r}); its entries do not add up with new ones: write to "
                            "another file".format(out_path, REFERENCE_ID))
        existing, existing_meta = old.entries, old.meta
    header = {"schema": SCHEMA, "backend": backend, "precision": meta.get("precision"), "threads": threads,
              "device": meta.get("device"), "clock": clock, "timing": TIMING}
    if config is not None and config.network_typing != "auto":  # a TensorRT 10 weak-typed table is another table
        header["network_typing"] = config.network_typing
    journal = TableJournal(journal_path(out_path), header)
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


BOTTLENECK_CLASS = "bottleneck"
OTHER_CLASS = "other"
# Cache capacities (MB) the in-network fit tries: a part's weights up to this size are read again from a cache
# when it is timed alone, run after run, but not inside a network.
CACHE_CAPACITIES_MB = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
BYTES_PER_WEIGHT = {"fp32": 4, "fp16": 2, "int8": 1}


def factor_class(key: str) -> str:
    """Which in-network factor a part gets: bottleneck blocks have their own (their 1x1 convolutions keep
    less in the caches than basic blocks' 3x3 ones), every other part shares one."""
    return BOTTLENECK_CLASS if key.split(":", 1)[0] == BOTTLENECK_CLASS else OTHER_CLASS


def cached_mb(key: str, capacity_mb: float, precision: Optional[str]) -> float:
    """The part's weights (MB at the table's precision) that fit a cache of ``capacity_mb``."""
    count = part_weight_count(parse_part_key(key))
    return min(count * BYTES_PER_WEIGHT.get(precision or "fp32", 4) / 1e6, capacity_mb)


def in_network_extra(key: str, in_network: Optional[Dict[str, Any]], precision: Optional[str]) -> float:
    """The time (relative to the reference) that ``key`` takes inside a network beyond its scaled entry: the
    fitted cost per MB of weights that were cached when it was timed alone (``calibrate``)."""
    cache = (in_network or {}).get("cache")
    if not cache:
        return 0.0
    return cache["relative_per_mb"] * cached_mb(key, cache["capacity_mb"], precision)


def calibrate(specs: Sequence[ModelSpec], run: _Run, entries: Dict[str, Dict[str, Any]], overhead: float,
              precision: Optional[str] = None) -> Dict[str, Any]:
    """The in-network model: whole networks measured beside the reference, against the sums of their parts.

    A part timed alone, run after run, finds its weights in the caches as it left them; inside a network
    the layers before it have replaced them, so a network's time is not the sum of its parts (2-15% more on
    an Intel VM, most for networks of many small basic blocks; kind factors of 0.90-0.96 plus the cache term
    on an AMD EPYC VM).  Fitted by weighted least squares
    over ``specs`` (networks the table covers, never the validation's): measured = f_other x (the other
    parts) + f_bottleneck x (the bottleneck blocks) + c x (the weights, in MB, of each part up to a cache
    capacity L), L taken from ``CACHE_CAPACITIES_MB`` by the smallest residual (``_fit_in_network``).
    """
    usable = [s for s in specs if s.arch is not None
              and all(p.key in entries for p in network_parts(s.arch, s.size.height, s.size.width))]
    if not usable:
        raise UserError("the calibration networks have parts the table lacks; this is a bug in dfseg, please "
                        "report it")
    results, reference_ms = run.measure((spec.label, run.source.model_path(spec)) for spec in usable)
    networks = []
    for spec in usable:
        sums = {BOTTLENECK_CLASS: 0.0, OTHER_CLASS: 0.0}
        parts = network_parts(spec.arch, spec.size.height, spec.size.width)
        for part in parts:
            sums[factor_class(part.key)] += entries[part.key]["relative"]
        cached = {capacity: sum(cached_mb(p.key, capacity, precision) for p in parts)
                  for capacity in CACHE_CAPACITIES_MB}
        measured = results[spec.label].preferred_relative().median_ms - overhead
        summed = sums[BOTTLENECK_CLASS] + sums[OTHER_CLASS]
        networks.append({"label": spec.label, "parts": len(parts), "measured_relative": round(measured, 6),
                         "sum_relative": round(summed, 6), "bottleneck_share": round(sums[BOTTLENECK_CLASS] / summed, 4),
                         "factor": round(measured / summed, 5), "sums": sums, "cached_mb": cached})
    fit = _fit_in_network(networks)
    for network in networks:
        network["fitted_relative"] = round(_predict(fit, network), 6)
        del network["sums"], network["cached_mb"]
    out = {"factors": {k: round(v, 5) for k, v in fit["factors"].items()}, "networks": networks,
           "reference_ms": reference_ms}
    if fit.get("cache"):
        out["cache"] = {"capacity_mb": fit["cache"]["capacity_mb"],
                        "relative_per_mb": round(fit["cache"]["relative_per_mb"], 7)}
    return out


def _predict(fit: Dict[str, Any], network: Dict[str, Any]) -> float:
    factors, cache = fit["factors"], fit.get("cache")
    value = sum(factors[kind] * network["sums"][kind] for kind in (OTHER_CLASS, BOTTLENECK_CLASS))
    if cache:
        value += cache["relative_per_mb"] * network["cached_mb"][cache["capacity_mb"]]
    return value


def _fit_in_network(networks: List[Dict[str, Any]]) -> Dict[str, Any]:
    """``calibrate``'s fit: {"factors": {kind: f}, "cache": {"capacity_mb", "relative_per_mb"} or None}.

    Each kind gets its own factor only where networks dominated by each were measured; the cache term only
    where there are two networks more than unknowns, it comes out positive with factors in 0.5-2, and it
    takes at least a tenth off the residual of the factors alone.  Otherwise the fit falls back to the
    factors alone, and then to the median of measured / summed."""
    import numpy as np

    measured = np.array([n["measured_relative"] for n in networks])
    weights = 1.0 / measured  # relative errors count alike, whatever a network's length
    shares = [n["bottleneck_share"] for n in networks]
    both_kinds = max(shares) >= 0.5 and min(shares) <= 0.5
    kinds = [[n["sums"][OTHER_CLASS], n["sums"][BOTTLENECK_CLASS]] if both_kinds
             else [n["sums"][OTHER_CLASS] + n["sums"][BOTTLENECK_CLASS]] for n in networks]

    def solve(columns: List[List[float]]) -> Optional[Tuple[Any, float]]:
        matrix = np.array(columns, dtype=float)
        if len(networks) < matrix.shape[1] + 2:
            return None
        solution = np.linalg.lstsq(matrix * weights[:, None], measured * weights, rcond=None)[0]
        factors = solution[:len(kinds[0])]
        if not np.all(np.isfinite(solution)) or np.any(factors < 0.5) or np.any(factors > 2.0):
            return None
        if matrix.shape[1] > len(kinds[0]) and solution[-1] <= 0:
            return None
        residual = float(np.sum(((matrix @ solution - measured) * weights) ** 2))
        return solution, residual

    def as_fit(solution: Any, capacity: Optional[float] = None) -> Dict[str, Any]:
        other = float(solution[0])
        bottleneck = float(solution[1]) if both_kinds else other
        fit: Dict[str, Any] = {"factors": {OTHER_CLASS: other, BOTTLENECK_CLASS: bottleneck}, "cache": None}
        if capacity is not None:
            fit["cache"] = {"capacity_mb": capacity, "relative_per_mb": float(solution[-1])}
        return fit

    best: Optional[Tuple[float, Dict[str, Any]]] = None
    for capacity in CACHE_CAPACITIES_MB:
        found = solve([row + [n["cached_mb"][capacity]] for row, n in zip(kinds, networks)])
        if found is not None and (best is None or found[1] < best[0]):
            best = (found[1], as_fit(found[0], capacity))
    plain = solve(kinds)
    if best is not None and (plain is None or best[0] <= 0.9 * plain[1]):
        return best[1]
    if plain is not None:
        return as_fit(plain[0])
    overall = median([n["factor"] for n in networks])
    return {"factors": {OTHER_CLASS: overall, BOTTLENECK_CLASS: overall}, "cache": None}


def reference_summary(chunk_ms: Sequence[float], spreads: Sequence[float] = ()) -> Dict[str, Any]:
    """meta.reference: the drift reference's stated speed (the speed every entry's ms are given at) and the
    drift it saw (``reference.drift_summary``), with how it is used."""
    out = dict(drift_summary(chunk_ms),
               method="a fixed reference network timed before and after every subject of every round; entries are "
                      "measured as multiples of it and given in ms at meta.reference.median_ms")
    if spreads:
        out["median_spread_within_chunk"] = round(median(spreads), 5)
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
    in_network = dict(journal.calibration) if journal.calibration is not None else existing_meta.get(IN_NETWORK)
    factors = (in_network or {}).get("factors") or {}
    precision = merged.get("precision")
    entries = {key: table_entry(entry, reference_ms, float(factors.get(factor_class(key), 1.0)),
                                in_network_extra(key, in_network, precision))
               for key, entry in relative.items()}
    if in_network is not None:
        in_network.pop("reference_ms", None)
        merged[IN_NETWORK] = dict(in_network, method=(
            "fitted on whole networks measured beside the reference at the end of the table run: measured - "
            "overhead = sum over parts of (factor of its kind x entry + cache.relative_per_mb x its weights in MB "
            "up to cache.capacity_mb); each entry's median_ms and p90_ms include both"))
    overheads = list(journal.overheads)
    if overheads:
        merged["overhead_relative"] = round(median(overheads), 7)
    if "overhead_relative" in merged:
        merged["overhead_ms"] = round(merged["overhead_relative"] * reference_ms, 5)
    merged[REFERENCE] = reference
    merged["protocol"] = dict(run.protocol.to_json(), threads=journal.header.get("threads"), mode=COMPUTE,
                              clock=journal.header.get("clock"),
                              overhead="per-call overhead probe measured with every chunk; entries are net of it "
                                       "and meta.overhead_ms is counted once per network")
    merged[BOUNDARY] = {"stub": {label: stubs[label] for label in sorted(stubs)},
                        "stub_ms": {label: round(stubs[label] * reference_ms, 5) for label in sorted(stubs)},
                        "method": "parts timed in context, between depthwise 1x1 stubs on every input and the output "
                                  "(so layout reorders and residual fusion are as inside a network); entries are net "
                                  "of the stubs: one stub of a CxHxW tensor = (T(2 chained stubs) - overhead) / 2, "
                                  "relative to the reference in stub, in ms in stub_ms"}
    if run.noise:
        ordered = sorted(run.noise)
        merged["noise"] = {"median_round_spread": round(median(ordered), 5), "max_round_spread": round(ordered[-1], 5),
                           "entries_measured": len(ordered)}
    table = LatencyTable(entries, merged, path=out_path)
    table.save(out_path, complete=complete)
    return table
