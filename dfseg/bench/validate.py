"""The proof that a latency table predicts real latency: estimate = overhead + sum of entries, against
networks measured end to end (compute mode, the table's mode), as MAPE, largest error and the share
within +-10%, plus a scatter plot of estimated vs measured (the paper's Fig. 3a).

Networks are timed beside the drift reference, as the table's parts were, and compared at the table's
reference speed: a network that took r times the reference's time is compared as r x the table's
``meta.reference.median_ms``.  So a table measured an hour ago, on a machine that was 10% faster
then, still predicts what is measured now.  The machine's speed change is reported with the figures.

Networks are measured in chunks that rotate in rounds, with the same protocol and threads as the table.
Device side: Python 3.6, no torch (the PNG needs matplotlib, optional on a device).
"""

from typing import Any, Dict, List, Optional, Sequence

from ..build_config import BuildConfig
from ..latency.table import LatencyTable, MissingEntriesError, measure_command
from ..parts import network_parts
from .drift import REFERENCE_ID, drift_summary, reference_times
from .model_files import ModelSource, ModelSpec
from .protocol import CLOCKS, COMPUTE, Protocol, median, noise_warnings
from .report import progress_bar
from .subjects import measure_models


def check_coverage(table: LatencyTable, specs: Sequence[ModelSpec]) -> None:
    """One error listing every missing key (not only the first network's) and the command to measure them."""
    missing: set = set()
    lacking: List[ModelSpec] = []
    for spec in specs:
        if spec.arch is not None:
            keys = table.missing_parts(network_parts(spec.arch, spec.size.height, spec.size.width))
            if keys:
                missing.update(keys)
                lacking.append(spec)
    if missing:
        names = sorted({s.name for s in lacking})
        seg_sizes = sorted({str(s.size) for s in lacking if s.arch is not None and s.arch.is_segmentation})
        raise MissingEntriesError(sorted(missing), " ".join(measure_command(table.path, names, seg_sizes)))


def summarize_errors(records: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    errors = [r["error_pct"] for r in records]
    if not errors:
        return {"count": 0, "mape_pct": None, "max_abs_error_pct": None, "within_10pct_share": None}
    worst = max(records, key=lambda r: abs(r["error_pct"]))
    return {
        "count": len(errors),
        "mape_pct": round(sum(abs(e) for e in errors) / len(errors), 3),
        "max_abs_error_pct": round(abs(worst["error_pct"]), 3),
        "worst": "{}@{}".format(worst["model"], worst["size"]),
        "within_10pct_share": round(sum(1 for e in errors if abs(e) <= 10.0) / len(errors), 4),
        "within_7pct_share": round(sum(1 for e in errors if abs(e) <= 7.0) / len(errors), 4),
        "mean_error_pct": round(sum(errors) / len(errors), 3),
    }


def validate_table(
    table: LatencyTable,
    specs: Sequence[ModelSpec],
    source: ModelSource,
    protocol: Protocol,
    backend: str,
    threads: Optional[int] = 1,
    chunk_size: int = 6,
    clock: str = "wall",
    show_progress: bool = True,
    config: Optional[BuildConfig] = None,
) -> Dict[str, Any]:
    """Measure ``specs`` (built as ``config`` says) and compare with the table's estimates."""
    specs = [s for s in specs if s.arch is not None]
    check_coverage(table, specs)
    records: List[Dict[str, Any]] = []
    warnings: List[str] = []
    table_reference = table.reference if (table.reference or {}).get("id") == REFERENCE_ID else None
    if table_reference is None:
        warnings.append("{}: the table was measured without this dfseg's drift reference ({!r}); networks are "
                        "compared in raw ms, so the machine's drift since the table is not cancelled: re-measure "
                        "the table with this dfseg".format(table.path or "table", REFERENCE_ID))
    chunk_reference: List[float] = []
    bar = progress_bar(len(specs), show_progress, "validate", "net")
    try:
        for start in range(0, len(specs), chunk_size):
            chunk = specs[start:start + chunk_size]
            results = measure_models(((spec.label, source.model_path(spec)) for spec in chunk), protocol, backend,
                                     threads, CLOCKS[clock], config=config, reference=source.reference_path())
            warnings.extend(noise_warnings(results, protocol, COMPUTE))
            chunk_reference.append(median(reference_times(results)))
            for spec in chunk:
                result = results[spec.label]
                stats = result.preferred()
                relative = result.preferred_relative()
                # At the table's reference speed where the table has one, else as measured.
                compared = relative.median_ms * table_reference["median_ms"] if table_reference else stats.median_ms
                estimated = table.estimate(spec.arch, spec.size)
                records.append({
                    "model": spec.name,
                    "size": str(spec.size),
                    "estimated_ms": round(estimated, 4),
                    "measured_ms": round(compared, 4),
                    "raw_measured_ms": round(stats.median_ms, 4),
                    "relative": round(relative.median_ms, 6),
                    "measured_p90_ms": round(stats.p90_ms, 4),
                    "round_spread": round(relative.round_spread, 4),
                    "error_pct": round(100.0 * (estimated - compared) / compared, 3),
                })
            bar.update(len(chunk))
    finally:
        bar.close()
    summary = summarize_errors(records)
    summary["clock"] = clock
    summary["reference"] = drift_report(table_reference, chunk_reference)
    summary["records"] = records
    summary["warnings"] = warnings
    return summary


def drift_report(table_reference: Optional[Dict[str, Any]], chunk_ms: Sequence[float]) -> Dict[str, Any]:
    """The reference's time in this run, and how much faster or slower the machine is than during the table."""
    out = drift_summary(chunk_ms)
    if table_reference and "median_ms" in out:
        out["table_median_ms"] = table_reference["median_ms"]
        out["slower_than_table_pct"] = round(100.0 * (out["median_ms"] / table_reference["median_ms"] - 1.0), 3)
    return out


def scatter_png(records: Sequence[Dict[str, Any]], path: str, title: str = "") -> Optional[str]:
    """Estimated vs measured latency with the y = x line and a +-10% band; None without matplotlib."""
    from ..plots import pyplot, save_png

    try:
        plt = pyplot()
    except ImportError:
        return None

    measured = [r["measured_ms"] for r in records]
    estimated = [r["estimated_ms"] for r in records]
    top = max(measured + estimated) * 1.05 if records else 1.0
    figure, axes = plt.subplots(figsize=(5.5, 5))
    axes.plot([0, top], [0, top], color="black", linewidth=1, label="estimate = measured")
    axes.fill_between([0, top], [0, 0.9 * top], [0, 1.1 * top], color="grey", alpha=0.2, label="+-10%")
    axes.scatter(measured, estimated, s=18, color="tab:blue", zorder=3)
    axes.set_xlabel("measured latency (ms)")
    axes.set_ylabel("estimated latency = sum of table entries (ms)")
    axes.set_xlim(0, top)
    axes.set_ylim(0, top)
    axes.set_title(title or "Latency estimation (cf. paper Fig. 3a)", fontsize=9)
    axes.legend(loc="upper left")
    figure.tight_layout()
    return save_png(figure, path, dpi=120)
