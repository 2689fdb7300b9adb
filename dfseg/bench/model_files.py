"""Where benchmarked ONNX files come from: exported here on the host (needs torch, imported lazily), or
read from a device bundle written by ``dfseg-export --bundle`` (no torch; hashes checked).

A ``ModelSpec`` names one network at one input size: a DF architecture (preset, short string or a
random member of a search space) or a reference model (``arch`` None, e.g. resnet18).

Device side: Python 3.6, no torch (``HostSource`` imports torch only when it exports).
"""

import hashlib
import os
import re
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..arch import PRESETS, REFERENCE_MODEL_NAMES, Arch
from ..errors import UserError
from ..fileio import read_json, sha256_file, share_input
from ..parts import Part
from ..sizes import Size, parse_size

BUNDLE_SCHEMA = "dfseg.bundle/1"
MANIFEST = "manifest.json"
CLASSIFIER_SIZE = Size(224, 224)


class ModelSpec(NamedTuple):
    name: str  # what the user typed / the preset or reference name / the arch's short form
    arch: Optional[Arch]  # None for reference models
    size: Size

    @property
    def label(self) -> str:
        return "{}@{}".format(self.name, self.size)

    def to_json(self) -> Dict[str, Any]:
        return {"name": self.name, "arch": None if self.arch is None else self.arch.to_json(),
                "size": str(self.size)}

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "ModelSpec":
        arch = None if data.get("arch") is None else Arch.from_json(data["arch"])
        return cls(str(data["name"]), arch, parse_size(data["size"]))


def safe_filename(text: str) -> str:
    """A file name for a model or part key (keys hold ':', '>' and '/'); a short hash keeps it unique."""
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    return "{}-{}".format(re.sub(r"[^A-Za-z0-9.+=-]+", "_", text).strip("_")[:80], digest)


class ModelSource:
    """Gives ONNX file paths for models, parts and the per-call overhead probe."""

    kind = "base"

    def close(self) -> None:
        """Release what the source holds (a bundle's read lock)."""

    def check(self, specs: Sequence[ModelSpec] = (), parts: Sequence[Part] = ()) -> None:
        """Before any work: the files that measuring ``specs`` and ``parts`` (a table: with the overhead and
        boundary probes) will read are usable, else a UserError naming the file.  A host exports its
        files when first asked, so there is nothing to check in advance."""

    def model_path(self, spec: ModelSpec) -> str:
        raise NotImplementedError

    def part_path(self, part: Part) -> str:
        """The part between boundary stubs (``dfseg.bench.boundary``): what a latency table times."""
        raise NotImplementedError

    def overhead_path(self) -> str:
        raise NotImplementedError

    def boundary_path(self, shape: Tuple[int, int, int]) -> str:
        """The boundary-stub probe for a C x H x W tensor (``dfseg.bench.boundary``)."""
        raise NotImplementedError

    def reference_path(self) -> str:
        """The drift reference (``dfseg.bench.drift``) timed beside every subject."""
        raise NotImplementedError


class HostSource(ModelSource):
    """Exports with ``dfseg.export`` into ``work_dir`` (cached by file name; torch needed)."""

    kind = "host"

    def __init__(self, work_dir: str, opset: int = 13, cache: bool = True) -> None:
        # A cache lives under a fingerprint of the code that builds the graphs, so a changed model
        # definition never reuses a stale export.  A bundle (cache=False) holds exactly one export.
        self.work_dir = os.path.join(work_dir, model_code_fingerprint()) if cache else work_dir
        self.opset = opset
        os.makedirs(os.path.join(self.work_dir, "models"), exist_ok=True)
        os.makedirs(os.path.join(self.work_dir, "parts"), exist_ok=True)

    def model_path(self, spec: ModelSpec) -> str:
        path = os.path.join(self.work_dir, "models", safe_filename(spec.label) + ".onnx")
        if not os.path.exists(path):
            export_model(spec, path, self.opset)
        return path

    def part_path(self, part: Part) -> str:
        name = safe_filename(part.key) + ".onnx"
        path = os.path.join(self.work_dir, "parts-in-context", name)
        if not os.path.exists(path):
            from .boundary import write_stubbed_part

            bare = os.path.join(self.work_dir, "parts", name)
            if not os.path.exists(bare):
                from ..export import export_part_onnx

                export_part_onnx(part, bare)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_stubbed_part(part, bare, path)
        return path

    def overhead_path(self) -> str:
        path = os.path.join(self.work_dir, "overhead.onnx")
        if not os.path.exists(path):
            write_overhead_model(path)
        return path

    def boundary_path(self, shape: Tuple[int, int, int]) -> str:
        from .boundary import probe_name, write_probe_model

        directory = os.path.join(self.work_dir, "boundaries")
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, safe_filename(probe_name(shape)) + ".onnx")
        if not os.path.exists(path):
            write_probe_model(path, shape)
        return path

    def reference_path(self) -> str:
        from .drift import REFERENCE_ID, write_reference_model

        path = os.path.join(self.work_dir, safe_filename(REFERENCE_ID.split(":")[0]) + ".onnx")
        if not os.path.exists(path):
            write_reference_model(path)
        return path


