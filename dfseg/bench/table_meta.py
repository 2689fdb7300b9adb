"""What a latency table says about itself (``meta``): where and how it was measured, the drift
reference's speed, the overhead, the boundary stubs, the in-network model and the noise, each with the
method that produced it.  ``dfseg.bench.table_run`` measures; this module only describes.

Device side: Python 3.6, no torch.
"""

from typing import Any, Dict, List, Optional, Sequence

from ..build_config import BuildConfig
from .drift import drift_summary
from .protocol import COMPUTE, Protocol, median
from .table_journal import BOUNDARY, REFERENCE

REFERENCE_METHOD = ("a fixed reference network timed before and after every subject of every round; entries are "
                    "measured as multiples of it and given in ms at meta.reference.median_ms")
IN_NETWORK_METHOD = ("fitted on whole networks measured beside the reference at the end of the table run: measured - "
                     "overhead = sum over parts of (factor of its kind x entry + cache.relative_per_mb x its weights "
                     "in MB up to cache.capacity_mb); each entry's median_ms and p90_ms include both")
OVERHEAD_METHOD = ("per-call overhead probe measured with every chunk; entries are net of it and meta.overhead_ms is "
                   "counted once per network")
BOUNDARY_METHOD = ("parts timed in context, between depthwise 1x1 stubs on every input and the output (so layout "
                   "reorders and residual fusion are as inside a network); entries are net of the stubs: one stub of "
                   "a CxHxW tensor = (T(2 chained stubs) - overhead) / 2, relative to the reference in stub, in ms in "
                   "stub_ms")


def device_meta(machine: Dict[str, Any], backend: str, backend_version: Optional[str], config: BuildConfig,
                sizes: Sequence[str], identity: Dict[str, Any]) -> Dict[str, Any]:
    """The meta a table run starts with: the machine (``dfseg.bench.machine.describe_machine``), the backend
    and its build, the input sizes and the machine identity."""
    return {
        "device": machine["device"], "soc": machine["soc"], "os": machine["os"], "l4t": machine["l4t"],
        "jetpack": machine["jetpack"], "backend": backend, "backend_version": backend_version,
        "precision": config.precision, "batch": 1, "power_mode": machine["power_mode"],
        "clocks_locked": machine["clocks_locked"], "date": machine["time"],
        "dfseg_version": machine["dfseg_version"], "sizes": list(sizes), "machine_before": machine,
        "build_config": config.to_dict(), "identity": identity,
    }


def reference_summary(chunk_ms: Sequence[float], spreads: Sequence[float] = ()) -> Dict[str, Any]:
    """meta.reference: the drift reference's stated speed (the speed every entry's ms are given at) and the
    drift it saw (``reference.drift_summary``), with how it is used."""
    out = dict(drift_summary(chunk_ms), method=REFERENCE_METHOD)
    if spreads:
        out["median_spread_within_chunk"] = round(median(spreads), 5)
    return out


def in_network_meta(in_network: Dict[str, Any]) -> Dict[str, Any]:
    """meta.in_network: the journal's calibration record without its reference time (the table's own speed is
    meta.reference), with its method."""
    out = {k: v for k, v in in_network.items() if k != "reference_ms"}
    return dict(out, method=IN_NETWORK_METHOD)


def measurement_meta(merged: Dict[str, Any], reference: Dict[str, Any], overheads: Sequence[float],
                     protocol: Protocol, header: Dict[str, Any], stubs: Dict[str, float], noise: List[float]) -> None:
    """Add to ``merged`` what the run measured: overhead, reference, protocol, boundary stubs and noise."""
    reference_ms = reference["median_ms"]
    if overheads:
        merged["overhead_relative"] = round(median(overheads), 7)
    if "overhead_relative" in merged:
        merged["overhead_ms"] = round(merged["overhead_relative"] * reference_ms, 5)
    merged[REFERENCE] = reference
    merged["protocol"] = dict(protocol.to_json(), threads=header.get("threads"), mode=COMPUTE,
                              clock=header.get("clock"), overhead=OVERHEAD_METHOD)
    merged[BOUNDARY] = {"stub": {label: stubs[label] for label in sorted(stubs)},
                        "stub_ms": {label: round(stubs[label] * reference_ms, 5) for label in sorted(stubs)},
                        "method": BOUNDARY_METHOD}
    if noise:
        ordered = sorted(noise)
        merged["noise"] = {"median_round_spread": round(median(ordered), 5), "max_round_spread": round(ordered[-1], 5),
                           "entries_measured": len(ordered)}
