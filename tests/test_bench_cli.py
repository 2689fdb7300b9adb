"""dfseg-bench end to end on tiny networks: benchmark records, table + validation, bad tables, and a
device bundle run in a subprocess where torch cannot be imported.  Nothing here asserts a speed."""

import csv
import json
import os
import subprocess
import sys

import pytest

from dfseg.bench.bundle import write_bundle
from dfseg.bench.model_files import MANIFEST, ModelSpec, resolve_model
from dfseg.bench.suite import spec_parts
from dfseg.cli.bench import main
from dfseg.sizes import Size

QUICK = ["--rounds", "2", "--runs-per-round", "1", "--warmup", "0", "--no-progress"]
TINY_SEG = "64x1_64x1_64x1-wc19.19.19"
TINY_NET = "64x1_64x1_64x1"
SPACE = ["--space-widths", "64", "--space-blocks", "1-1,1-2,1-1"]  # a 2-member space at 224x224
NO_TORCH = "import sys; sys.modules['torch'] = None; from dfseg.cli.bench import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module")
def table(work):
    path = str(work / "table.json")
    argv = ["--table", path, "--models", TINY_SEG, "--sizes", "64x64", "--work-dir", str(work / "onnx")] + SPACE
    assert main(argv + QUICK) == 0
    return path


def test_benchmark_writes_json_and_csv(work, capsys):
    out_json, out_csv = str(work / "b.json"), str(work / "b.csv")
    argv = ["--models", "{},{}".format(TINY_SEG, TINY_NET), "--sizes", "64x64,96x64", "--backend", "onnxruntime",
            "--threads", "1", "--json", out_json, "--csv", out_csv, "--work-dir", str(work / "onnx")]
    assert main(argv + QUICK) == 0
    screen = capsys.readouterr().out
    assert "median ms" in screen and "mJ/frame" in screen and "backend: onnxruntime" in screen
    with open(out_json) as handle:
        data = json.load(handle)
    records = {(r["model"], r["size"]): r for r in data["records"]}
    assert set(records) == {(TINY_SEG, "64x64"), (TINY_SEG, "96x64"), (TINY_NET, "224x224")}
    for record in records.values():
        for field in ("model", "size", "backend", "precision", "median_ms", "p90_ms", "fps", "compute_median_ms"):
            assert record[field] is not None
        assert record["fps"] == pytest.approx(1000.0 / record["median_ms"], rel=1e-3)
    assert data["environment"]["machine"]["cpu"]["cpu_count"] >= 1 and data["machine_after"]
    with open(out_csv) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and {"model", "median_ms", "p90_ms", "fps"} <= set(rows[0])


def test_table_then_validation(work, table):
    out = str(work / "v.json")
    argv = ["--validate-table", table, "--models", TINY_SEG, "--sizes", "64x64", "--random", "2", "--json", out,
            "--work-dir", str(work / "onnx")] + SPACE
    assert main(argv + QUICK) == 0
    with open(out) as handle:
        data = json.load(handle)
    assert data["count"] == 3  # the model plus the space's two members
    for field in ("mape_pct", "max_abs_error_pct", "within_10pct_share"):
        assert isinstance(data[field], (int, float))
    assert os.path.getsize(data["png"]) > 1000
    with open(data["png"], "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_missing_entries_list_keys_and_the_command(work, table, capsys):
    argv = ["--validate-table", table, "--models", "df1", "--random", "0", "--work-dir", str(work / "onnx")]
    assert main(argv + QUICK) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("dfseg-bench: error: "), err  # before any warning
    assert "lacks" in err and "classifier:512x7x7->1000x1x1/s1" in err
    assert "measure them with: dfseg-bench --table {} --models df1".format(table) in err


def test_table_from_another_identity_warns_and_strict_refuses(work, table, capsys):
    with open(table) as handle:
        data = json.load(handle)
    identity = data["meta"]["identity"]
    assert identity["backend"] == "onnxruntime" and identity["threads"] == 1 and identity["precision"] == "fp32"
    assert identity["cores"] >= 1 and identity["cpu"] and identity["dfseg_version"]
    argv = ["--models", TINY_SEG, "--sizes", "64x64", "--random", "0", "--work-dir", str(work / "onnx")] + SPACE
    assert main(["--validate-table", table, "--strict"] + argv + QUICK) == 0  # its own identity: silent
    assert "identity" not in capsys.readouterr().err
    data["meta"]["identity"] = dict(identity, cpu=dict(identity["cpu"], model="999"), threads=4)
    other = str(work / "other-machine-table.json")
    with open(other, "w") as handle:
        json.dump(data, handle)
    assert main(["--validate-table", other] + argv + QUICK) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "identity" in line]
    assert len(warnings) == 1 and "threads 4 -> 1" in warnings[0] and "'999'" in warnings[0]
    assert main(["--validate-table", other, "--strict"] + argv + QUICK) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--strict" in err and other in err


