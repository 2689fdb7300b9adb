"""Jetson telemetry while benchmarking: board, L4T/JetPack, power mode, jetson_clocks, temperatures and
power rails, sampled in a background thread (mean watts and energy per benchmark).

Sources, best first:

* jetson-stats' ``jtop`` when it is importable *and* its service answers;
* otherwise sysfs/procfs, with a warning saying what is missing and how to get it:
  ``/etc/nv_tegra_release`` (L4T), ``/proc/device-tree/model`` (board),
  ``/sys/devices/virtual/thermal/thermal_zone*/{type,temp}`` (millidegrees),
  INA3221 power monitors -- JetPack 4 ``ina3221x/*/iio:device*/{rail_name_N,in_power N_input}``
  (mW) and JetPack 5/6 ``ina3221/*/hwmon/hwmon*/{inN_label,inN_input,currN_input}`` (mV, mA) --,
  ``/var/lib/nvpmodel/status`` (power mode) and
  ``/sys/devices/system/cpu/cpu*/cpufreq/scaling_{governor,min_freq,max_freq}``.

Every sysfs reader takes ``root`` ("/" on the device) so tests lay out a fake tree in a temporary
directory; a file that is missing or unreadable gives None / an empty dict, never an error.  Device
side: Python 3.6, no torch; jtop is imported lazily.
"""

import glob
import logging
import os
import re
import threading
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional

log = logging.getLogger("dfseg.jetson")

# L4T release -> JetPack, for the releases dfseg targets.
L4T_TO_JETPACK = {
    "32.6.1": "4.6", "32.7.1": "4.6.1", "32.7.2": "4.6.2", "32.7.3": "4.6.3", "32.7.4": "4.6.4",
    "32.7.5": "4.6.5", "35.1.0": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2",
    "35.5.0": "5.1.3", "35.6.0": "5.1.4", "36.2.0": "6.0 DP", "36.3.0": "6.0", "36.4.0": "6.1", "36.4.3": "6.2",
}
# Rails that already measure the whole module's input; preferred over summing the others.
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")


def read_under(root: str, path: str) -> Optional[str]:
    """``read_file`` of ``path`` under ``root``, NUL padding (device-tree strings) stripped too."""
    text = read_file(os.path.join(root, path.lstrip("/")))
    return None if text is None else text.strip("\x00").strip()


def read_file(path: str) -> Optional[str]:
    """A small text file (sysfs/procfs) stripped, or None when it is missing or unreadable."""
    try:
        with open(path) as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _int(text: Optional[str]) -> Optional[int]:
    try:
        return int(text.split()[0]) if text else None
    except ValueError:
        return None


# ------------------------------------------------------------------------------------ static facts
def l4t_release(root: str = "/") -> Optional[str]:
    """'32.7.1' from '# R32 (release), REVISION: 7.1, GCID: ...' in /etc/nv_tegra_release."""
    text = read_under(root, "etc/nv_tegra_release")
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)\.(\d+)", text or "")
    return "{}.{}.{}".format(*match.groups()) if match else None


def board_model(root: str = "/") -> Optional[str]:
    return read_under(root, "proc/device-tree/model")


def soc_name(root: str = "/") -> Optional[str]:
    """The SoC from the device tree's compatible list ('tegra186' on a TX2, 'tegra234' on an Orin)."""
    text = read_under(root, "proc/device-tree/compatible") or ""
    socs = [entry.split(",", 1)[-1] for entry in text.split("\x00") if "tegra" in entry]
    return socs[-1] if socs else None


def static_facts(root: str = "/") -> Dict[str, Optional[str]]:
    """What identifies a Jetson (no live readings): board/module, SoC and L4T release."""
    return {"board": board_model(root), "soc": soc_name(root), "l4t": l4t_release(root)}


def is_jetson(root: str = "/") -> bool:
    return os.path.exists(os.path.join(root, "etc/nv_tegra_release"))


