"""dfseg-export --bundle and dfseg-bench --bundle on one bundle at once, as real processes: whichever
comes second is refused with one line while the first goes on, so a bench never reads a bundle that
an export is rewriting.  The first is held still (SIGSTOP) while the second tries: nothing is timed."""

import json
import os
import signal
import subprocess
import sys
import time

from test_bench_cli import QUICK, TINY_SEG

from dfseg.bench.bundle import write_bundle
from dfseg.bench.model_files import MANIFEST, resolve_model
from dfseg.bench.suite import spec_parts
from dfseg.sizes import Size


def locked_by(pid, path):
    """Whether process ``pid`` holds a flock on ``path`` (as /proc/locks lists it)."""
    inode = os.stat(path).st_ino
    with open("/proc/locks") as handle:
        for line in handle:
            fields = line.split()
            if "->" in fields:  # a waiter, not a holder
                continue
            if fields[1] == "FLOCK" and fields[4] == str(pid) and fields[5].rsplit(":", 1)[-1] == str(inode):
                return True
    return False


def start_and_hold(argv, path):
    """Start ``argv`` and stop it (SIGSTOP) once it holds its lock on ``path``."""
    process = subprocess.Popen([sys.executable, "-m", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    for _ in range(6000):  # a guard against a hang, not a timing: the lock comes before any work
        if process.poll() is not None:
            raise AssertionError("ended before taking its lock: {}".format(process.communicate()))
        if os.path.exists(path) and locked_by(process.pid, path):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("never locked {}".format(path))
    process.send_signal(signal.SIGSTOP)
    return process


def one_error_line(proc, prog):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prog + ": error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_an_export_into_a_bundle_that_a_bench_reads_is_refused_and_the_bench_finishes(tmp_path):
    bundle = str(tmp_path / "bundle")
    benchmark = [resolve_model(TINY_SEG, Size(64, 64))]
    write_bundle(bundle, benchmark, spec_parts(benchmark), show_progress=False)
    manifest = open(os.path.join(bundle, MANIFEST), "rb").read()
    files = sorted(os.listdir(bundle))
    result = str(tmp_path / "bench.json")
    bench = start_and_hold(["dfseg.cli.bench", "--bundle", bundle, "--json", result] + QUICK, bundle)
    try:
        export = subprocess.run([sys.executable, "-m", "dfseg.cli.export", "--bundle", bundle], capture_output=True,
                                text=True, timeout=300)
        line = one_error_line(export, "dfseg-export")
        assert line.startswith("dfseg-export: error: {}: another dfseg process is writing this output (or reading "
                               "it)".format(bundle)), line
        assert open(os.path.join(bundle, MANIFEST), "rb").read() == manifest and sorted(os.listdir(bundle)) == files
    finally:
        bench.send_signal(signal.SIGCONT)
    out, err = bench.communicate(timeout=300)
    assert bench.returncode == 0, err
    with open(result) as handle:
        assert json.load(handle)["records"]


def test_a_bench_of_a_bundle_that_an_export_writes_is_refused(tmp_path):
    bundle = str(tmp_path / "bundle")
    export = start_and_hold(["dfseg.cli.export", "--bundle", bundle, "df1-seg", "--size", "360p"], bundle)
    try:
        bench = subprocess.run([sys.executable, "-m", "dfseg.cli.bench", "--bundle", bundle, "--json",
                                str(tmp_path / "bench.json")] + QUICK, capture_output=True, text=True, timeout=300)
        line = one_error_line(bench, "dfseg-bench")
        assert line == ("dfseg-bench: error: {}: another dfseg process is writing this bundle (dfseg-export --bundle); "
                        "wait for it to finish".format(bundle)), line
        assert not os.path.exists(str(tmp_path / "bench.json"))
    finally:
        export.send_signal(signal.SIGCONT)
        export.send_signal(signal.SIGTERM)  # the export takes minutes: end it, as Ctrl-C would
    export.communicate(timeout=300)
    assert export.returncode == 143
    for folder, _, names in os.walk(bundle):  # what it left is whole files only
        assert not [name for name in names if name.startswith(".tmp-")], (folder, names)