@pytest.mark.parametrize("content, message", [
    ('{"schema": "dfseg.latency-table/1", "entries": {', "malformed JSON at line 1 column"),
    ('{"schema": "dfseg.latency-table/99", "complete": true, "meta": {}, "entries": {}}', "unknown table schema"),
])
def test_bad_tables_are_one_line_errors(work, content, message, capsys):
    path = str(work / "bad.json")
    with open(path, "w") as handle:
        handle.write(content)
    assert main(["--validate-table", path, "--random", "0"] + QUICK) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dfseg-bench: error: " + path) and message in err and "Traceback" not in err


def test_bundle_runs_without_torch(work):
    bundle = str(work / "bundle")
    benchmark = [resolve_model(TINY_SEG, Size(64, 64))]
    validation = benchmark + [ModelSpec(TINY_NET, resolve_model(TINY_NET).arch, Size(224, 224))]
    write_bundle(bundle, benchmark, spec_parts(validation), validation, show_progress=False,
                 calibration=validation[1:], extra={"table_sizes": ["64x64", "224x224"]})
    with open(os.path.join(bundle, MANIFEST)) as handle:
        manifest = json.load(handle)
    assert manifest["boundaries"]  # the boundary-stub probes the device's table needs
    assert all(len(entry["sha256"]) == 64 for entry in manifest["models"] + manifest["parts"] + manifest["boundaries"])

    def run(*argv):
        return subprocess.run([sys.executable, "-c", NO_TORCH] + list(argv) + QUICK, capture_output=True, text=True,
                              timeout=120)

    table = str(work / "device-table.json")
    result = run("--bundle", bundle, "--json", str(work / "device.json"))
    assert result.returncode == 0, result.stderr
    assert TINY_SEG in result.stdout
    result = run("--bundle", bundle, "--table", table)
    assert result.returncode == 0, result.stderr
    with open(table) as handle:
        meta = json.load(handle)["meta"]
    assert [n["label"] for n in meta["in_network"]["networks"]] == [validation[1].label]
    assert set(meta["in_network"]["factors"]) == {"other", "bottleneck"}
    assert meta["reference"]["id"] == manifest["reference"]["id"] and meta["identity"]["backend"] == "onnxruntime"
    result = run("--bundle", bundle, "--validate-table", table, "--json", str(work / "device-v.json"))
    assert result.returncode == 0, result.stderr
    with open(str(work / "device-v.json")) as handle:
        assert json.load(handle)["count"] == 2
    # without a bundle the device cannot export, and says what to do instead
    result = run("--models", TINY_NET)
    assert result.returncode == 2 and "dfseg-export --bundle" in result.stderr
    # a corrupted file is caught by its hash
    part_file = os.path.join(bundle, manifest["parts"][0]["file"])
    with open(part_file, "ab") as handle:
        handle.write(b"x")
    result = run("--bundle", bundle, "--table", str(work / "t2.json"))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and "sha256" in result.stderr, result.stderr


