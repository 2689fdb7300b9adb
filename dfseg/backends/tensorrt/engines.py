"""The TensorRT engine cache under ``engines/``.

An engine is only valid for the exact model, input shape, precision, builder options, TensorRT
version and GPU/SoC it was built for, so all of them go into its cache key.  Engines are stored as
plain ``.engine`` files (``trtexec --loadEngine`` and ``polygraphy run`` load them as they are) with a
JSON sidecar that records the key's fields and the SHA-256 of the engine bytes.  A lookup re-hashes
the engine: an engine that was truncated, overwritten or built for something else is reported with
the reason and rebuilt, never deserialized blindly.

Writes are atomic (engine first, sidecar last), so an interrupted build leaves either a complete
entry or an engine without a sidecar, which the next lookup rebuilds.  The builder's timing cache
(per TensorRT version and device) lives beside the engines and is reused by every build.

Device side: Python 3.6, no torch, no tensorrt import.
"""

import contextlib
import json
import logging
import os
import re
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from ...build_config import DEFAULT_WORKSPACE_MB, PRECISIONS  # noqa: F401  (re-exported for the cache's users)
from ...errors import UserError
from ...fileio import sha256_bytes, sha256_file, write_atomic, write_json_atomic

SIDECAR_SCHEMA = "dfseg.engine/1"
DEFAULT_ROOT = "engines"

log = logging.getLogger("dfseg.engines")

# Cache lookup outcomes.
HIT = "hit"
MISSING = "missing"
MISMATCH = "mismatch"
CORRUPT = "corrupt"


class EngineSpec(NamedTuple):
    """Everything an engine depends on.  Two specs with equal ``key()`` can share one engine."""

    model_sha256: str
    input_shapes: Tuple[Tuple[str, Tuple[int, ...]], ...]  # (name, shape) per input, sorted by name
    precision: str  # fp32 | fp16 | int8
    builder_flags: Tuple[Tuple[str, Any], ...]  # sorted (name, JSON value) pairs
    tensorrt_version: str
    device: str  # GPU name + compute capability, or Jetson SoC
    model_name: str = "model"  # for the file name only, not part of the key

    @classmethod
    def create(cls, model_path: str, input_shapes: Dict[str, Tuple[int, ...]], precision: str,
               tensorrt_version: str, device: str, builder_flags: Optional[Dict[str, Any]] = None,
               model_sha256: Optional[str] = None) -> "EngineSpec":
        if precision not in PRECISIONS:
            raise UserError("precision {!r}: choose one of {}".format(precision, ", ".join(PRECISIONS)))
        flags = builder_flags or {}
        try:
            json.dumps(flags, sort_keys=True)
        except TypeError as exc:
            raise ValueError("builder_flags must be JSON values: {}".format(exc)) from None
        shapes = tuple(sorted((str(name), tuple(int(d) for d in shape)) for name, shape in input_shapes.items()))
        return cls(
            model_sha256=model_sha256 or sha256_file(model_path),
            input_shapes=shapes,
            precision=precision,
            builder_flags=tuple(sorted((str(k), _freeze(v)) for k, v in flags.items())),
            tensorrt_version=str(tensorrt_version),
            device=str(device),
            model_name=os.path.splitext(os.path.basename(model_path))[0] or "model",
        )

    def key_fields(self) -> Dict[str, Any]:
        """The fields that make up the key, as JSON (also what the sidecar records)."""
        return {
            "model_sha256": self.model_sha256,
            "input_shapes": {name: list(shape) for name, shape in self.input_shapes},
            "precision": self.precision,
            "builder_flags": {name: _thaw(value) for name, value in self.builder_flags},
            "tensorrt_version": self.tensorrt_version,
            "device": self.device,
        }

    def key(self) -> str:
        canonical = json.dumps(self.key_fields(), sort_keys=True, separators=(",", ":"))
        return sha256_bytes(canonical.encode("utf-8"))[:16]

    def file_stem(self) -> str:
        shape = "-".join("x".join(str(d) for d in shape) for _, shape in self.input_shapes) or "noinput"
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.model_name)[:48]
        return "{}-{}-{}-trt{}-{}".format(name, shape, self.precision, self.tensorrt_version, self.key())


def device_label(name: str, major: int, minor: int) -> str:
    """How the engine cache names a GPU: ``Orin sm87``.  The one naming that the tensorrt runner (pycuda or
    cuda-python) and trtexec (nvidia-smi) share, so both backends key their engines alike."""
    return "{} sm{}{}".format(name.split("\x00")[0].strip(), major, minor)


def _freeze(value: Any) -> Any:
    # Builder flags may hold lists (layer names to keep in FP32); tuples keep the spec hashable.
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


class CacheCheck(NamedTuple):
    status: str  # HIT, MISSING, MISMATCH or CORRUPT
    engine_path: str
    message: str


