"""Measuring latency tables for real (ONNX Runtime, exported parts) on tiny sizes; no speeds asserted."""

import json
import os

import pytest

from dfseg.arch import Arch
from dfseg.bench.boundary import boundary_shapes, shape_label
from dfseg.bench.model_files import HostSource
from dfseg.bench.protocol import Protocol
from dfseg.bench.table_journal import journal_path
from dfseg.bench.table_run import measure_table
from dfseg.errors import UserError
from dfseg.latency.table import SCHEMA, LatencyTable
from dfseg.parts import network_parts
from dfseg.sizes import Size

QUICK = Protocol(warmup_s=0.0, round_warmup_s=0.0, rounds=2, runs_per_round=1, max_remeasures=0)
TINY_SEG = Arch.parse("64x1_64x1_64x1-wc19.19.19")
SIZE = Size(64, 64)
META = {"device": "test-device", "backend": "onnxruntime", "precision": "fp32", "batch": 1}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return HostSource(str(tmp_path_factory.mktemp("onnx")))


@pytest.fixture(scope="module")
def parts():
    return network_parts(TINY_SEG, SIZE.height, SIZE.width)


class InterruptingSource:
    """Our own ModelSource interface, stopping the run (as Ctrl-C would) when a given part is opened."""

    def __init__(self, inner, stop_at_call):
        self.inner = inner
        self.stop_at_call = stop_at_call
        self.opened = []

    def overhead_path(self):
        return self.inner.overhead_path()

    def boundary_path(self, shape):
        return self.inner.boundary_path(shape)

    def reference_path(self):
        return self.inner.reference_path()

    def part_path(self, part):
        if len(self.opened) == self.stop_at_call:
            raise KeyboardInterrupt
        self.opened.append(part.key)
        return self.inner.part_path(part)


def test_complete_table_has_every_entry_and_metadata(tmp_path, source, parts):
    out = str(tmp_path / "table.json")
    table = measure_table(parts, source, out, dict(META), QUICK, threads=1, chunk_size=4, show_progress=False)
    loaded = LatencyTable.load(out)
    assert set(loaded.keys()) == {p.key for p in parts}
    for entry in loaded.entries.values():
        assert entry["count"] == 2 and entry["median_ms"] >= 0 and entry["p90_ms"] >= 0 and "std_ms" in entry
    assert loaded.meta["protocol"]["rounds"] == 2 and loaded.meta["protocol"]["threads"] == 1
    assert loaded.overhead_ms > 0
    assert not os.path.exists(journal_path(out))
    # Lat(x) = overhead + sum of the parts
    expected = loaded.overhead_ms + sum(loaded.lookup(p.key) for p in parts)
    assert loaded.estimate(TINY_SEG, SIZE) == pytest.approx(expected)
    assert table.to_dict()["schema"] == SCHEMA
    # entries are the stubbed part net of the overhead and of one stub per boundary tensor
    stubs = loaded.meta["boundary"]["stub_ms"]
    assert set(stubs) == {shape_label(s) for p in parts for s in boundary_shapes(p)}
    for part in parts:
        entry = loaded.entries[part.key]
        assert entry["boundary_ms"] == pytest.approx(sum(stubs[shape_label(s)] for s in boundary_shapes(part)),
                                                     abs=1e-4)
        # what is left of raw - stubs is the chunk's own per-call overhead (meta holds their median)
        overhead = entry["raw_median_ms"] - entry["boundary_ms"] - entry["median_ms"]
        assert entry["median_ms"] == 0.0 or -1e-4 <= overhead <= entry["raw_median_ms"]


def test_interrupted_run_is_incomplete_and_resumes(tmp_path, source, parts):
    out = str(tmp_path / "table.json")
    stopping = InterruptingSource(source, stop_at_call=5)  # stops inside the second chunk of 4
    with pytest.raises(KeyboardInterrupt):
        measure_table(parts, stopping, out, dict(META), QUICK, threads=1, chunk_size=4, show_progress=False)
    with open(out) as handle:
        partial = json.load(handle)
    assert partial["complete"] is False and len(partial["entries"]) == 4
    with pytest.raises(UserError, match="incomplete"):
        LatencyTable.load(out)
    # a torn last journal line (power cut mid-write) is ignored
    with open(journal_path(out), "a") as handle:
        handle.write('{"type": "entry", "key": "bro')
    resumed = InterruptingSource(source, stop_at_call=-1)
    measure_table(parts, resumed, out, dict(META), QUICK, threads=1, chunk_size=4, show_progress=False)
    assert sorted(resumed.opened) == sorted(p.key for p in parts[4:])  # only what was missing
    assert set(LatencyTable.load(out).keys()) == {p.key for p in parts}


