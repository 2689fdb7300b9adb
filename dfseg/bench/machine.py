"""Machine state recorded before and after a benchmark: what was measured on, and whether it was steady.

On a Jetson: board, L4T/JetPack, nvpmodel power mode, whether jetson_clocks locked the clocks,
temperatures and power rails, all from ``dfseg.jetson`` (jetson-stats' ``jtop`` when its service
answers, else sysfs; the one telemetry module).  Elsewhere: CPU model, cores, frequency and governor
where readable.  ``machine_identity`` says which machines' tables are comparable.  Every reader tolerates missing files: a field
that cannot be read is None, never an error.

``root`` lets tests point the readers at a directory laid out like ``/`` (real files, no mocks).
Device side: Python 3.6, no torch.
"""

import glob
import hashlib
import os
import platform
import re
import socket
import time
from typing import Any, Dict, List, Optional

import dfseg

from .. import jetson as jetson_telemetry


class MachineReader:
    """Static facts and CPU state under ``root``, through ``dfseg.jetson``'s sysfs readers (the one place
    that reads sysfs and decides whether clocks are locked)."""

    def __init__(self, root: str = "/") -> None:
        self.root = root

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *[p.lstrip("/") for p in parts])

    def read(self, *parts: str) -> Optional[str]:
        return jetson_telemetry.read_under(self.root, os.path.join(*parts))

    # -------------------------------------------------------------- generic Linux
    def cpu_model(self) -> Optional[str]:
        text = self.read("proc/cpuinfo") or ""
        for field in ("model name", "Hardware", "Processor", "cpu model"):
            match = re.search(r"^{}\s*:\s*(.+)$".format(field), text, re.M)
            if match:
                return match.group(1).strip()
        return platform.processor() or None

    def cpu_dirs(self) -> List[str]:
        return sorted(glob.glob(self.path("sys/devices/system/cpu/cpu[0-9]*")), key=_cpu_index)

    def cpu_state(self) -> Dict[str, Any]:
        frequencies = jetson_telemetry.cpu_frequencies(self.root)

        def column(name: str) -> Optional[Dict[str, int]]:
            values = {cpu: f[name] for cpu, f in frequencies.items() if name in f}
            return values or None

        online = self.read("sys/devices/system/cpu/online")
        return {
            "cpu_model": self.cpu_model(),
            "cpu_count": os.cpu_count() if self.root == "/" else (len(self.cpu_dirs()) or None),
            "cpus_online": online,
            "affinity": sorted(os.sched_getaffinity(0)) if self.root == "/" and hasattr(os, "sched_getaffinity")
            else None,
            "governors": jetson_telemetry.cpu_governors(self.root) or None,
            "freq_mhz": column("cur"),
            "freq_min_mhz": column("min"),
            "freq_max_mhz": column("max"),
            "loadavg": self.read("proc/loadavg"),
        }

    def clocks_locked(self, jetson: Optional[Dict[str, Any]]) -> Optional[bool]:
        """jtop's jetson_clocks status where it answered, else ``dfseg.jetson.clocks_locked``."""
        if jetson is not None and jetson.get("jetson_clocks") is not None:
            return bool(jetson["jetson_clocks"])
        return jetson_telemetry.clocks_locked(self.root)


def _cpu_index(path: str) -> int:
    digits = re.sub(r"\D", "", os.path.basename(path))
    return int(digits) if digits else 0