def power_mode(root: str = "/") -> Optional[str]:
    """nvpmodel's active mode ('0' or '0 (MAXN)') from /var/lib/nvpmodel/status and /etc/nvpmodel.conf."""
    status = read_under(root, "var/lib/nvpmodel/status")
    match = re.search(r"pmode:(\d+)", status or "")
    if not match:
        return None
    number = str(int(match.group(1)))
    conf = read_under(root, "etc/nvpmodel.conf") or ""
    named = re.search(r"<\s*POWER_MODEL\s+ID=0*{}\s+NAME=(\S+?)\s*>".format(number or "0"), conf)
    return "{} ({})".format(number, named.group(1)) if named else number


def cpu_governors(root: str = "/") -> Dict[str, str]:
    found = {}
    for path in glob.glob(os.path.join(root, "sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")):
        governor = read_file(path)
        if governor:
            found[path.split(os.sep)[-3]] = governor
    return dict(sorted(found.items(), key=lambda item: int(re.sub(r"\D", "", item[0]) or 0)))


def cpu_frequencies(root: str = "/") -> Dict[str, Dict[str, int]]:
    """{cpuN: {"cur", "min", "max"}} in MHz, from each CPU's cpufreq files (the fields that are readable)."""
    found: Dict[str, Dict[str, int]] = {}
    for cpufreq in glob.glob(os.path.join(root, "sys/devices/system/cpu/cpu[0-9]*/cpufreq")):
        values = {}
        for name, leaf in (("cur", "scaling_cur_freq"), ("min", "scaling_min_freq"), ("max", "scaling_max_freq")):
            khz = _int(read_file(os.path.join(cpufreq, leaf)))
            if khz is not None:
                values[name] = khz // 1000
        if values:
            found[cpufreq.split(os.sep)[-2]] = values
    return dict(sorted(found.items(), key=lambda item: int(re.sub(r"\D", "", item[0]) or 0)))


def clocks_locked(root: str = "/") -> Optional[bool]:
    """The one rule for steady clocks: every CPU runs the performance governor or has its minimum frequency
    pinned to its maximum (what jetson_clocks does).  None when no cpufreq information is readable."""
    governors = cpu_governors(root)
    frequencies = cpu_frequencies(root)
    names = set(governors) | set(frequencies)
    if not names:
        return None
    return all(governors.get(name) == "performance"
               or ("min" in frequencies.get(name, {}) and frequencies[name].get("min") == frequencies[name].get("max"))
               for name in names)


# ------------------------------------------------------------------------------------ live readings
def temperatures(root: str = "/") -> Dict[str, float]:
    """{zone type: degrees C} from the thermal zones (values are millidegrees)."""
    temps = {}
    for zone in sorted(glob.glob(os.path.join(root, "sys/devices/virtual/thermal/thermal_zone*"))):
        name = read_file(os.path.join(zone, "type")) or os.path.basename(zone)
        value = _int(read_file(os.path.join(zone, "temp")))
        if value is not None and value > -40000:  # Jetsons report -40 C / -256 C for disabled zones
            temps[name] = value / 1000.0
    return temps


def power_rails(root: str = "/") -> Dict[str, float]:
    """{rail: watts} from the INA3221 monitors (JetPack 4 iio layout and JetPack 5/6 hwmon layout)."""
    rails = {}
    # JetPack 4 (TX2, Nano, Xavier): rail_name_N + in_power N_input in mW.
    for device in sorted(glob.glob(os.path.join(root, "sys/bus/i2c/drivers/ina3221x/*/iio:device*"))):
        for label in sorted(glob.glob(os.path.join(device, "rail_name_*"))):
            index = label.rsplit("_", 1)[-1]
            name = read_file(label)
            milliwatts = _int(read_file(os.path.join(device, "in_power{}_input".format(index))))
            if name and milliwatts is not None:
                rails[name] = milliwatts / 1000.0
    # JetPack 5/6 (Orin, Xavier on 35.x): inN_label, inN_input (mV), currN_input (mA).
    hwmons = glob.glob(os.path.join(root, "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"))
    for device in sorted(hwmons):
        for label in sorted(glob.glob(os.path.join(device, "in*_label"))):
            index = re.sub(r"\D", "", os.path.basename(label))
            name = read_file(label)
            millivolts = _int(read_file(os.path.join(device, "in{}_input".format(index))))
            milliamps = _int(read_file(os.path.join(device, "curr{}_input".format(index))))
            if name and millivolts is not None and milliamps is not None and "sum" not in name.lower():
                rails[name] = millivolts * milliamps / 1e6
    return rails