@pytest.fixture(scope="module")
def one_model_bundle(work):
    """A bundle of one benchmark model (TINY_SEG at 64x64), for tests to copy and damage."""
    path = str(work / "bundle-one")
    write_bundle(path, [resolve_model(TINY_SEG, Size(64, 64))], [], show_progress=False)
    return path


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_damaged_bundle_is_one_error_line_before_any_note_or_warning(one_model_bundle, tmp_path, damage):
    """Every file a run reads is checked before dfseg-bench says anything else: --pin-cpu's note (and, on a
    machine whose clocks it cannot read, the clocks warning) would otherwise come first."""
    import shutil

    bundle = str(tmp_path / "bundle")
    shutil.copytree(one_model_bundle, bundle)
    with open(os.path.join(bundle, MANIFEST)) as handle:
        model = os.path.join(bundle, json.load(handle)["models"][0]["file"])
    if damage == "missing":
        os.remove(model)
    else:
        os.truncate(model, 100)
    cpu = sorted(os.sched_getaffinity(0))[0]
    out = str(tmp_path / "out.json")
    result = subprocess.run([sys.executable, "-c", NO_TORCH, "--bundle", bundle, "--pin-cpu", str(cpu), "--json", out]
                            + QUICK, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    problem = "is missing; copy the whole bundle" if damage == "missing" else "sha256 does not match the manifest"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dfseg-bench: error: {}: ".format(model)) and problem in lines[0], \
        result.stderr
    assert not os.path.exists(out)


@pytest.mark.parametrize("escape", ["parent", "absolute", "symlink"])
def test_a_manifest_entry_outside_the_bundle_is_refused_before_any_work(one_model_bundle, tmp_path, escape, capsys):
    """A manifest naming ``../model.onnx``, an absolute path or a symbolic link that leads out of the bundle
    (each a real ONNX file whose sha256 the manifest holds) is one line naming the manifest, the entry and the
    fix; nothing is measured and no output is written."""
    import hashlib
    import shutil

    bundle = str(tmp_path / "bundle")
    shutil.copytree(one_model_bundle, bundle)
    manifest_path = os.path.join(bundle, MANIFEST)
    with open(manifest_path) as handle:
        manifest = json.load(handle)
    inside = os.path.join(bundle, manifest["models"][0]["file"])
    outside = str(tmp_path / "model.onnx")
    shutil.copy(inside, outside)
    if escape == "parent":
        name = "../model.onnx"
    elif escape == "absolute":
        name = outside
    else:
        os.remove(inside)
        os.symlink(outside, inside)
        name = manifest["models"][0]["file"]
    with open(outside, "rb") as handle:
        manifest["models"][0].update(file=name, sha256=hashlib.sha256(handle.read()).hexdigest())
    with open(manifest_path, "w") as handle:
        json.dump(manifest, handle)
    out = str(tmp_path / "out.json")
    assert main(["--bundle", bundle, "--json", out] + QUICK) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == ["dfseg-bench: error: {}: models[0] file {!r} lies outside the bundle folder "
                                         "{}; a bundle names only its own files: re-create it with dfseg-export "
                                         "--bundle {}".format(manifest_path, name, bundle, bundle)]
    assert not os.path.exists(out)


def test_sigint_to_the_process_stops_a_benchmark_and_keeps_what_it_measured(tmp_path):
    """A real SIGINT to dfseg-bench's own process, started as a shell starts ``cmd &`` (SIGINT ignored, so
    Python installs no handler of its own): it stops within seconds, exits 130 and writes the JSON and CSV
    of the size group measured before the signal (marked interrupted), while the large second size is still
    being measured."""
    import signal
    import threading
    import time

    out_json, out_csv = str(tmp_path / "b.json"), str(tmp_path / "b.csv")
    argv = [sys.executable, "-m", "dfseg.cli.bench", "--models", TINY_SEG, "--sizes", "64x64,1024x1024",
            "--backend", "onnxruntime", "--threads", "1", "--rounds", "20", "--runs-per-round", "1", "--warmup", "0",
            "--json", out_json, "--csv", out_csv, "--work-dir", str(tmp_path / "onnx")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(iter(lambda: proc.stderr.read(1), "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while "1/2" not in "".join(seen) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "1/2" in "".join(seen) and proc.poll() is None, "".join(seen)  # first size done, second running
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    stdout = proc.stdout.read()
    reader.join(10)
    err = "".join(seen)
    assert proc.returncode == 130 and err.rstrip().endswith("dfseg-bench: interrupted"), err
    assert "Traceback" not in err and "64x64" in stdout
    with open(out_json) as handle:
        data = json.load(handle)
    assert data["interrupted"] is True and [(r["model"], r["size"]) for r in data["records"]] == [(TINY_SEG, "64x64")]
    with open(out_csv) as handle:
        assert [row["size"] for row in csv.DictReader(handle)] == ["64x64"]
    assert sorted(os.listdir(str(tmp_path))) == ["b.csv", "b.json", "onnx"]  # no temporary file left
