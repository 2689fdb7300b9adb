"""Device bundles: every ONNX file a device without torch needs to run ``dfseg-bench --bundle DIR``.

``write_bundle`` (host side, called by ``dfseg-export --bundle DIR``) exports the benchmark models at
each size, the validation networks, the table's block suite (between boundary stubs), the overhead
probe and the boundary-stub probes, then writes ``manifest.json`` (sha256 of every file) last and
atomically: a bundle without a manifest is unfinished.  ``dfseg.bench.model_files.BundleSource`` reads it on the device.

Device side for reading (this module imports no torch itself; exporting imports it lazily).
"""

import os
import time
from typing import Any, Dict, List, Optional, Sequence

import dfseg

from ..arch import REFERENCE_MODEL_NAMES
from ..fileio import claim_output, sha256_file, write_json_atomic
from ..parts import Part
from ..trt_parse_rules import require_parsable
from .boundary import boundary_shapes
from .drift import REFERENCE_ID
from .model_files import BUNDLE_SCHEMA, MANIFEST, HostSource, ModelSpec, safe_filename
from .report import progress_bar


def write_bundle(
    directory: str,
    benchmark: Sequence[ModelSpec],
    parts: Sequence[Part],
    validation: Sequence[ModelSpec] = (),
    show_progress: bool = True,
    calibration: Sequence[ModelSpec] = (),
    extra: Optional[Dict[str, Any]] = None,
) -> str:
    """Export everything into ``directory`` and write its manifest; returns the manifest path.  Refused
    (one line) while a ``BundleSource`` reads the bundle or another process writes it."""
    os.makedirs(directory, exist_ok=True)
    claim = claim_output(directory)
    try:
        return _write_bundle(directory, benchmark, parts, validation, show_progress, calibration, extra)
    finally:
        os.close(claim)


def _write_bundle(directory: str, benchmark: Sequence[ModelSpec], parts: Sequence[Part],
                  validation: Sequence[ModelSpec], show_progress: bool, calibration: Sequence[ModelSpec],
                  extra: Optional[Dict[str, Any]]) -> str:
    source = HostSource(directory, cache=False)
    roles: Dict[str, Dict[str, Any]] = {}
    for role, specs in (("benchmark", benchmark), ("validate", validation), ("calibrate", calibration)):
        for spec in specs:
            record = roles.setdefault(spec.label, {"spec": spec, "roles": []})
            record["roles"].append(role)
    probes = sorted({shape for part in parts for shape in boundary_shapes(part)})
    total = len(roles) + len(parts) + len(probes) + 2
    bar = progress_bar(total, show_progress, "bundle", "file")
    models: List[Dict[str, Any]] = []
    part_entries: List[Dict[str, Any]] = []
    try:
        for record in roles.values():
            spec = record["spec"]
            path = source.model_path(spec)
            models.append(dict(spec.to_json(), roles=record["roles"], file=os.path.relpath(path, directory),
                               sha256=sha256_file(path)))
            bar.update(1)
        for part in parts:
            path = source.part_path(part)
            part_entries.append({"key": part.key, "part": list(part), "file": os.path.relpath(path, directory),
                                 "sha256": sha256_file(path)})
            bar.update(1)
        boundaries: List[Dict[str, Any]] = []
        for shape in probes:
            path = source.boundary_path(shape)
            boundaries.append({"shape": list(shape), "file": os.path.relpath(path, directory),
                               "sha256": sha256_file(path)})
            bar.update(1)
        overhead = source.overhead_path()
        reference = source.reference_path()
        bar.update(2)
    finally:
        bar.close()
    written = ([os.path.join(directory, entry["file"]) for entry in models + part_entries + boundaries]
               + [overhead, reference])
    for path in written:  # what a TX2 builds engines from: fail here, not on the device
        require_parsable(None, path)
    manifest = {
        "schema": BUNDLE_SCHEMA,
        "dfseg_version": dfseg.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "models": models,
        "parts": part_entries,
        "overhead": {"file": os.path.relpath(overhead, directory), "sha256": sha256_file(overhead)},
        "boundaries": boundaries,
        "reference": {"id": REFERENCE_ID, "file": os.path.relpath(reference, directory),
                      "sha256": sha256_file(reference)},
    }
    if extra:
        manifest.update(extra)
    path = os.path.join(directory, MANIFEST)
    write_json_atomic(path, manifest)
    return path


__all__ = ["write_bundle", "safe_filename"]


def build_bundle(
    directory: str,
    models: Optional[Sequence[str]] = None,
    sizes: Optional[Sequence[str]] = None,
    table: bool = True,
    validate_random: int = 20,
    seed: int = 0,
    space: Any = None,
    decoder_space: bool = False,
    show_progress: bool = True,
) -> str:
    """``dfseg-export --bundle DIR``: the default benchmark models and sizes, the default table suite and
    ``validate_random`` random networks of the table's space (``space``, default ``suite.table_space()``: the
    same choices dfseg-bench makes)."""
    from . import suite

    seg_sizes = suite.parse_sizes(",".join(sizes) if sizes else None, suite.DEFAULT_SEG_SIZES)
    names = list(models) if models else suite.default_benchmark_models()
    benchmark = suite.benchmark_specs(names, seg_sizes)
    parts: List[Part] = []
    validation: List[ModelSpec] = []
    calibration: List[ModelSpec] = []
    table_sizes = suite.parse_sizes(None, suite.DEFAULT_TABLE_SEG_SIZES)
    if table:
        space = space if space is not None else suite.table_space()
        # table_parts leaves the reference models out itself.
        parts = suite.table_parts(models or suite.default_benchmark_models(), table_sizes, space, decoder_space)
        validation = suite.validation_specs(space, validate_random, seed, table_sizes)
        calibration = suite.calibration_specs(space, validate_random, seed, models=suite.benchmark_specs(
            [m for m in (models or suite.default_benchmark_models()) if m not in REFERENCE_MODEL_NAMES], table_sizes))
        parts = suite.dedupe_parts(list(parts) + suite.spec_parts(validation))
    return write_bundle(directory, benchmark, parts, validation, show_progress, calibration,
                        extra={"table_sizes": sorted({str(s) for s in table_sizes} | {"224x224"})})
