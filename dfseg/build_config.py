"""One build configuration, from the command line to the artefact.

Every command that builds or runs a model (export, bench, run, eval) makes one ``BuildConfig`` and
passes it through ``dfseg.backends.get_runner`` to the backend.  The backend turns it into an artefact:
an FP16 or Q/DQ INT8 ONNX graph (``dfseg.precision``) that ONNX Runtime runs and TensorRT >= 10 builds as
a strongly typed network, or, on TensorRT 8.x, an engine built with the weak-typing flags and the
implicit entropy calibrator.  The config is stored in the artefact (ONNX metadata, the engine cache's
sidecar), so what was built can be read back.

Device side: Python 3.6, no torch.
"""

import hashlib
import json
import os
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple

from .errors import UserError

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_WORKSPACE_MB = 1024  # TensorRT builder workspace, for the Python API and trtexec alike
DEFAULT_CALIBRATION_IMAGES = 500
DEFAULT_CACHE_DIR = "engines"
# How TensorRT 10 builds reduced precision: "strong" builds the FP16/Q-DQ graph as a strongly typed
# network, "weak" sets the builder flags on the FP32 graph (deprecated in 10.12, gone in 11).
NETWORK_TYPINGS = ("auto", "strong", "weak")
METADATA_KEY = "dfseg.build_config"


class BuildConfig(NamedTuple):
    precision: str = "fp32"
    fp32_layers: Tuple[str, ...] = ()  # ONNX node names, or prefixes such as /head/, kept in FP32
    calibration: Optional[str] = None  # folder of images, video or Cityscapes root (int8)
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES
    calibration_cache: Optional[str] = None  # TensorRT 8.x implicit calibration cache (int8)
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    timing_cache: Optional[str] = None  # TensorRT builder timing cache file (default: beside the engines)
    network_typing: str = "auto"
    cache_dir: str = DEFAULT_CACHE_DIR  # engines and derived FP16/INT8 graphs

    def checked(self) -> "BuildConfig":
        """This config, or a one-line UserError naming the field and the fix (its files included)."""
        self.well_formed()
        if self.calibration is not None and not os.path.exists(self.calibration):
            raise UserError("--calibration {}: not found; pass a folder of images, a video or a Cityscapes "
                            "root".format(self.calibration))
        if self.calibration is not None and os.path.isfile(self.calibration):
            from .calibration import VIDEO_EXTENSIONS

            if not self.calibration.lower().endswith(VIDEO_EXTENSIONS):
                raise UserError("--calibration {}: not a video ({}); pass a folder of images, a video or a "
                                "Cityscapes root".format(self.calibration, ", ".join(VIDEO_EXTENSIONS)))
            if self.precision == "int8":
                from .calibration import check_video

                check_video(self.calibration)  # a damaged video: said before anything is built
        elif self.calibration is not None and self.precision == "int8":
            from .calibration import check_readable, require_images

            check_readable(require_images(self.calibration, "--calibration"), self.calibration_images)
            # an empty folder, or an image OpenCV cannot read: said before anything is built
        for option, path in (("--calibration-cache", self.calibration_cache), ("--timing-cache", self.timing_cache)):
            if path is not None and os.path.isdir(path):
                raise UserError("{} {}: a folder; give a file (it is read when present, written otherwise)".format(
                    option, path))
        if os.path.exists(self.cache_dir) and not os.path.isdir(self.cache_dir):
            raise UserError("--engine-cache {}: not a folder; give a folder for engines and derived graphs".format(
                self.cache_dir))
        return self

    def well_formed(self) -> "BuildConfig":
        """The checks that need no files (a config read back from an artefact on another machine)."""
        if self.precision not in PRECISIONS:
            raise UserError("precision {!r}: choose one of {}".format(self.precision, ", ".join(PRECISIONS)))
        if self.network_typing not in NETWORK_TYPINGS:
            raise UserError("network typing {!r}: choose one of {}".format(
                self.network_typing, ", ".join(NETWORK_TYPINGS)))
        if not isinstance(self.calibration_images, int) or self.calibration_images < 1:
            raise UserError("calibration images {!r}: give a whole number >= 1".format(self.calibration_images))
        if not isinstance(self.workspace_mb, int) or self.workspace_mb < 1:
            raise UserError("workspace {!r} MB: give a whole number >= 1".format(self.workspace_mb))
        bad = [name for name in self.fp32_layers if not isinstance(name, str) or not name.strip()]
        if bad:
            raise UserError("fp32 layers {!r}: give ONNX node names or prefixes such as /head/".format(bad))
        return self

    def needs_images(self, graph_path: bool) -> None:
        """Making an INT8 graph (ONNX Runtime, TensorRT >= 10) calibrates on images; only TensorRT 8.x's
        implicit calibrator can start from a calibration cache alone.  Running a graph that is already
        INT8 needs neither."""
        if self.precision != "int8":
            return
        if self.calibration is None and (graph_path or self.calibration_cache is None):
            raise UserError("int8 needs calibration images here (a --calibration-cache serves TensorRT 8.x "
                            "only): pass --calibration FOLDER|VIDEO|CITYSCAPES_ROOT")

    def graph_only(self) -> "BuildConfig":
        """The fields a derived graph depends on, the others at their defaults (what a graph records)."""
        return BuildConfig(precision=self.precision, fp32_layers=self.fp32_layers, calibration=self.calibration,
                           calibration_images=self.calibration_images)

    def graph_identity(self) -> Dict[str, Any]:
        """The fields a derived FP16/INT8 graph depends on (its cache key and its metadata)."""
        identity = {"precision": self.precision, "fp32_layers": list(self.fp32_layers)}  # type: Dict[str, Any]
        if self.precision == "int8":
            identity["calibration"] = None if self.calibration is None else os.path.abspath(self.calibration)
            identity["calibration_images"] = self.calibration_images
            identity["calibration_files"] = calibration_fingerprint(self.calibration, self.calibration_images)
        return identity

    def to_dict(self) -> Dict[str, Any]:
        data = dict(self._asdict())
        data["fp32_layers"] = list(self.fp32_layers)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Dict[str, Any], source: str = "build config") -> "BuildConfig":
        if not isinstance(data, dict):
            raise UserError("{}: expected a JSON object with the build configuration".format(source))
        unknown = sorted(set(data) - set(cls._fields))
        if unknown:
            raise UserError("{}: unknown build config field(s) {}; known: {}".format(
                source, ", ".join(unknown), ", ".join(cls._fields)))
        values = dict(data)
        if "fp32_layers" in values:
            values["fp32_layers"] = tuple(values["fp32_layers"] or ())
        return cls(**values).well_formed()


