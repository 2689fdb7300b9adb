"""The per-part latency table (the paper's Latency(c_i, h_i, w_i, c_o, h_o, w_o), section 3.2) and
the additive estimate Lat(x) = overhead + sum of x's parts.

File format (JSON)::

    {"schema": "dfseg.latency-table/1",
     "complete": true,
     "meta": {"device": ..., "backend": "onnxruntime", "precision": "fp32", "batch": 1,
              "overhead_ms": 0.05, "protocol": {...}, "date": ..., "dfseg_version": ...},
     "entries": {"basic:64x56x56->64x28x28/s2": {"median_ms": .., "p90_ms": .., "std_ms": .., "count": ..}}}

Keys are ``dfseg.parts.Part.key``.  ``meta.overhead_ms`` (optional) is the fixed cost of one
inference call, counted once per network rather than once per part.

Device side: Python 3.6, no torch.
"""

import math
from typing import Any, Dict, Iterable, List, Optional, Sequence

from ..arch import Arch
from ..errors import UserError
from ..fileio import read_json, write_json_atomic
from ..parts import Part, network_parts
from ..sizes import Size

SCHEMA = "dfseg.latency-table/1"


def is_time(value: Any) -> bool:
    """A non-negative, finite number (a time in ms, or a time relative to the drift reference)."""
    return (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            and value >= 0)


def measure_command(table_path: Optional[str], models: Sequence[str] = (), sizes: Sequence[str] = (),
                    space: Any = None) -> List[str]:
    """The one "measure these parts" hint: the ``dfseg-bench --table`` command that measures ``models`` at
    ``sizes``, or exactly the parts of ``space`` (a ``dfseg.space`` space: its ``table_argv``)."""
    argv = ["dfseg-bench", "--table", table_path or "TABLE.json"]
    if models:
        argv += ["--models", ",".join(models)]
    if sizes:
        argv += ["--sizes", ",".join(sizes)]
    if space is not None:
        argv += space.table_argv()
    return argv


class MissingEntriesError(UserError):
    """The table lacks parts an architecture needs; the message lists them and how to measure them."""

    def __init__(self, keys: Sequence[str], hint: str) -> None:
        self.keys = list(keys)
        shown = ", ".join(self.keys[:8]) + (" and {} more".format(len(self.keys) - 8) if len(self.keys) > 8 else "")
        super().__init__("latency table lacks {} entr{}: {}; measure them with: {}".format(
            len(self.keys), "y" if len(self.keys) == 1 else "ies", shown, hint))