def describe_machine(root: str = "/", use_jtop: bool = True) -> Dict[str, Any]:
    """A JSON-ready description of the machine and its current state."""
    reader = MachineReader(root)
    cpu = reader.cpu_state()
    jetson: Optional[Dict[str, Any]] = None
    if jetson_telemetry.is_jetson(root):
        jetson = jetson_telemetry.describe(root, use_jtop)
    device = (jetson or {}).get("board") or cpu.get("cpu_model") or platform.machine()
    return {
        "device": device,
        "soc": (jetson or {}).get("board") or cpu.get("cpu_model"),
        "hostname": socket.gethostname() if root == "/" else None,
        "os": "{} {}".format(platform.system(), platform.release()),
        "python": platform.python_version(),
        "dfseg_version": dfseg.__version__,
        "l4t": (jetson or {}).get("l4t"),
        "jetpack": (jetson or {}).get("jetpack"),
        "power_mode": (jetson or {}).get("power_mode"),
        "clocks_locked": reader.clocks_locked(jetson),
        "jetson": jetson,
        "cpu": cpu,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ---------------------------------------------------------------------- identity
# What makes two latency tables comparable.  Speeds differ between two CPUs of one model far less
# than between models, so the hostname, clocks and load are state, not identity.
IDENTITY_FIELDS = ("cpu", "soc", "module", "cores", "backend", "backend_version", "threads", "precision",
                   "dfseg_version")


def cpu_identity(root: str = "/") -> Dict[str, Any]:
    """The first processor's identity from /proc/cpuinfo: vendor, family, model, stepping and a hash of
    its flags (x86), or implementer, part, variant, revision and a hash of its features (Arm)."""
    text = MachineReader(root).read("proc/cpuinfo") or ""
    first = text.split("\n\n")[0]
    fields = {}
    for line in first.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    flags = fields.get("flags") or fields.get("Features")
    out: Dict[str, Any] = {}
    for name, key in (("vendor", "vendor_id"), ("family", "cpu family"), ("model", "model"),
                      ("stepping", "stepping"), ("implementer", "CPU implementer"), ("part", "CPU part"),
                      ("variant", "CPU variant"), ("revision", "CPU revision")):
        if fields.get(key):
            out[name] = fields[key]
    if fields.get("model name"):
        out["name"] = fields["model name"]
    if flags:
        out["flags_sha1"] = hashlib.sha1(" ".join(sorted(flags.split())).encode("ascii", "replace")).hexdigest()[:12]
    return out or {"name": platform.processor() or platform.machine()}


def machine_identity(backend: Optional[str], backend_version: Optional[str], threads: Optional[int],
                     precision: Optional[str], root: str = "/") -> Dict[str, Any]:
    """The identity a latency table is stored with (``meta.identity``) and compared by."""
    jetson = jetson_telemetry.static_facts(root) if jetson_telemetry.is_jetson(root) else {}
    reader = MachineReader(root)
    return {
        "cpu": cpu_identity(root),
        "soc": jetson.get("soc"),
        "module": jetson.get("board"),
        "cores": os.cpu_count() if root == "/" else (len(reader.cpu_dirs()) or None),
        "backend": backend,
        "backend_version": backend_version,
        "threads": threads,
        "precision": precision,
        "dfseg_version": dfseg.__version__,
    }


def identity_differences(recorded: Optional[Dict[str, Any]], current: Dict[str, Any]) -> List[str]:
    """'field: recorded -> current' for every identity field that differs (None: nothing recorded)."""
    if recorded is None:
        return ["no machine identity recorded (an older dfseg)"]
    out = []
    for field in IDENTITY_FIELDS:
        if recorded.get(field) != current.get(field):
            before, now = recorded.get(field), current.get(field)
            if field == "cpu":
                keys = sorted(k for k in set(before or {}) | set(now or {})
                              if (before or {}).get(k) != (now or {}).get(k))
                before = {k: (before or {}).get(k) for k in keys}
                now = {k: (now or {}).get(k) for k in keys}
            out.append("{} {} -> {}".format(field, before, now))
    return out


def identity_warning(what: str, recorded: Optional[Dict[str, Any]], current: Dict[str, Any],
                     strict: bool = False) -> Optional[str]:
    """One line when ``what`` (a table) comes from another identity than ``current``; with ``strict`` a
    UserError instead (exit 2)."""
    differences = identity_differences(recorded, current)
    if not differences:
        return None
    message = "{} comes from another machine identity ({}); its latencies may not hold here".format(
        what, "; ".join(differences))
    if strict:
        from ..errors import UserError

        raise UserError(message + " (--strict): measure a table on this machine with these settings, or leave out "
                                  "--strict")
    return message


def machine_warnings(state: Dict[str, Any]) -> List[str]:
    warnings = []
    if state.get("clocks_locked") is False:
        if state.get("jetson"):
            warnings.append("clocks are not locked: run `sudo nvpmodel -m 0 && sudo jetson_clocks` for stable numbers")
        else:
            warnings.append("CPU frequency is not locked (governor {}); numbers may drift: "
                            "`cpupower frequency-set -g performance` where allowed".format(
                                sorted(set((state.get("cpu") or {}).get("governors", {}).values())) or "unknown"))
    elif state.get("clocks_locked") is None:
        warnings.append("cannot tell whether clocks are locked (no cpufreq information readable)")
    return warnings


def pin_to_cpus(spec: str) -> Optional[List[int]]:
    """Restrict this process (and the threads it starts) to CPUs: 'auto' = the least busy one, or '0,1'."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    from ..errors import UserError

    if spec == "auto":
        cpus = [least_busy_cpu()]
    else:
        try:
            cpus = [int(c) for c in spec.split(",") if c.strip()]
        except ValueError:
            raise UserError("--pin-cpu {!r}: use auto or a comma-separated list of CPU numbers".format(spec)) from None
    if not cpus:
        raise UserError("--pin-cpu {!r}: names no CPU; use auto or a comma-separated list of CPU numbers".format(spec))
    allowed = os.sched_getaffinity(0)
    bad = [c for c in cpus if c not in allowed]
    if bad or not cpus:
        raise UserError("--pin-cpu {!r}: CPU(s) {} are not available to this process (available: {})".format(
            spec, bad, sorted(allowed)))
    os.sched_setaffinity(0, cpus)
    return cpus


def least_busy_cpu(window_s: float = 0.3) -> int:
    """The allowed CPU with the most idle time over a short window (from /proc/stat)."""
    allowed = sorted(os.sched_getaffinity(0))

    def idle_times() -> Dict[int, int]:
        times = {}
        with open("/proc/stat") as handle:
            for line in handle:
                match = re.match(r"cpu(\d+)\s+(.*)", line)
                if match:
                    fields = [int(v) for v in match.group(2).split()]
                    times[int(match.group(1))] = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return times

    try:
        before = idle_times()
        time.sleep(window_s)
        after = idle_times()
    except OSError:
        return allowed[0]
    return max(allowed, key=lambda cpu: (after.get(cpu, 0) - before.get(cpu, 0), -cpu))