def calibration_fingerprint(source: Optional[str], limit: int) -> Optional[str]:
    """A digest of the calibration data that would be read (each chosen file's path, size and mtime), so
    that a derived graph, an engine or a calibration cache is rebuilt when the images change."""
    if source is None or not os.path.exists(source):
        return None
    from .calibration import evenly_spaced, image_files

    files = [source] if os.path.isfile(source) else image_files(source)
    chosen = files if os.path.isfile(source) else [files[i] for i in evenly_spaced(len(files), limit)]
    digest = hashlib.sha256()
    for path in chosen:
        stat = os.stat(path)
        digest.update("{}\0{}\0{}\n".format(os.path.abspath(path), stat.st_size, stat.st_mtime_ns).encode("utf-8"))
    return digest.hexdigest()[:16]


def parse_layer_list(text: Optional[str]) -> Tuple[str, ...]:
    """``/head/,/stem/conv1/conv/Conv`` -> a tuple of names; a list that names nothing is a UserError."""
    if text is None:
        return ()
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise UserError("--fp32-layers {!r}: names nothing; give ONNX node names or prefixes such as /head/".format(
            text))
    return names


def matching_names(names: Sequence[str], patterns: Sequence[str], what: str = "node") -> Tuple[str, ...]:
    """The names equal to or starting with one of ``patterns``; a pattern that matches none is a UserError."""
    matched = tuple(name for name in names if any(name == p or name.startswith(p) for p in patterns))
    unmatched = [p for p in patterns if not any(name == p or name.startswith(p) for name in matched)]
    if unmatched:
        example = next((name for name in names if name.count("/") >= 2), "/head/conv/Conv")
        raise UserError("fp32 layers: no {} named or starting with {}; {} names are ONNX node names such as "
                        "{}".format(what, ", ".join(repr(p) for p in unmatched), what, example))
    return matched
