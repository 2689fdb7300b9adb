"""LatencyTable: file format, errors for bad tables, and the additive estimate."""

import json

import pytest

from dfseg.arch import PRESETS
from dfseg.errors import UserError
from dfseg.latency.table import SCHEMA, LatencyTable, MissingEntriesError
from dfseg.parts import network_parts
from dfseg.sizes import Size

SIZE = Size(224, 224)


def _table_for(arch, size=SIZE, overhead=0.0):
    entries = {}
    for i, part in enumerate(network_parts(arch, size.height, size.width)):
        entries[part.key] = {"median_ms": 0.1 * (i + 1), "p90_ms": 0.2, "std_ms": 0.01, "count": 10}
    return LatencyTable(entries, {"backend": "onnxruntime", "precision": "fp32", "device": "cpu-x",
                                  "overhead_ms": overhead})


def test_estimate_is_overhead_plus_sum_of_parts():
    arch = PRESETS["df1"]
    table = _table_for(arch, overhead=0.5)
    parts = network_parts(arch, 224, 224)
    # Repeated blocks share one key, so each occurrence adds that key's latency again.
    expected = 0.5 + sum(table.entries[p.key]["median_ms"] for p in parts)
    assert len({p.key for p in parts}) < len(parts)
    assert table.estimate(arch, SIZE) == pytest.approx(expected)
    assert table.missing(arch, SIZE) == []


def test_save_and_load_round_trip(tmp_path):
    table = _table_for(PRESETS["df1"])
    path = table.save(str(tmp_path / "t.json"))
    loaded = LatencyTable.load(path)
    assert loaded.entries == table.entries and loaded.meta == table.meta
    data = json.loads(open(path).read())
    assert data["schema"] == SCHEMA and data["complete"] is True


def test_missing_entries_are_listed_with_the_command_that_measures_them(tmp_path):
    table = _table_for(PRESETS["df1"])
    table.path = "tx2.json"
    with pytest.raises(MissingEntriesError) as info:
        table.estimate(PRESETS["df2"], SIZE)
    message = str(info.value)
    assert "basic:64x28x28->128x28x28/s1" in message
    assert "dfseg-bench --table tx2.json --models 64x2+128x1_128x10+256x1_256x4+512x2 --sizes 224x224" in message
    assert set(info.value.keys) == set(table.missing(PRESETS["df2"], SIZE))


def test_malformed_json_names_file_and_position(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"schema": "dfseg.latency-table/1",\n "entries": {,}}')
    with pytest.raises(UserError, match=r"bad.json: malformed JSON at line 2 column 14"):
        LatencyTable.load(str(path))


@pytest.mark.parametrize(
    "data, message",
    [
        ({"entries": {}}, "not a dfseg latency table"),
        ({"schema": "dfseg.latency-table/9", "complete": True, "entries": {}}, "unknown table schema"),
        ({"schema": SCHEMA, "complete": False, "entries": {}}, "the table is incomplete"),
        ({"schema": SCHEMA, "complete": True, "entries": []}, '"entries" must be an object'),
        ({"schema": SCHEMA, "complete": True, "entries": {"k": {"median_ms": -1}}}, 'entries\\["k"\\].median_ms'),
        ({"schema": SCHEMA, "complete": True, "entries": {"k": {"p90_ms": 1}}}, 'entries\\["k"\\].median_ms'),
    ],
)
def test_bad_tables_are_rejected_with_clear_errors(tmp_path, data, message):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=message):
        LatencyTable.load(str(path))


def test_incomplete_table_can_be_opened_for_resuming(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"schema": SCHEMA, "complete": False, "entries": {}}))
    assert len(LatencyTable.load(str(path), allow_incomplete=True)) == 0


def test_unreadable_file(tmp_path):
    with pytest.raises(UserError, match="cannot read latency table"):
        LatencyTable.load(str(tmp_path / "nope.json"))