class LatencyTable:
    """Entries keyed by ``Part.key`` plus metadata describing where and how they were measured."""

    def __init__(self, entries: Optional[Dict[str, Dict[str, Any]]] = None, meta: Optional[Dict[str, Any]] = None,
                 path: Optional[str] = None) -> None:
        self.entries = dict(entries or {})
        self.meta = dict(meta or {})
        self.path = path

    # ------------------------------------------------------------------ file I/O
    @classmethod
    def load(cls, path: str, allow_incomplete: bool = False) -> "LatencyTable":
        data = read_json(path, "latency table", "; measure one with dfseg-bench --table {}".format(path))
        return cls.from_dict(data, path=path, allow_incomplete=allow_incomplete)

    @classmethod
    def from_dict(cls, data: Any, path: str = "<table>", allow_incomplete: bool = False) -> "LatencyTable":
        if not isinstance(data, dict) or "schema" not in data:
            raise UserError('{}: not a dfseg latency table (no "schema" field); measure one with '
                            "dfseg-bench --table".format(path))
        if data["schema"] != SCHEMA:
            raise UserError("{}: unknown table schema {!r}; this dfseg reads {!r}: re-measure with this "
                            "version's dfseg-bench --table, or upgrade dfseg".format(path, data["schema"], SCHEMA))
        if not isinstance(data.get("complete", False), bool):
            raise UserError('{}: "complete" must be true or false, got {!r}; re-measure with dfseg-bench --table'.format(
                path, data.get("complete")))
        if not data.get("complete", False) and not allow_incomplete:
            raise UserError("{}: the table is incomplete (its measurement was interrupted); finish it with "
                            "dfseg-bench --table {} (it resumes where it stopped)".format(path, path))
        entries = data.get("entries")
        if not isinstance(entries, dict):
            raise UserError('{}: "entries" must be an object mapping part keys to measurements'.format(path))
        for key, entry in entries.items():
            median = entry.get("median_ms") if isinstance(entry, dict) else None
            if not is_time(median):
                raise UserError('{}: entries["{}"].median_ms must be a non-negative number, got {!r}'.format(
                    path, key, median))
        meta = data.get("meta") or {}
        if not isinstance(meta, dict):
            raise UserError('{}: "meta" must be an object'.format(path))
        overhead = meta.get("overhead_ms", 0.0)
        if overhead is not None and not is_time(overhead):
            raise UserError("{}: meta.overhead_ms must be a non-negative number of ms, got {!r}; re-measure the "
                            "table with dfseg-bench --table".format(path, overhead))
        for field in ("protocol", "boundary", "noise", "reference"):
            if field in meta and not isinstance(meta[field], dict):
                raise UserError("{}: meta.{} must be an object, got {!r}; re-measure the table with dfseg-bench "
                                "--table".format(path, field, meta[field]))
        reference = (meta.get("reference") or {}).get("median_ms", 1.0)
        if not is_time(reference) or reference <= 0:
            raise UserError("{}: meta.reference.median_ms must be a positive number of ms, got {!r}; re-measure the "
                            "table with dfseg-bench --table".format(path, reference))
        return cls(entries, meta, path=path)

    def to_dict(self, complete: bool = True) -> Dict[str, Any]:
        return {"schema": SCHEMA, "complete": complete, "meta": self.meta,
                "entries": {key: self.entries[key] for key in sorted(self.entries)}}

    def save(self, path: Optional[str] = None, complete: bool = True) -> str:
        target = path or self.path
        if target is None:
            raise ValueError("LatencyTable.save needs a path")
        write_json_atomic(target, self.to_dict(complete))
        self.path = target
        return target

    # ------------------------------------------------------------------ queries
    def keys(self) -> List[str]:
        return sorted(self.entries)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def reference(self) -> Optional[Dict[str, Any]]:
        """meta.reference: the drift reference's id and the speed (its median ms) the entries are given at;
        None for a table measured without one."""
        return self.meta.get("reference")

    @property
    def overhead_ms(self) -> float:
        return float(self.meta.get("overhead_ms") or 0.0)

    def lookup(self, key: str) -> float:
        try:
            return float(self.entries[key]["median_ms"])
        except KeyError:
            raise MissingEntriesError([key], self.measure_hint()) from None

    def missing(self, arch: Arch, size: Size) -> List[str]:
        return [part.key for part in network_parts(arch, size.height, size.width) if part.key not in self.entries]

    def missing_parts(self, parts: Iterable[Part]) -> List[str]:
        return sorted({part.key for part in parts if part.key not in self.entries})

    def estimate(self, arch: Arch, size: Size) -> float:
        """Lat(x): the fixed per-call overhead plus the sum of the table entries of x's parts (ms)."""
        parts = network_parts(arch, size.height, size.width)
        absent = self.missing_parts(parts)
        if absent:
            raise MissingEntriesError(absent, self.measure_hint(arch, size))
        return self.overhead_ms + sum(float(self.entries[part.key]["median_ms"]) for part in parts)

    def measure_hint(self, arch: Optional[Arch] = None, size: Optional[Size] = None) -> str:
        return " ".join(measure_command(self.path, [arch.short()] if arch is not None else (),
                                        [str(size)] if size is not None else ()))
