"""Machine state recorded before and after a benchmark: what was measured on, and whether it was steady.

On a Jetson: board, L4T/JetPack, nvpmodel power mode, whether jetson_clocks locked the clocks,
temperatures and power rails (jetson-stats' ``jtop`` when importable, else sysfs).  Elsewhere: CPU
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

# L4T release -> JetPack (the releases dfseg targets; others are reported as L4T only).
L4T_TO_JETPACK = {
    "32.4.3": "4.4", "32.4.4": "4.4.1", "32.5.0": "4.5", "32.5.1": "4.5.1", "32.5.2": "4.5.1",
    "32.6.1": "4.6", "32.7.1": "4.6.1", "32.7.2": "4.6.2", "32.7.3": "4.6.3", "32.7.4": "4.6.4",
    "35.1.0": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2", "36.3.0": "6.0",
    "36.4.0": "6.1",
}


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

    def read_int(self, *parts: str) -> Optional[int]:
        text = self.read(*parts)
        try:
            return int(text.split()[0]) if text else None
        except ValueError:
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
            governor = _read_file(os.path.join(cpu_dir, "cpufreq/scaling_governor"))
            if governor:
                governors[name] = governor
            for target, leaf in ((freqs_mhz, "scaling_cur_freq"), (max_mhz, "scaling_max_freq"),
                                 (min_mhz, "scaling_min_freq")):
                value = _read_file(os.path.join(cpu_dir, "cpufreq", leaf))
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

    # -------------------------------------------------------------- Jetson
    def is_jetson(self) -> bool:
        return os.path.exists(self.path("etc/nv_tegra_release"))

    def l4t(self) -> Optional[str]:
        text = self.read("etc/nv_tegra_release")
        if not text:
            return None
        match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
        if not match:
            return None
        return "{}.{}".format(match.group(1), match.group(2))

    def jetson_state(self) -> Dict[str, Any]:
        l4t = self.l4t()
        model = self.read("proc/device-tree/model")
        nvpmodel = self.read("etc/nvpmodel.conf")  # the configured table; the active mode needs the tool
        mode = _nvpmodel_mode(self.read("var/lib/nvpmodel/status"), nvpmodel)
        return {
            "board": model,
            "l4t": l4t,
            "jetpack": L4T_TO_JETPACK.get(l4t or ""),
            "power_mode": mode,
            "jetson_clocks": self._jetson_clocks_engaged(),
            "temperatures_c": self.temperatures(),
            "power_w": self.power_rails_w(),
        }

    def _jetson_clocks_engaged(self) -> Optional[bool]:
        # jetson_clocks pins every online CPU's minimum frequency to its maximum.
        cpu = self.cpu_state()
        minima, maxima = cpu.get("freq_min_mhz"), cpu.get("freq_max_mhz")
        if not minima or not maxima:
            return None
        return all(minima.get(name) == maxima.get(name) for name in maxima)

    def temperatures(self) -> Optional[Dict[str, float]]:
        temps = {}
        for zone in sorted(glob.glob(self.path("sys/class/thermal/thermal_zone*"))):
            kind = _read_file(os.path.join(zone, "type"))
            value = _read_file(os.path.join(zone, "temp"))
            if kind and value and value.lstrip("-").isdigit():
                temps[kind] = int(value) / 1000.0
        return temps or None

    def power_rails_w(self) -> Optional[Dict[str, float]]:
        """Instant power per rail from the INA3221 monitors (TX2/Xavier: in_power*, Orin: curr*/in*)."""
        rails = {}
        pattern = self.path("sys/bus/i2c/drivers/ina3221*/*/iio*device*")
        for device in sorted(glob.glob(pattern)):
            for label_file in sorted(glob.glob(os.path.join(device, "rail_name_*"))):
                index = label_file.rsplit("_", 1)[-1]
                name = _read_file(label_file)
                power = _read_file(os.path.join(device, "in_power{}_input".format(index)))
                if name and power and power.isdigit():
                    rails[name] = int(power) / 1000.0
        for device in sorted(glob.glob(self.path("sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"))):
            for label_file in sorted(glob.glob(os.path.join(device, "in*_label"))):
                index = re.sub(r"\D", "", os.path.basename(label_file))
                name = _read_file(label_file)
                volts = _read_file(os.path.join(device, "in{}_input".format(index)))
                amps = _read_file(os.path.join(device, "curr{}_input".format(index)))
                if name and volts and amps and volts.isdigit() and amps.isdigit():
                    rails[name] = int(volts) * int(amps) / 1e6
        return rails or None


def _cpu_index(path: str) -> int:
    digits = re.sub(r"\D", "", os.path.basename(path))
    return int(digits) if digits else 0


def _read_file(path: str) -> Optional[str]:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _nvpmodel_mode(status: Optional[str], conf: Optional[str]) -> Optional[str]:
    if not status:
        return None
    match = re.search(r"pmode:(\d+)", status)
    if not match:
        return status
    number = str(int(match.group(1)))
    if conf:
        named = re.search(r"<\s*POWER_MODEL\s+ID=0*{}\s+NAME=(\S+)\s*>".format(number), conf)
        if named:
            return "{} ({})".format(number, named.group(1))
    return number


def _jtop_state() -> Optional[Dict[str, Any]]:
    """Board facts from jetson-stats when it is installed and its service answers."""
    try:
        from jtop import jtop  # type: ignore
    except ImportError:
        return None
    try:
        with jtop() as jetson:
            if not jetson.ok():
                return None
            board = jetson.board or {}
            hardware = board.get("hardware", {}) if isinstance(board, dict) else {}
            libraries = board.get("libraries", {}) if isinstance(board, dict) else {}
            power = jetson.power or {}
            rails = power.get("rail", {}) if isinstance(power, dict) else {}
            return {
                "board": hardware.get("Model") or hardware.get("Module"),
                "l4t": hardware.get("L4T"),
                "jetpack": hardware.get("Jetpack"),
                "power_mode": str(jetson.nvpmodel) if jetson.nvpmodel is not None else None,
                "jetson_clocks": bool(jetson.jetson_clocks.status == "running") if jetson.jetson_clocks else None,
                "temperatures_c": {k: v.get("temp") for k, v in (jetson.temperature or {}).items()
                                   if isinstance(v, dict)} or None,
                "power_w": {k: v.get("power", 0) / 1000.0 for k, v in rails.items() if isinstance(v, dict)} or None,
                "tensorrt": libraries.get("TensorRT"),
            }
    except Exception:  # noqa: BLE001 -- jtop talks to a service; any failure means "not available"
        return None


def describe_machine(root: str = "/", use_jtop: bool = True) -> Dict[str, Any]:
    """A JSON-ready description of the machine and its current state."""
    reader = MachineReader(root)
    cpu = reader.cpu_state()
    jetson: Optional[Dict[str, Any]] = None
    if reader.is_jetson():
        jetson = (_jtop_state() if use_jtop and root == "/" else None) or reader.jetson_state()
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
        self.read_rails = read_rails or MachineReader("/").power_rails_w
        self.interval_s = interval_s
        self.samples: List[float] = []
        self.on_sample: Optional[Callable[[float], None]] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _total(self) -> Optional[float]:
        rails = self.read_rails()
        if not rails:
            return None
        # Jetson boards report an input rail that already sums the others; prefer it when present.
        for name, watts in rails.items():
            if "IN" in name.upper() and ("VDD_IN" in name.upper() or "POM_5V_IN" in name.upper()):
                return watts
        return sum(rails.values())

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