def model_code_fingerprint() -> str:
    """A short hash of the sources that define exported graphs (arch, parts, models, export)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files = [os.path.join(root, name) for name in ("arch.py", "parts.py", "export.py")]
    models = os.path.join(root, "models")
    if os.path.isdir(models):
        files += [os.path.join(models, name) for name in sorted(os.listdir(models)) if name.endswith(".py")]
    digest = hashlib.sha1()
    for path in files:
        if os.path.isfile(path):
            digest.update(sha256_file(path).encode("ascii"))
    return "code-" + digest.hexdigest()[:12]


def export_model(spec: ModelSpec, path: str, opset: int = 13) -> None:
    """Export one network (host side: imports torch through dfseg.export)."""
    from ..export import export_onnx

    export_onnx(spec.arch if spec.arch is not None else spec.name, spec.size, path, opset=opset)


def write_overhead_model(path: str) -> None:
    """The per-call overhead probe: one ReLU on a single number (host side: needs the onnx package).

    Its run time is what every session call costs regardless of the graph; a latency table counts it
    once per network (``meta.overhead_ms``) instead of once per part.
    """
    import onnx
    from onnx import TensorProto, helper

    from ..fileio import write_atomic

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "overhead",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 1, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7  # readable by the ONNX Runtime builds of JetPack 4.6
    write_atomic(path, model.SerializeToString())
    del onnx


class BundleSource(ModelSource):
    """Reads a bundle directory; every file is checked against the manifest's sha256 when first used."""

    kind = "bundle"

    def __init__(self, directory: str) -> None:
        self.directory = directory
        # Held while this source is open: dfseg-export --bundle is refused meanwhile, and a bundle that it is
        # writing is refused here, so a run never reads a bundle half rewritten.
        self._lock = share_input(directory, "bundle (dfseg-export --bundle)") if os.path.isdir(directory) else None
        manifest_path = os.path.join(directory, MANIFEST)
        manifest = read_json(manifest_path, "the bundle manifest", "; create the bundle on a host with "
                             "dfseg-export --bundle {}".format(directory))
        if not isinstance(manifest, dict) or manifest.get("schema") != BUNDLE_SCHEMA:
            raise UserError("{}: unknown bundle schema {!r} (this dfseg reads {!r}); re-create the bundle with "
                            "this version's dfseg-export --bundle".format(
                                manifest_path, manifest.get("schema") if isinstance(manifest, dict) else None,
                                BUNDLE_SCHEMA))
        self.manifest = manifest
        for label, entry in _file_entries(manifest):
            _check_inside(directory, manifest_path, label, entry)
        self._models = {(m["name"], m["size"]): m for m in manifest.get("models", [])}
        self._parts = {p["key"]: p for p in manifest.get("parts", [])}
        self._boundaries = {tuple(b["shape"]): b for b in manifest.get("boundaries", [])}
        self._checked: set = set()

    def close(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def check(self, specs: Sequence[ModelSpec] = (), parts: Sequence[Part] = ()) -> None:
        """Every file is present and has the manifest's sha256 (each is hashed once, here rather than when
        first measured)."""
        from .boundary import boundary_shapes

        self.reference_path()
        for spec in specs:
            self.model_path(spec)
        if parts:
            self.overhead_path()
            for shape in sorted({shape for part in parts for shape in boundary_shapes(part)}):
                self.boundary_path(shape)
        for part in parts:
            self.part_path(part)

    # -------------------------------------------------------------- contents
    def model_specs(self, role: Optional[str] = None) -> List[ModelSpec]:
        """The bundle's models, optionally only those with ``role`` (benchmark or validate)."""
        return [ModelSpec.from_json(m) for m in self.manifest.get("models", [])
                if role is None or role in m.get("roles", [])]

    def parts(self) -> List[Part]:
        return [Part(*entry["part"]) for entry in self.manifest.get("parts", [])]

    # -------------------------------------------------------------- paths
    def _verified(self, entry: Dict[str, Any], what: str) -> str:
        path = os.path.join(self.directory, entry["file"])
        if path not in self._checked:
            if not os.path.isfile(path):
                raise UserError("{}: bundle file for {} is missing; copy the whole bundle directory".format(
                    path, what))
            if sha256_file(path) != entry["sha256"]:
                raise UserError("{}: sha256 does not match the manifest (corrupted or partial copy of {}); "
                                "copy the bundle again".format(path, what))
            self._checked.add(path)
        return path

    def model_path(self, spec: ModelSpec) -> str:
        entry = self._models.get((spec.name, str(spec.size)))
        if entry is None:
            have = sorted("{}@{}".format(*k) for k in self._models)
            raise UserError("bundle {} has no model {} at {} (it has: {}); add it with dfseg-export --bundle {} "
                            "--models {} --sizes {}".format(self.directory, spec.name, spec.size, ", ".join(have),
                                                             self.directory, spec.name, spec.size))
        return self._verified(entry, spec.label)

    def part_path(self, part: Part) -> str:
        entry = self._parts.get(part.key)
        if entry is None:
            raise UserError("bundle {} has no ONNX file for part {}; re-create it with dfseg-export --bundle "
                            "including the models or space that contain it".format(self.directory, part.key))
        return self._verified(entry, part.key)

    def overhead_path(self) -> str:
        entry = self.manifest.get("overhead")
        if not entry:
            raise UserError("bundle {} has no overhead probe; re-create it with dfseg-export --bundle".format(
                self.directory))
        return self._verified(entry, "the overhead probe")

    def boundary_path(self, shape: Tuple[int, int, int]) -> str:
        entry = self._boundaries.get(tuple(shape))
        if entry is None:
            raise UserError("bundle {} has no boundary probe for {}x{}x{} (bundles before boundary stubs hold bare "
                            "parts); re-create it with this version's dfseg-export --bundle".format(
                                self.directory, *shape))
        return self._verified(entry, "the boundary probe {}x{}x{}".format(*shape))

    def reference_path(self) -> str:
        from .drift import REFERENCE_ID

        entry = self.manifest.get("reference")
        if not entry or entry.get("id") != REFERENCE_ID:
            raise UserError("bundle {} has {} drift reference; re-create it with this version's dfseg-export "
                            "--bundle".format(self.directory, "another" if entry else "no"))
        return self._verified(entry, "the drift reference")


def _file_entries(manifest: Dict[str, Any]) -> List[Tuple[str, Any]]:
    """(label, entry) of every file the manifest names, labelled as a reader finds it in the manifest."""
    entries = [("models[{}]".format(i), e) for i, e in enumerate(manifest.get("models") or [])]
    entries += [("parts[{}]".format(i), e) for i, e in enumerate(manifest.get("parts") or [])]
    entries += [("boundaries[{}]".format(i), e) for i, e in enumerate(manifest.get("boundaries") or [])]
    return entries + [(name, manifest[name]) for name in ("overhead", "reference") if manifest.get(name)]


def _check_inside(directory: str, manifest_path: str, label: str, entry: Any) -> None:
    """A bundle's files lie inside its folder: an entry naming an absolute path, a ``..`` way out or a
    symbolic link that leads out would have a benchmark read (and a table trust) a file the bundle never
    held, so it is refused before any work."""
    name = entry.get("file") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not name:
        raise UserError("{}: {} names no file; re-create the bundle with dfseg-export --bundle {}".format(
            manifest_path, label, directory))
    root = os.path.realpath(directory)
    target = os.path.realpath(os.path.join(directory, name))
    if os.path.isabs(name) or os.path.commonpath([root, target]) != root or target == root:
        raise UserError("{}: {} file {!r} lies outside the bundle folder {}; a bundle names only its own files: "
                        "re-create it with dfseg-export --bundle {}".format(manifest_path, label, name, directory,
                                                                              directory))


def resolve_model(name: str, size: Optional[Size] = None) -> ModelSpec:
    """A ModelSpec from what the user typed: preset, reference model, short form or JSON file.

    Classification networks run at 224x224 whatever ``size`` is (their classifier pools a 7x7 map).
    """
    name = name.strip()
    arch: Optional[Arch] = None
    if name in PRESETS or name not in REFERENCE_MODEL_NAMES:
        arch = Arch.parse(name)
    if arch is None or not arch.is_segmentation:
        return ModelSpec(name, arch, CLASSIFIER_SIZE)
    if size is None:
        raise UserError("model {}: a segmentation model needs a size".format(name))
    return ModelSpec(name, arch, size)