def total_power_w(rails: Dict[str, float]) -> Optional[float]:
    """The module input rail where there is one, else the sum of the rails (None without rails)."""
    if not rails:
        return None
    for name, watts in rails.items():
        if name.upper() in INPUT_RAILS:
            return watts
    return sum(rails.values())


# ------------------------------------------------------------------------------------ sources
class Reading(NamedTuple):
    time_s: float
    rails_w: Dict[str, float]
    temperatures_c: Dict[str, float]


class SysfsSource:
    """Telemetry read directly from sysfs/procfs under ``root``."""

    name = "sysfs"

    def __init__(self, root: str = "/") -> None:
        self.root = root

    def read(self) -> Reading:
        return Reading(time.monotonic(), power_rails(self.root), temperatures(self.root))

    def describe(self) -> Dict[str, Any]:
        l4t = l4t_release(self.root)
        return {
            "source": self.name,
            "board": board_model(self.root),
            "l4t": l4t,
            "jetpack": L4T_TO_JETPACK.get(l4t or ""),
            "power_mode": power_mode(self.root),
            "jetson_clocks": clocks_locked(self.root),
            "cpu_governors": cpu_governors(self.root) or None,
        }

    def close(self) -> None:
        pass


class JtopSource:
    """Telemetry from jetson-stats' jtop service (started on open; raises when unreachable)."""

    name = "jtop"

    def __init__(self) -> None:
        from jtop import jtop  # type: ignore  # jetson-stats, Jetson only

        self._jetson = jtop()
        self._jetson.start()
        if not self._jetson.ok():
            self._jetson.close()
            raise RuntimeError("jtop service did not answer")

    def read(self) -> Reading:
        power = self._jetson.power or {}
        rails = {}
        for name, rail in (power.get("rail", {}) if isinstance(power, dict) else {}).items():
            if isinstance(rail, dict) and "power" in rail:
                rails[name] = float(rail["power"]) / 1000.0  # jtop reports mW
        temps = {}
        for name, value in (self._jetson.temperature or {}).items():
            if isinstance(value, dict):  # jetson-stats 4.x: {"temp": C, "online": bool}
                if value.get("online", True) and value.get("temp") is not None:
                    temps[name] = float(value["temp"])
            elif isinstance(value, (int, float)):  # 3.x: plain degrees
                temps[name] = float(value)
        return Reading(time.monotonic(), rails, temps)

    def describe(self) -> Dict[str, Any]:
        board = self._jetson.board or {}
        hardware = board.get("hardware", {}) if isinstance(board, dict) else {}
        clocks = getattr(self._jetson, "jetson_clocks", None)
        return {
            "source": self.name,
            "board": hardware.get("Model") or hardware.get("Module"),
            "l4t": hardware.get("L4T"),
            "jetpack": hardware.get("Jetpack"),
            "power_mode": str(self._jetson.nvpmodel) if self._jetson.nvpmodel is not None else None,
            "jetson_clocks": bool(clocks.status == "running") if clocks is not None and hasattr(clocks, "status")
            else (bool(clocks) if clocks is not None else None),
            "cpu_governors": None,
        }

    def close(self) -> None:
        self._jetson.close()


def open_telemetry(root: str = "/", use_jtop: bool = True) -> Any:
    """jtop when possible, else sysfs with a warning that says why and how to get jtop."""
    if use_jtop and root == "/":
        try:
            return JtopSource()
        except ImportError:
            reason = "jetson-stats is not installed (sudo pip3 install -U jetson-stats, then reboot)"
        except Exception as exc:  # noqa: BLE001 -- jtop talks to a service: any failure means unavailable
            reason = "the jtop service is not reachable ({}); start it with sudo systemctl restart jtop.service".format(
                exc)
        if is_jetson(root):
            log.warning("Jetson telemetry from sysfs: %s; power rails and temperatures are read directly", reason)
    return SysfsSource(root)


