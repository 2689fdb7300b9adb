"""A table run's journal: its record schema, the checks on replay, and the entry arithmetic.

The journal (``OUT.journal.jsonl``, the one ``dfseg.journal``: fsync'd, locked, a torn last line cut
away) holds a header with the run's settings, the measured boundary stubs, and per chunk its overhead
and entries, all relative to the drift reference (``dfseg.bench.drift``); ``entry_from`` makes a
journal entry from a measurement and ``table_entry`` the table's entry in ms from it.  The run itself
is ``dfseg.bench.table_run``.  Device side: Python 3.6, no torch.
"""

from typing import Any, Dict, List, Optional

from ..errors import UserError
from ..journal import Journal
from ..latency.table import is_time
from .drift import REFERENCE_ID
from .protocol import COMPUTE, Measurement

OVERHEAD = "overhead"
BOUNDARY = "boundary"
REFERENCE = "reference"
CALIBRATION = "calibration"
IN_NETWORK = "in_network"
# Journal header: journals of older dfseg (bare parts, or times not relative to the reference) are not resumed.
TIMING = "between boundary stubs, relative to {}".format(REFERENCE_ID.split(":")[0])


def journal_path(table_path: str) -> str:
    return table_path + ".journal.jsonl"


def check_header(path: str, records: List[Dict[str, Any]], header: Dict[str, Any]) -> None:
    """A UserError unless the journal at ``path`` whose ``records`` (``journal.read_records``) are given
    starts with a header of the settings in ``header``: a run with other settings (or a foreign file)
    cannot resume it.  No records: nothing to resume, nothing to refuse."""
    if not records:
        return
    if records[0].get("type") != "header":
        raise UserError("{}: not a dfseg table journal; delete it to start the table over".format(path))
    old = {k: v for k, v in records[0].items() if k != "type"}
    differing = sorted(k for k in header if old.get(k) != header[k])
    if differing:
        raise UserError("{}: an unfinished table was started with different settings ({}: {} then, {} now); "
                        "use the same options to resume, or delete the journal to start over".format(
                            path, ", ".join(differing), [old.get(k) for k in differing],
                            [header[k] for k in differing]))


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
        check_header(self.path, records, self.header)
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
