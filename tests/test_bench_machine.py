"""Machine state readers against this machine and against directory trees laid out like / (real files)."""

import json
import os
import time

from dfseg import jetson
from dfseg.bench.machine import describe_machine, machine_warnings
from dfseg.jetson import TelemetrySampler


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
    seen = []
    sampler = TelemetrySampler(jetson.SysfsSource(str(tmp_path)), interval_s=0.01, power_only=True,
                               on_reading=lambda reading: seen.append(jetson.total_power_w(reading.rails_w)))
    with sampler:
        while len(seen) < 3:
            time.sleep(0.01)
    assert sampler.summary.mean_w == 4.8 and set(seen) == {4.8}


def test_no_rails_means_no_watts_and_no_sampling_thread(tmp_path):
    sampler = TelemetrySampler(jetson.SysfsSource(str(tmp_path)), interval_s=0.01, power_only=True)
    with sampler:
        assert sampler._thread is None
        time.sleep(0.05)
    assert sampler.summary.mean_w is None and sampler.summary.samples == 1


X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 167
model name\t: Intel(R) Xeon(R) CPU
stepping\t: 1
flags\t\t: fpu sse avx512f avx512_vnni

processor\t: 1
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 167
stepping\t: 1
flags\t\t: fpu sse avx512f avx512_vnni
"""
ARM_CPUINFO = """processor\t: 0
model name\t: ARMv8 Processor rev 3 (v8l)
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x1
CPU part\t: 0xd07
CPU revision\t: 3
"""


def test_identity_names_the_cpu_and_the_settings(tmp_path):
    from dfseg.bench.machine import cpu_identity, identity_differences, machine_identity

    write(tmp_path, "proc/cpuinfo", X86_CPUINFO)
    cpu = cpu_identity(str(tmp_path))
    assert {k: cpu[k] for k in ("vendor", "family", "model", "stepping")} == {
        "vendor": "GenuineIntel", "family": "6", "model": "167", "stepping": "1"}
    reordered = X86_CPUINFO.replace("fpu sse avx512f avx512_vnni", "avx512_vnni sse fpu avx512f")
    write(tmp_path / "b", "proc/cpuinfo", reordered)
    assert cpu_identity(str(tmp_path / "b"))["flags_sha1"] == cpu["flags_sha1"]  # order does not matter
    write(tmp_path / "c", "proc/cpuinfo", X86_CPUINFO.replace(" avx512_vnni", ""))
    assert cpu_identity(str(tmp_path / "c"))["flags_sha1"] != cpu["flags_sha1"]
    a = machine_identity("onnxruntime", "1.20", 1, "fp32", root=str(tmp_path))
    b = machine_identity("onnxruntime", "1.20", 2, "fp32", root=str(tmp_path / "c"))
    differences = identity_differences(a, b)
    assert len(differences) == 2 and differences[1] == "threads 1 -> 2" and "flags_sha1" in differences[0]
    assert identity_differences(a, dict(a)) == []
    assert identity_differences(None, a) == ["no machine identity recorded (an older dfseg)"]


def test_identity_of_a_jetson_names_soc_and_module(tmp_path):
    from dfseg.bench.machine import machine_identity

    write(tmp_path, "proc/cpuinfo", ARM_CPUINFO)
    write(tmp_path, "etc/nv_tegra_release", "# R32 (release), REVISION: 7.1, GCID: 1\n")
    write(tmp_path, "proc/device-tree/model", "quill\x00")
    write(tmp_path, "proc/device-tree/compatible", "nvidia,p3310-1000+p3489-0888\x00nvidia,tegra186\x00")
    identity = machine_identity("tensorrt", "8.2.1", None, "fp16", root=str(tmp_path))
    assert identity["soc"] == "tegra186" and identity["module"] == "quill"
    assert identity["cpu"]["part"] == "0xd07" and identity["cpu"]["implementer"] == "0x41"
    assert len(identity["cpu"]["flags_sha1"]) == 12


def test_clocks_locked_is_one_rule(tmp_path):
    for cpu, governor, low, high in (("cpu0", "schedutil", "345600", "2035200"), ("cpu1", "performance", "1", "2")):
        write(tmp_path, "sys/devices/system/cpu/{}/cpufreq/scaling_governor".format(cpu), governor)
        write(tmp_path, "sys/devices/system/cpu/{}/cpufreq/scaling_min_freq".format(cpu), low)
        write(tmp_path, "sys/devices/system/cpu/{}/cpufreq/scaling_max_freq".format(cpu), high)
    assert jetson.clocks_locked(str(tmp_path)) is False  # cpu0 can still change frequency
    write(tmp_path, "sys/devices/system/cpu/cpu0/cpufreq/scaling_min_freq", "2035200")
    assert jetson.clocks_locked(str(tmp_path)) is True  # pinned as jetson_clocks does, cpu1 by its governor
    assert describe_machine(str(tmp_path), use_jtop=False)["clocks_locked"] is True
    assert jetson.clocks_locked(str(tmp_path / "nothing")) is None