# ------------------------------------------------------------------------------------ sampler
class TelemetrySummary(NamedTuple):
    source: str
    samples: int
    duration_s: float
    mean_w: Optional[float]  # total module power, None where no rail is readable
    energy_mj: Optional[float]  # integral of total power over the sampled window
    rails_mean_w: Dict[str, float]
    max_temperatures_c: Dict[str, float]

    def to_dict(self) -> Dict[str, Any]:
        return dict(self._asdict())


class TelemetrySampler:
    """Background sampling between ``start()`` and ``stop()`` (or as a context manager).

    ``stop()`` returns a ``TelemetrySummary``: mean watts and energy in mJ (trapezoidal integral of
    total power over the sample times), per-rail means and peak temperatures.  ``on_reading`` (optional)
    sees every reading as it is taken (a benchmark tags it with the model being timed).  With
    ``power_only``, no thread is started where the first reading has no power rail (a PC): sampling
    nothing must not take CPU from what is measured.
    """

    def __init__(self, source: Any = None, interval_s: float = 0.05,
                 clock: Callable[[], float] = time.monotonic,
                 on_reading: Optional[Callable[[Reading], None]] = None, power_only: bool = False) -> None:
        self.source = source if source is not None else open_telemetry()
        self.interval_s = interval_s
        self.clock = clock
        self.on_reading = on_reading
        self.power_only = power_only
        self.readings = []  # type: List[Reading]
        self._stop = threading.Event()
        self._thread = None  # type: Optional[threading.Thread]
        self._started = None  # type: Optional[float]
        self.summary = None  # type: Optional[TelemetrySummary]

    def start(self) -> "TelemetrySampler":
        if self._thread is not None:
            raise RuntimeError("TelemetrySampler already started")
        self.readings = []
        self.summary = None
        self._stop.clear()
        self._started = self.clock()
        self._sample()
        if self.power_only and not any(r.rails_w for r in self.readings):
            return self
        self._thread = threading.Thread(target=self._loop, name="dfseg-telemetry", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        try:
            reading = self.source.read()
        except Exception as exc:  # noqa: BLE001 -- a failed read must never stop the benchmark
            log.debug("telemetry read failed: %s", exc)
            return
        self.readings.append(reading)
        if self.on_reading is not None:
            self.on_reading(reading)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def stop(self) -> TelemetrySummary:
        if self._started is None or self.summary is not None:
            raise RuntimeError("TelemetrySampler.stop() before start() or twice")
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._sample()
        self.summary = summarize(self.readings, getattr(self.source, "name", "unknown"),
                                 self.clock() - (self._started or self.clock()))
        return self.summary

    def __enter__(self) -> "TelemetrySampler":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self._started is not None and self.summary is None:
            self.stop()


def summarize(readings: List[Reading], source: str, duration_s: float) -> TelemetrySummary:
    """Mean power, energy (trapezoid over the readings' times), per-rail means and peak temperatures."""
    totals = [(r.time_s, total_power_w(r.rails_w)) for r in readings]
    powered = [(t, w) for t, w in totals if w is not None]
    mean_w = energy_mj = None
    if powered:
        mean_w = sum(w for _, w in powered) / len(powered)
        if len(powered) >= 2:
            joules = sum((t1 - t0) * (w0 + w1) / 2.0 for (t0, w0), (t1, w1) in zip(powered, powered[1:]))
            energy_mj = joules * 1000.0
        else:
            energy_mj = mean_w * duration_s * 1000.0
    rails = {}  # type: Dict[str, List[float]]
    peaks = {}  # type: Dict[str, float]
    for reading in readings:
        for name, watts in reading.rails_w.items():
            rails.setdefault(name, []).append(watts)
        for name, celsius in reading.temperatures_c.items():
            peaks[name] = max(celsius, peaks.get(name, celsius))
    return TelemetrySummary(source, len(readings), duration_s, mean_w, energy_mj,
                            {name: sum(values) / len(values) for name, values in rails.items()}, peaks)


def describe(root: str = "/", use_jtop: bool = True) -> Dict[str, Any]:
    """Static facts plus one reading, for a benchmark's metadata (works off-Jetson: fields are None)."""
    source = open_telemetry(root, use_jtop)
    try:
        facts = source.describe()
        reading = source.read()
    finally:
        source.close()
    facts["power_w"] = reading.rails_w or None
    facts["temperatures_c"] = reading.temperatures_c or None
    return facts
