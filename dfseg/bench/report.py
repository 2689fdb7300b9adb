"""What people read: the screen table with an environment header, the JSON and the CSV files.

Device side: Python 3.6, no torch.
"""

import csv
import io
from typing import Any, Dict, List, Optional, Sequence

from ..fileio import write_atomic, write_json_atomic


def progress_bar(total: int, enabled: bool, description: str, unit: str) -> Any:
    """A tqdm bar; a disabled one still takes update() and close(), so callers need no checks."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit=unit, disable=not enabled)

CSV_FIELDS = ("model", "size", "backend", "precision", "threads", "median_ms", "p90_ms", "p99_ms", "mean_ms",
              "std_ms", "cv", "fps", "compute_median_ms", "compute_p90_ms", "runs", "rounds", "round_spread",
              "remeasured", "noisy", "watts", "mj_per_frame")


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "{:.{}f}".format(value, digits)
    return str(value)


def environment_header(machine: Dict[str, Any], backend: str, backend_version: Optional[str],
                       threads: Optional[int]) -> List[str]:
    cpu = machine.get("cpu") or {}
    lines = ["device: {}   os: {}   python: {}".format(machine.get("device"), machine.get("os"), machine.get("python"))]
    if machine.get("jetson"):
        lines.append("L4T {}   JetPack {}   power mode {}   jetson_clocks {}".format(
            machine.get("l4t"), machine.get("jetpack"), machine.get("power_mode"), machine.get("clocks_locked")))
    governors = sorted(set((cpu.get("governors") or {}).values()))
    lines.append("cpus: {} (affinity {})   governor: {}   clocks locked: {}   load: {}".format(
        cpu.get("cpu_count"), cpu.get("affinity"), ",".join(governors) or "unknown", machine.get("clocks_locked"),
        cpu.get("loadavg")))
    lines.append("backend: {} {}   threads: {}".format(backend, backend_version or "", threads or "default"))
    return lines


def format_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(row[i])) for row in list(rows) + [header]) for i in range(len(header))]
    line = " | ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [line, "-+-".join("-" * w for w in widths)]
    for row in rows:
        out.append(" | ".join(str(c).rjust(w) if i >= 3 else str(c).ljust(w)
                              for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(out)


def benchmark_screen(records: Sequence[Dict[str, Any]], header_lines: Sequence[str],
                     warnings: Sequence[str]) -> str:
    rows = [(r["model"], r["size"], r["precision"], _fmt(r["median_ms"]), _fmt(r["p90_ms"]), _fmt(r["fps"], 1),
             _fmt(r.get("watts")), _fmt(r.get("mj_per_frame"), 1)) for r in records]
    text = "\n".join(header_lines) + "\n\n" + format_table(
        rows, ("model", "size", "precision", "median ms", "p90", "FPS", "W", "mJ/frame"))
    if warnings:
        text += "\n\nwarnings:\n" + "\n".join("  - " + w for w in warnings)
    return text


def validation_screen(summary: Dict[str, Any]) -> str:
    rows = [(r["model"], r["size"], "", _fmt(r["estimated_ms"], 3), _fmt(r["measured_ms"], 3),
             "{:+.2f}%".format(r["error_pct"])) for r in summary["records"]]
    text = format_table(rows, ("model", "size", "", "estimated ms", "measured ms", "error"))
    if summary.get("count"):
        text += ("\n\nMAPE {:.2f}%   largest error {:.2f}% ({})   within +-10%: {:.0%}   within +-7%: {:.0%}"
                 "   ({} networks)").format(summary["mape_pct"], summary["max_abs_error_pct"], summary["worst"],
                                           summary["within_10pct_share"], summary["within_7pct_share"],
                                           summary["count"])
    if summary.get("warnings"):
        text += "\n\nwarnings:\n" + "\n".join("  - " + w for w in summary["warnings"])
    return text


def write_json(path: str, payload: Dict[str, Any]) -> None:
    write_json_atomic(path, payload)


def write_csv(path: str, records: Sequence[Dict[str, Any]], fields: Sequence[str] = CSV_FIELDS) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: ("" if record.get(k) is None else record.get(k)) for k in fields})
    write_atomic(path, buffer.getvalue().encode("utf-8"))