def test_resuming_with_other_settings_is_refused(tmp_path, source, parts):
    out = str(tmp_path / "table.json")
    with pytest.raises(KeyboardInterrupt):
        measure_table(parts, InterruptingSource(source, 1), out, dict(META), QUICK, threads=1, chunk_size=1,
                      show_progress=False)
    with pytest.raises(UserError, match="different settings"):
        measure_table(parts, source, out, dict(META), QUICK, threads=2, chunk_size=1, show_progress=False)


def test_extending_a_table_from_another_backend_is_refused(tmp_path, source, parts):
    out = str(tmp_path / "table.json")
    LatencyTable({}, dict(META, backend="tensorrt")).save(out)
    with pytest.raises(UserError, match="tensorrt"):
        measure_table(parts[:1], source, out, dict(META), QUICK, show_progress=False)


def test_a_signal_during_the_last_write_still_leaves_the_partial_table(tmp_path, source, parts, monkeypatch):
    """Ctrl-C that lands while the complete table is being written: every journalled entry is on disk."""
    from dfseg.bench import table_run

    original = table_run._write

    def interrupted(*args, complete):
        if complete:
            raise KeyboardInterrupt
        return original(*args, complete=complete)

    monkeypatch.setattr(table_run, "_write", interrupted)
    partial = _interrupted_table(tmp_path, source, parts)
    assert partial["complete"] is False and set(partial["entries"]) == {p.key for p in parts}


def test_a_signal_right_after_the_journal_append_still_leaves_the_partial_table(tmp_path, source, parts, monkeypatch):
    """The window that a loaded CI machine hit: the chunk's records are on disk, then Ctrl-C."""
    from dfseg.journal import Journal

    original = Journal.append_many

    def then_interrupted(self, records):
        original(self, records)
        if any(r.get("type") == "entry" for r in records):
            raise KeyboardInterrupt

    monkeypatch.setattr(Journal, "append_many", then_interrupted)
    partial = _interrupted_table(tmp_path, source, parts)
    assert partial["complete"] is False and len(partial["entries"]) == 4


def _interrupted_table(tmp_path, source, parts):
    """Run a table that the test has rigged to be interrupted; the partial table it leaves."""
    out = str(tmp_path / "table.json")
    with pytest.raises(KeyboardInterrupt):
        measure_table(parts, source, out, dict(META), QUICK, threads=1, chunk_size=4, show_progress=False)
    with open(out) as handle:
        return json.load(handle)


def test_calibration_scales_entries_by_the_in_network_factor(tmp_path, source, parts):
    from dfseg.bench.model_files import ModelSpec

    out = str(tmp_path / "table.json")
    spec = ModelSpec(TINY_SEG.short(), TINY_SEG, SIZE)
    measure_table(parts, source, out, dict(META), QUICK, threads=1, chunk_size=4, show_progress=False,
                  calibration=[spec])
    table = LatencyTable.load(out)
    in_network = table.meta["in_network"]
    factor, reference_ms = in_network["factors"]["other"], table.meta["reference"]["median_ms"]
    assert in_network["factors"]["bottleneck"] == factor  # a network of one kind: one factor for all
    assert factor > 0 and [n["label"] for n in in_network["networks"]] == [spec.label]
    network = in_network["networks"][0]
    assert network["factor"] == pytest.approx(network["measured_relative"] / network["sum_relative"], rel=1e-3)
    for entry in table.entries.values():
        assert entry["median_ms"] == pytest.approx(entry["relative"] * factor * reference_ms, abs=1e-4)
    # so the calibration network is estimated as measured (beside the same reference)
    estimate = table.estimate(TINY_SEG, SIZE)
    measured = (network["measured_relative"] * reference_ms) + table.overhead_ms
    assert estimate == pytest.approx(measured, rel=0.01)
