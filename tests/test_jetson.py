"""Jetson telemetry: sysfs readers against fake root trees laid out like JetPack 4 and JetPack 5/6 boards,
the background sampler, and the real machine (must not crash; returns what exists)."""

import logging
import os
import time

import pytest

from dfseg import jetson
from dfseg.jetson import Reading, SysfsSource, TelemetrySampler, summarize


def write(root, path, text):
    full = os.path.join(str(root), path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as handle:
        handle.write(text)


@pytest.fixture
def nano_root(tmp_path):
    """A Jetson Nano on JetPack 4.6.1 (L4T 32.7.1): iio INA3221 rails in mW."""
    root = tmp_path / "nano"
    write(root, "etc/nv_tegra_release", "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, "
                                        "EABI: aarch64, DATE: Sat Feb 19 17:05:08 UTC 2022\n")
    write(root, "proc/device-tree/model", "NVIDIA Jetson Nano Developer Kit\x00")
    write(root, "var/lib/nvpmodel/status", "pmode:0000\n")
    write(root, "etc/nvpmodel.conf", "< POWER_MODEL ID=0 NAME=MAXN >\nCPU_ONLINE CORE_0 1\n"
                                     "< POWER_MODEL ID=1 NAME=5W >\n")
    iio = "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/"
    for index, (name, mw) in enumerate((("POM_5V_IN", 4123), ("POM_5V_GPU", 1510), ("POM_5V_CPU", 820))):
        write(root, iio + "rail_name_{}".format(index), name + "\n")
        write(root, iio + "in_power{}_input".format(index), "{}\n".format(mw))
    for index, (kind, milli) in enumerate((("AO-therm", 39500), ("CPU-therm", 41000), ("GPU-therm", 40500),
                                           ("PMIC-Die", 100000), ("thermal-fan-est", -256000))):
        write(root, "sys/devices/virtual/thermal/thermal_zone{}/type".format(index), kind + "\n")
        write(root, "sys/devices/virtual/thermal/thermal_zone{}/temp".format(index), "{}\n".format(milli))
    for cpu in range(4):
        base = "sys/devices/system/cpu/cpu{}/cpufreq/".format(cpu)
        write(root, base + "scaling_governor", "schedutil\n")
        write(root, base + "scaling_min_freq", "1479000\n")
        write(root, base + "scaling_max_freq", "1479000\n")
    return str(root)


@pytest.fixture
def orin_root(tmp_path):
    """A Jetson Orin Nano on JetPack 6.0 (L4T 36.3.0): hwmon INA3221 in mV and mA, no jetson_clocks."""
    root = tmp_path / "orin"
    write(root, "etc/nv_tegra_release", "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, "
                                        "EABI: aarch64, DATE: Mon May  6 17:34:21 UTC 2024\n")
    hwmon = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3/"
    for index, (name, mv, ma) in enumerate((("VDD_IN", 5080, 1230), ("VDD_CPU_GPU_CV", 5072, 410),
                                             ("VDD_SOC", 5080, 290)), start=1):
        write(root, hwmon + "in{}_label".format(index), name + "\n")
        write(root, hwmon + "in{}_input".format(index), "{}\n".format(mv))
        write(root, hwmon + "curr{}_input".format(index), "{}\n".format(ma))
    write(root, hwmon + "in7_label", "sum of shunt voltages\n")
    write(root, hwmon + "in7_input", "12\n")
    for cpu in range(2):
        base = "sys/devices/system/cpu/cpu{}/cpufreq/".format(cpu)
        write(root, base + "scaling_governor", "performance\n" if cpu == 0 else "schedutil\n")
        write(root, base + "scaling_min_freq", "115200\n")
        write(root, base + "scaling_max_freq", "1510400\n")
    return str(root)


def test_nano_static_facts(nano_root):
    assert jetson.is_jetson(nano_root)
    assert jetson.l4t_release(nano_root) == "32.7.1"
    facts = SysfsSource(nano_root).describe()
    assert facts["board"] == "NVIDIA Jetson Nano Developer Kit"
    assert facts["jetpack"] == "4.6.1"
    assert facts["power_mode"] == "0 (MAXN)"
    assert facts["jetson_clocks"] is True
    assert facts["cpu_governors"] == {"cpu0": "schedutil", "cpu1": "schedutil", "cpu2": "schedutil",
                                      "cpu3": "schedutil"}


def test_nano_rails_and_temperatures(nano_root):
    rails = jetson.power_rails(nano_root)
    assert rails == {"POM_5V_IN": 4.123, "POM_5V_GPU": 1.51, "POM_5V_CPU": 0.82}
    assert jetson.total_power_w(rails) == 4.123  # the input rail, not the sum
    temps = jetson.temperatures(nano_root)
    assert temps["CPU-therm"] == 41.0 and temps["PMIC-Die"] == 100.0
    assert "thermal-fan-est" not in temps  # -256 C marks a disabled zone


def test_orin_hwmon_rails(orin_root):
    rails = jetson.power_rails(orin_root)
    assert rails == {"VDD_IN": pytest.approx(6.2484), "VDD_CPU_GPU_CV": pytest.approx(2.07952),
                     "VDD_SOC": pytest.approx(1.4732)}
    facts = SysfsSource(orin_root).describe()
    assert facts["l4t"] == "36.3.0" and facts["jetpack"] == "6.0"
    assert facts["jetson_clocks"] is False and facts["power_mode"] is None and facts["board"] is None


def test_total_power_sums_without_an_input_rail():
    assert jetson.total_power_w({"VDD_GPU": 1.5, "VDD_CPU": 0.5}) == 2.0
    assert jetson.total_power_w({}) is None


def test_summary_energy_is_the_trapezoid_integral():
    readings = [Reading(0.0, {"VDD_IN": 4.0}, {"CPU": 40.0}), Reading(0.5, {"VDD_IN": 6.0}, {"CPU": 45.0}),
                Reading(1.5, {"VDD_IN": 6.0}, {"CPU": 43.0})]
    summary = summarize(readings, "sysfs", 1.5)
    assert summary.mean_w == pytest.approx(16.0 / 3)
    assert summary.energy_mj == pytest.approx((0.5 * 5.0 + 1.0 * 6.0) * 1000.0)
    assert summary.max_temperatures_c == {"CPU": 45.0}
    assert summary.rails_mean_w == {"VDD_IN": pytest.approx(16.0 / 3)}
    empty = summarize([Reading(0.0, {}, {})], "sysfs", 1.0)
    assert empty.mean_w is None and empty.energy_mj is None


def test_sampler_samples_in_the_background(nano_root):
    sampler = TelemetrySampler(SysfsSource(nano_root), interval_s=0.01)
    sampler.start()
    deadline = time.monotonic() + 30
    while len(sampler.readings) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    summary = sampler.stop()
    assert summary.source == "sysfs" and summary.samples >= 5
    assert summary.mean_w == pytest.approx(4.123)
    span = sampler.readings[-1].time_s - sampler.readings[0].time_s
    assert summary.energy_mj == pytest.approx(4.123 * span * 1000.0)
    with pytest.raises(RuntimeError):
        sampler.stop()


def test_open_telemetry_without_jtop_warns_on_a_jetson(nano_root, caplog):
    # A fake root is never read through jtop; on this machine jtop is not installed either.
    assert isinstance(jetson.open_telemetry(nano_root), SysfsSource)
    with caplog.at_level(logging.WARNING, logger="dfseg.jetson"):
        source = jetson.open_telemetry("/")
    assert isinstance(source, SysfsSource) or source.name == "jtop"
    if source.name == "sysfs" and jetson.is_jetson("/"):
        assert "sysfs" in caplog.text


def test_real_machine_does_not_crash():
    facts = jetson.describe("/")
    assert facts["source"] in ("sysfs", "jtop")
    assert facts["power_w"] is None or all(w >= 0 for w in facts["power_w"].values())
    if not jetson.is_jetson("/"):
        assert facts["l4t"] is None and facts["jetpack"] is None
    with TelemetrySampler(interval_s=0.01) as sampler:
        pass
    assert sampler.summary is not None and sampler.summary.samples >= 2
