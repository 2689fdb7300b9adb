"""Machine state recorded before and after a benchmark: what was measured on, and whether it was steady.

On a Jetson: board, L4T/JetPack, nvpmodel power mode, whether jetson_clocks locked the clocks,
temperatures and power rails, all from ``dfseg.jetson`` (jetson-stats' ``jtop`` when its service
answers, else sysfs).  PowerSampler tags rail power with the model being measured.  Elsewhere: CPU
model, cores, frequency and governor where readable.  Every reader tolerates missing files: a field
that cannot be read is None, never an error.

``root`` lets tests point the readers at a directory laid out like ``/`` (real files, no mocks).
Device side: Python 3.6, no torch.
"""

import glob
import os
import platform
import re
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import dfseg

from .. import jetson as jetson_telemetry


class MachineReader:
    def __init__(self, root: str = "/") -> None:
        self.root = root

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *[p.lstrip("/") for p in parts])

    def read(self, *parts: str) -> Optional[str]:
        try:
            with open(self.path(*parts)) as handle:
                return handle.read().strip().strip("\x00")
        except (OSError, UnicodeDecodeError):
            return None

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
        governors, freqs_mhz, max_mhz, min_mhz = {}, {}, {}, {}
        for cpu_dir in self.cpu_dirs():
            name = os.path.basename(cpu_dir)
            governor = jetson_telemetry.read_file(os.path.join(cpu_dir, "cpufreq/scaling_governor"))
            if governor:
                governors[name] = governor
            for target, leaf in ((freqs_mhz, "scaling_cur_freq"), (max_mhz, "scaling_max_freq"),
                                 (min_mhz, "scaling_min_freq")):
                value = jetson_telemetry.read_file(os.path.join(cpu_dir, "cpufreq", leaf))
                if value and value.isdigit():
                    target[name] = int(value) // 1000
        online = self.read("sys/devices/system/cpu/online")
        return {
            "cpu_model": self.cpu_model(),
            "cpu_count": os.cpu_count() if self.root == "/" else (len(self.cpu_dirs()) or None),
            "cpus_online": online,
            "affinity": sorted(os.sched_getaffinity(0)) if self.root == "/" and hasattr(os, "sched_getaffinity")
            else None,
            "governors": governors or None,
            "freq_mhz": freqs_mhz or None,
            "freq_min_mhz": min_mhz or None,
            "freq_max_mhz": max_mhz or None,
            "loadavg": self.read("proc/loadavg"),
        }

    def clocks_locked(self, cpu: Dict[str, Any], jetson: Optional[Dict[str, Any]]) -> Optional[bool]:
        """True when the CPU cannot change frequency (performance governor or min == max), None if unknown."""
        if jetson is not None and jetson.get("jetson_clocks") is not None:
            return bool(jetson["jetson_clocks"])
        governors = cpu.get("governors")
        if not governors:
            return None
        pinned = cpu.get("freq_min_mhz") or {}
        maxima = cpu.get("freq_max_mhz") or {}
        return all(gov == "performance" or (name in pinned and pinned.get(name) == maxima.get(name))
                   for name, gov in governors.items())


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
        "clocks_locked": reader.clocks_locked(cpu, jetson),
        "jetson": jetson,
        "cpu": cpu,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


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


class PowerSampler:
    """Samples total rail power in a background thread while a benchmark runs (Jetson only).

    ``mean_w`` is None where no rails are readable, so callers print '-' instead of inventing a number.
    """

    def __init__(self, read_rails: Optional[Callable[[], Optional[Dict[str, float]]]] = None,
                 interval_s: float = 0.1) -> None:
        self.read_rails = read_rails or jetson_telemetry.power_rails
        self.interval_s = interval_s
        self.samples: List[float] = []
        self.on_sample: Optional[Callable[[float], None]] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _total(self) -> Optional[float]:
        return jetson_telemetry.total_power_w(self.read_rails() or {})

    def __enter__(self) -> "PowerSampler":
        if self._total() is None:
            return self
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            value = self._total()
            if value is not None:
                self.samples.append(value)
                if self.on_sample is not None:
                    self.on_sample(value)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def mean_w(self) -> Optional[float]:
        return sum(self.samples) / len(self.samples) if self.samples else None


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
