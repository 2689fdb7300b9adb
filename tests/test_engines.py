"""Engine cache: keys, sidecars, corruption and mismatch detection, atomic files (real files, no TensorRT)."""

import json
import logging
import os

import pytest

from dfseg.backends.tensorrt.engines import CORRUPT, HIT, MISMATCH, MISSING, EngineCache, EngineSpec, sha256_bytes
from dfseg.errors import UserError


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "df1-seg-640x360.onnx"
    path.write_bytes(b"onnx model bytes v1")
    return str(path)


def spec_for(model, **changes):
    fields = dict(input_shapes={"input": (1, 3, 360, 640)}, precision="fp16", tensorrt_version="8.2.1",
                  device="NVIDIA Tegra X1 sm53", builder_flags={"workspace_mb": 1024, "fp32_layers": []})
    fields.update(changes)
    return EngineSpec.create(model, **fields)


def test_key_depends_on_every_field(model, tmp_path):
    base = spec_for(model)
    variants = [
        spec_for(model, input_shapes={"input": (1, 3, 720, 1280)}),
        spec_for(model, precision="fp32"),
        spec_for(model, tensorrt_version="10.3.0"),
        spec_for(model, device="Orin sm87"),
        spec_for(model, builder_flags={"workspace_mb": 2048, "fp32_layers": []}),
        spec_for(model, builder_flags={"workspace_mb": 1024, "fp32_layers": ["/head/"]}),
    ]
    other = tmp_path / "other.onnx"
    other.write_bytes(b"onnx model bytes v2")
    variants.append(spec_for(str(other)))
    keys = {base.key()} | {v.key() for v in variants}
    assert len(keys) == len(variants) + 1
    # Same inputs -> same key (flag order does not matter).
    again = spec_for(model, builder_flags={"fp32_layers": [], "workspace_mb": 1024})
    assert again.key() == base.key()
    assert base.file_stem().startswith("df1-seg-640x360-1x3x360x640-fp16-trt8.2.1-")


def test_precision_is_validated(model):
    with pytest.raises(UserError, match="precision 'fp64'"):
        spec_for(model, precision="fp64")


def test_build_then_hit_then_files_are_plain(model, tmp_path):
    cache = EngineCache(str(tmp_path / "engines"))
    spec = spec_for(model)
    builds = []

    def build():
        builds.append(1)
        return b"serialized engine " * 100

    data, hit = cache.get_or_build(spec, build)
    assert not hit and builds == [1]
    data2, hit2 = cache.get_or_build(spec, build)
    assert hit2 and data2 == data and builds == [1]
    engine = cache.engine_path(spec)
    # Plain engine file (loadable by trtexec/Polygraphy) and a JSON sidecar describing it.
    with open(engine, "rb") as handle:
        assert handle.read() == data
    with open(engine + ".json") as handle:
        meta = json.load(handle)
    assert meta["engine_sha256"] == sha256_bytes(data)
    assert meta["spec"]["precision"] == "fp16" and meta["spec"]["tensorrt_version"] == "8.2.1"
    assert "build_seconds" in meta
    assert not [name for name in os.listdir(cache.root) if name.startswith(".tmp-")]
    assert [m["key"] for m in cache.entries()] == [spec.key()]


def test_corrupted_engine_is_detected_and_rebuilt(model, tmp_path, caplog):
    cache = EngineCache(str(tmp_path / "engines"))
    spec = spec_for(model)
    cache.store(spec, b"A" * 1000)
    engine = cache.engine_path(spec)
    with open(engine, "r+b") as handle:  # flip bytes, same size
        handle.seek(10)
        handle.write(b"BBBB")
    result = cache.check(spec)
    assert result.status == CORRUPT and "SHA-256" in result.message
    with caplog.at_level(logging.WARNING, logger="dfseg.engines"):
        data, hit = cache.get_or_build(spec, lambda: b"rebuilt engine")
    assert not hit and data == b"rebuilt engine"
    assert "rebuilding" in caplog.text
    assert cache.check(spec).status == HIT


def test_truncated_engine_and_missing_sidecar(model, tmp_path):
    cache = EngineCache(str(tmp_path / "engines"))
    spec = spec_for(model)
    assert cache.check(spec).status == MISSING
    cache.store(spec, b"A" * 1000)
    engine = cache.engine_path(spec)
    with open(engine, "r+b") as handle:
        handle.truncate(500)
    result = cache.check(spec)
    assert result.status == CORRUPT and "500 bytes" in result.message
    cache.store(spec, b"A" * 1000)
    os.unlink(engine + ".json")
    assert cache.check(spec).status == CORRUPT
    with open(engine + ".json", "w") as handle:
        handle.write("{not json")
    assert "not valid JSON" in cache.check(spec).message


def test_engine_for_another_spec_is_a_mismatch(model, tmp_path):
    """An engine copied under this spec's name (e.g. engines/ synced from another board) is rejected."""
    cache = EngineCache(str(tmp_path / "engines"))
    wanted = spec_for(model)
    other = spec_for(model, device="Orin sm87", tensorrt_version="8.5.2")
    cache.store(other, b"orin engine")
    source = cache.engine_path(other)
    os.replace(source, cache.engine_path(wanted))
    os.replace(source + ".json", cache.engine_path(wanted) + ".json")
    result = cache.check(wanted)
    assert result.status == MISMATCH
    assert "device" in result.message and "Orin sm87" in result.message and "tensorrt version" in result.message
    assert cache.load(wanted) is None


def test_changed_model_gets_a_new_engine(model, tmp_path):
    cache = EngineCache(str(tmp_path / "engines"))
    first = spec_for(model)
    cache.store(first, b"engine for v1")
    with open(model, "wb") as handle:
        handle.write(b"retrained model bytes")
    second = spec_for(model)
    assert second.key() != first.key()
    assert cache.load(second) is None


def test_timing_cache_roundtrip(tmp_path):
    cache = EngineCache(str(tmp_path / "engines"))
    assert cache.read_timing_cache("8.2.1", "NVIDIA Tegra X1 sm53") is None
    path = cache.write_timing_cache("8.2.1", "NVIDIA Tegra X1 sm53", b"\x00timing")
    assert os.path.basename(path) == "timing-trt8.2.1-NVIDIA_Tegra_X1_sm53.cache"
    assert cache.read_timing_cache("8.2.1", "NVIDIA Tegra X1 sm53") == b"\x00timing"
    assert cache.read_timing_cache("10.3.0", "NVIDIA Tegra X1 sm53") is None