class EngineCache:
    """``lookup``/``store``/``get_or_build`` over a directory of ``.engine`` files and JSON sidecars."""

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = root

    # ------------------------------------------------------------------ paths
    def engine_path(self, spec: EngineSpec) -> str:
        return os.path.join(self.root, spec.file_stem() + ".engine")

    @staticmethod
    def sidecar_path(engine_path: str) -> str:
        return engine_path + ".json"

    def timing_cache_path(self, tensorrt_version: str, device: str) -> str:
        device_slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", device)[:64]
        return os.path.join(self.root, "timing-trt{}-{}.cache".format(tensorrt_version, device_slug))

    # ------------------------------------------------------------------ lookup
    def check(self, spec: EngineSpec, data: Optional[bytes] = None) -> CacheCheck:
        """Whether a valid engine for ``spec`` is cached, and if not, why not (one readable sentence).

        ``data``, when given, is the engine's bytes as already read: they are checked instead of
        re-reading the file, so a caller that goes on to use them hashes the engine only once.
        """
        path = self.engine_path(spec)
        sidecar = self.sidecar_path(path)
        if not os.path.exists(path):
            return CacheCheck(MISSING, path, "{}: no cached engine, building one".format(path))
        try:
            with open(sidecar) as handle:
                meta = json.load(handle)
        except OSError:
            return CacheCheck(CORRUPT, path, "{}: engine has no sidecar {} (an interrupted build?); rebuilding".format(
                path, sidecar))
        except ValueError as exc:
            return CacheCheck(CORRUPT, path, "{}: sidecar is not valid JSON ({}); rebuilding".format(sidecar, exc))
        if not isinstance(meta, dict) or meta.get("schema") != SIDECAR_SCHEMA:
            return CacheCheck(CORRUPT, path, "{}: not a dfseg engine sidecar (schema {!r}); rebuilding".format(
                sidecar, meta.get("schema") if isinstance(meta, dict) else None))
        differences = _differences(meta.get("spec") or {}, spec.key_fields())
        if differences:
            return CacheCheck(MISMATCH, path, "{}: cached engine was built for a different {}; rebuilding".format(
                path, "; ".join(differences)))
        size = os.path.getsize(path) if data is None else len(data)
        if size != meta.get("engine_bytes"):
            return CacheCheck(CORRUPT, path, "{}: engine is {} bytes, its sidecar says {} (truncated or replaced); "
                              "rebuilding".format(path, size, meta.get("engine_bytes")))
        digest = sha256_file(path) if data is None else sha256_bytes(data)
        if digest != meta.get("engine_sha256"):
            return CacheCheck(CORRUPT, path, "{}: engine bytes do not match the SHA-256 in its sidecar (corrupted "
                              "or overwritten); rebuilding".format(path))
        return CacheCheck(HIT, path, "{}: cached engine is valid".format(path))

    def load(self, spec: EngineSpec) -> Optional[bytes]:
        """The cached engine's bytes, or None (with a logged reason when an entry existed but was bad)."""
        data = None  # type: Optional[bytes]
        path = self.engine_path(spec)
        if os.path.exists(path):
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError:
                data = None  # check() reports the entry as it finds it
        # The bytes read are the bytes checked: a file that changes after the read cannot slip through.
        result = self.check(spec, data)
        if result.status != HIT:
            if result.status != MISSING:
                log.warning(result.message)
            return None
        return data

    def store(self, spec: EngineSpec, engine: bytes, extra: Optional[Dict[str, Any]] = None) -> str:
        """Write the engine, then its sidecar (both atomically); returns the engine path."""
        if not engine:
            raise ValueError("refusing to cache an empty engine")
        path = self.engine_path(spec)
        write_atomic(path, bytes(engine))
        meta = {
            "schema": SIDECAR_SCHEMA,
            "key": spec.key(),
            "spec": spec.key_fields(),
            "model_name": spec.model_name,
            "engine_file": os.path.basename(path),
            "engine_bytes": len(engine),
            "engine_sha256": sha256_bytes(bytes(engine)),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        meta.update(extra or {})
        try:
            write_json_atomic(self.sidecar_path(path), meta)
        except BaseException:
            # Never loaded without its sidecar (the next lookup builds it again): on a full disk it would
            # only keep the space that the rebuild needs.
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        return path

    def get_or_build(self, spec: EngineSpec, build: Callable[[], bytes],
                     extra: Optional[Dict[str, Any]] = None) -> Tuple[bytes, bool]:
        """The engine for ``spec`` and whether it came from the cache; ``build()`` runs on a miss."""
        cached = self.load(spec)
        if cached is not None:
            log.info("%s: using cached engine", self.engine_path(spec))
            return cached, True
        start = time.time()
        engine = build()
        info = {"build_seconds": round(time.time() - start, 3)}
        info.update(extra or {})
        self.store(spec, engine, info)
        return engine, False

    def entries(self) -> List[Dict[str, Any]]:
        """Sidecars of every cached engine (unreadable sidecars are skipped)."""
        found = []
        if not os.path.isdir(self.root):
            return found
        for name in sorted(os.listdir(self.root)):
            if not name.endswith(".engine.json"):
                continue
            try:
                with open(os.path.join(self.root, name)) as handle:
                    meta = json.load(handle)
            except (OSError, ValueError):
                continue
            if isinstance(meta, dict) and meta.get("schema") == SIDECAR_SCHEMA:
                found.append(meta)
        return found

    # ------------------------------------------------------------------ timing cache
    def read_timing_cache(self, tensorrt_version: str, device: str) -> Optional[bytes]:
        path = self.timing_cache_path(tensorrt_version, device)
        try:
            with open(path, "rb") as handle:
                return handle.read() or None
        except OSError:
            return None

    def write_timing_cache(self, tensorrt_version: str, device: str, data: bytes) -> str:
        path = self.timing_cache_path(tensorrt_version, device)
        write_atomic(path, bytes(data))
        return path


def _differences(recorded: Dict[str, Any], wanted: Dict[str, Any]) -> List[str]:
    """Human-readable field differences between a sidecar's spec and the wanted one."""
    out = []
    for field in sorted(set(recorded) | set(wanted)):
        have, want = recorded.get(field), wanted.get(field)
        if have != want:
            if field == "model_sha256":
                out.append("model (sha256 {}... vs {}...)".format(str(have)[:12], str(want)[:12]))
            else:
                out.append("{} ({} vs {})".format(field.replace("_", " "), json.dumps(have, sort_keys=True),
                                                  json.dumps(want, sort_keys=True)))
    return out
