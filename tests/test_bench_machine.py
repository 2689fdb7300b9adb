"""Machine state readers against this machine and against directory trees laid out like / (real files)."""

import json
import os

from dfseg import jetson
from dfseg.bench.machine import PowerSampler, describe_machine, machine_warnings


def write(root, relative, text):
    path = os.path.join(str(root), relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)


def cpu_tree(root, governor, min_khz, max_khz, cpus=2):
    write(root, "proc/cpuinfo", "processor\t: 0\nmodel name\t: Test CPU 9000\n")
    write(root, "proc/loadavg", "0.10 0.20 0.30 1/100 42\n")
    for cpu in range(cpus):
        base = "sys/devices/system/cpu/cpu{}/cpufreq/".format(cpu)
        write(root, base + "scaling_governor", governor + "\n")
        write(root, base + "scaling_cur_freq", "{}\n".format(max_khz))
        write(root, base + "scaling_min_freq", "{}\n".format(min_khz))
        write(root, base + "scaling_max_freq", "{}\n".format(max_khz))


def test_this_machine_is_described_as_json():
    state = describe_machine()
    json.dumps(state)
    assert state["device"] and state["os"] and state["dfseg_version"]
    assert state["cpu"]["cpu_count"] >= 1
    assert state["clocks_locked"] in (True, False, None)


def test_unlocked_governor_is_reported_and_warned(tmp_path):
    cpu_tree(tmp_path, "schedutil", 1000000, 2000000)
    state = describe_machine(root=str(tmp_path))
    assert state["device"] == "Test CPU 9000"
    assert state["cpu"]["governors"] == {"cpu0": "schedutil", "cpu1": "schedutil"}
    assert state["cpu"]["freq_mhz"] == {"cpu0": 2000, "cpu1": 2000}
    assert state["clocks_locked"] is False
    assert state["jetson"] is None
    assert any("not locked" in w for w in machine_warnings(state))


def test_performance_governor_counts_as_locked(tmp_path):
    cpu_tree(tmp_path, "performance", 1000000, 2000000)
    state = describe_machine(root=str(tmp_path))
    assert state["clocks_locked"] is True
    assert machine_warnings(state) == []


def test_jetson_tree(tmp_path):
    cpu_tree(tmp_path, "schedutil", 2035200, 2035200, cpus=4)  # jetson_clocks pins min to max
    write(tmp_path, "etc/nv_tegra_release", "# R32 (release), REVISION: 6.1, GCID: 27863751, BOARD: t186ref\n")
    write(tmp_path, "proc/device-tree/model", "quill\x00")
    write(tmp_path, "var/lib/nvpmodel/status", "pmode:0000\n")
    write(tmp_path, "etc/nvpmodel.conf", "< POWER_MODEL ID=0 NAME=MAXN >\n< POWER_MODEL ID=1 NAME=MAXQ >\n")
    write(tmp_path, "sys/devices/virtual/thermal/thermal_zone0/type", "GPU-therm\n")
    write(tmp_path, "sys/devices/virtual/thermal/thermal_zone0/temp", "41500\n")
    rails = "sys/bus/i2c/drivers/ina3221x/0-0040/iio:device0/"
    write(tmp_path, rails + "rail_name_0", "VDD_SYS_GPU\n")
    write(tmp_path, rails + "in_power0_input", "1520\n")
    write(tmp_path, rails + "rail_name_1", "VDD_IN\n")
    write(tmp_path, rails + "in_power1_input", "4800\n")
    state = describe_machine(root=str(tmp_path), use_jtop=False)
    assert state["l4t"] == "32.6.1" and state["jetpack"] == "4.6"
    assert state["device"] == "quill"
    assert state["power_mode"] == "0 (MAXN)"
    assert state["clocks_locked"] is True
    assert state["jetson"]["temperatures_c"] == {"GPU-therm": 41.5}
    assert state["jetson"]["power_w"] == {"VDD_SYS_GPU": 1.52, "VDD_IN": 4.8}
    # the sampler prefers the board's input rail (it already sums the others)
    sampler = PowerSampler(lambda: jetson.power_rails(str(tmp_path)), interval_s=0.01)
    with sampler:
        while len(sampler.samples) < 2:
            pass
    assert sampler.mean_w == 4.8


def test_no_rails_means_no_watts():
    sampler = PowerSampler(lambda: None)
    with sampler:
        pass
    assert sampler.mean_w is None
