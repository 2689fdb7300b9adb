"""FP16 and INT8 as ONNX graphs: the precision lives in the graph, not in builder flags.

* FP16: onnxconverter-common's ``convert_float_to_float16`` with FP32 input and output (casts at the
  edges) and the named layers kept in FP32 (casts around them).
* INT8: explicit quantization, ONNX Runtime's static Q/DQ quantizer (``quantize_static``) with
  per-channel weights, calibrated on real images read by ``dfseg.calibration`` (folders, videos,
  Cityscapes roots).  For TensorRT the activations are symmetric INT8 (TensorRT's only INT8 form);
  for ONNX Runtime on CPU they are UINT8, which its VNNI kernels run fastest.

Both graphs pass ``onnx.checker`` and carry their ``BuildConfig`` in the ONNX metadata
(``dfseg.build_config``); ``graph_precision`` reads the precision back from the tensor types.  TensorRT
>= 10 builds them as strongly typed networks; ONNX Runtime runs them as they are.

Host side (needs onnx, onnxruntime, onnxconverter-common); never imports torch.
"""

import json
import logging
import os
import tempfile
import warnings
from typing import Any, Iterator, Optional, Sequence, Tuple

import numpy as np

from .build_config import METADATA_KEY, BuildConfig, matching_names
from .errors import UserError
from .fileio import atomic_output, make_folders, remove_empty_folders, sha256_file
from .onnx_wire import OnnxSummary

TARGETS = ("onnxruntime", "tensorrt")
TARGET_KEY = "dfseg.precision_target"  # ONNX metadata: who a derived graph was made for
QUANTIZE_OPS = ("QuantizeLinear", "DequantizeLinear")
log = logging.getLogger("dfseg.precision")


def onnx_available() -> bool:
    """Whether the onnx package is installed (JetPack 4.6.1's device side may run without it)."""
    import importlib.util

    return importlib.util.find_spec("onnx") is not None


def _onnx() -> Any:
    try:
        import onnx  # type: ignore
    except ImportError:
        raise UserError("fp16/int8 graphs need the onnx package: pip install 'dfseg[host]', or export the graph "
                        "on the host with dfseg-export --precision") from None
    return onnx


def _load(model: Any) -> Any:
    onnx = _onnx()
    if not isinstance(model, str):
        return model
    try:
        return onnx.load(model, load_external_data=False)
    except OSError as exc:
        raise UserError("{}: cannot read the ONNX model ({})".format(model, exc.strerror or exc)) from None
    except Exception as exc:  # protobuf's DecodeError and friends
        raise UserError("{}: not a valid ONNX model ({}); export one with dfseg-export".format(
            model, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)) from None


FLOAT16 = 10  # onnx.TensorProto.FLOAT16


def _precision_of(op_types: Sequence[str], value_types: Sequence[int]) -> str:
    """Q/DQ nodes mean int8, FP16 weights (or FP16 intermediate tensors) fp16, else fp32."""
    if any(op_type in QUANTIZE_OPS for op_type in op_types):
        return "int8"
    return "fp16" if FLOAT16 in value_types else "fp32"


def graph_precision(model: Any) -> str:
    """fp32, fp16 or int8, read from a model (path or ModelProto).  Without the onnx package (a device)
    a path is read with ``dfseg.onnx_wire``: its node types and initializer types."""
    if isinstance(model, str) and not onnx_available():
        summary = OnnxSummary(model)
        return _precision_of(summary.op_types, summary.initializer_types)
    proto = _load(model)
    return _precision_of([node.op_type for node in proto.graph.node],
                         [init.data_type for init in proto.graph.initializer]
                         + [info.type.tensor_type.elem_type for info in proto.graph.value_info])


def stored_config(model: Any) -> Optional[BuildConfig]:
    """The BuildConfig stored in a graph's metadata by ``derive_graph``, or None."""
    proto = _load(model)
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            return BuildConfig.from_dict(json.loads(prop.value), "{} metadata".format(METADATA_KEY))
    return None


def stored_target(model: Any) -> Optional[str]:
    """Who a derived graph was made for (``tensorrt`` or ``onnxruntime``), or None; a path is read without
    the onnx package where it is missing (a device running a graph the host derived)."""
    if isinstance(model, str) and not onnx_available():
        return OnnxSummary(model).metadata.get(TARGET_KEY)
    for prop in _load(model).metadata_props:
        if prop.key == TARGET_KEY:
            return prop.value
    return None


def _stamp(proto: Any, config: BuildConfig, target: str, source_sha: str) -> None:
    stamps = {METADATA_KEY: config.graph_only().to_json(), TARGET_KEY: target, "dfseg.source_sha256": source_sha}
    kept = [p for p in proto.metadata_props if p.key not in stamps]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in sorted(stamps.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def to_fp16(proto: Any, fp32_layers: Tuple[str, ...] = ()) -> Any:
    """An FP16 copy of ``proto`` with FP32 input/output and ``fp32_layers`` (names or prefixes) in FP32."""
    try:
        from onnxconverter_common import float16  # type: ignore
    except ImportError:
        raise UserError("fp16 graphs need onnxconverter-common: pip install 'dfseg[host]'") from None
    keep = list(matching_names([node.name for node in proto.graph.node], fp32_layers)) if fp32_layers else None
    with warnings.catch_warnings():
        # Weights below FP16's smallest normal are flushed (to 1e-7); the converter warns once per value.
        warnings.filterwarnings("ignore", message=".*will be truncated to", category=UserWarning)
        return float16.convert_float_to_float16(proto, keep_io_types=True, node_block_list=keep)


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over dfseg's one calibration reader."""

    def __init__(self, source: str, input_name: str, shape: Tuple[int, ...], limit: int) -> None:
        from .calibration import CalibrationFeeder

        self.feeder = CalibrationFeeder(source, shape, limit)
        self.input_name = input_name

    def get_next(self) -> Optional[dict]:
        batch = self.feeder.next_batch()
        return None if batch is None else {self.input_name: batch}

    def __iter__(self) -> Iterator[dict]:
        item = self.get_next()
        while item is not None:
            yield item
            item = self.get_next()


def _single_input(proto: Any) -> Tuple[str, Tuple[int, ...]]:
    initializers = {init.name for init in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UserError("int8 calibration supports single-input models; this one has {}".format(
            [i.name for i in inputs]))
    dims = tuple(d.dim_value for d in inputs[0].type.tensor_type.shape.dim)
    if len(dims) != 4 or any(d <= 0 for d in dims):
        raise UserError("int8 calibration needs a static NCHW input; {!r} is {}: export at a fixed size "
                        "(dfseg-export --size)".format(inputs[0].name, dims))
    return inputs[0].name, dims


def quantize_int8(src: str, dst: str, config: BuildConfig, target: str) -> None:
    """Static Q/DQ INT8 of ``src`` into ``dst``, calibrated on ``config.calibration``."""
    onnx = _onnx()
    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise UserError("int8 graphs need onnxruntime's quantization tools: pip install onnxruntime") from None
    if not config.calibration:
        raise UserError("int8 needs calibration images: pass --calibration FOLDER|VIDEO|CITYSCAPES_ROOT")
    proto = onnx.load(src)
    input_name, shape = _single_input(proto)
    exclude = list(matching_names([n.name for n in proto.graph.node], config.fp32_layers)) if config.fp32_layers \
        else []
    symmetric = target == "tensorrt"
    with tempfile.TemporaryDirectory(prefix="dfseg-int8-") as work:
        prepared = os.path.join(work, "prepared.onnx")
        # Shape inference and ORT's basic fusions first (Identity chains hide biases from the quantizer).
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)
        try:
            quant_pre_process(src, prepared, skip_symbolic_shape=True)
            quantize_static(
                prepared, dst, _Reader(config.calibration, input_name, shape, config.calibration_images),
                quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                calibrate_method=CalibrationMethod.MinMax,
                # TensorRT dequantizes INT8 only: biases stay FP32 in its graphs (an INT32 bias Q/DQ fails to parse).
                extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True,
                               "QuantizeBias": not symmetric},
            )
        finally:
            logging.getLogger().setLevel(quiet)


def derive_graph(src: str, dst: str, config: BuildConfig, target: str = "onnxruntime") -> str:
    """Write ``src`` at ``config.precision`` to ``dst`` (atomically), checked and stamped with the config."""
    onnx = _onnx()
    config = config.checked()
    config.needs_images(graph_path=True)
    if target not in TARGETS:
        raise UserError("precision target {!r}: choose one of {}".format(target, ", ".join(TARGETS)))
    if os.path.abspath(src) == os.path.abspath(dst):
        raise UserError("{}: the {} graph would overwrite its FP32 source; choose another output".format(
            dst, config.precision))
    present = graph_precision(src)
    if present != "fp32":
        raise UserError("{}: already a {} graph; derive {} from the FP32 export".format(src, present, config.precision))
    source_sha = sha256_file(src)
    with atomic_output(dst) as tmp:
        if config.precision == "fp16":
            proto = to_fp16(onnx.load(src), config.fp32_layers)
        elif config.precision == "int8":
            quantize_int8(src, tmp, config, target)
            proto = onnx.load(tmp)
        else:
            proto = onnx.load(src)
        _stamp(proto, config, target, source_sha)
        onnx.checker.check_model(proto, full_check=True)
        with open(tmp, "wb") as handle:
            handle.write(proto.SerializeToString())
    return dst


def graph_for(model_path: str, config: BuildConfig, target: str) -> str:
    """The ONNX file that runs ``model_path`` at ``config.precision`` on ``target``.

    FP32 requests and graphs that already have the requested precision are returned as they are (read
    without the onnx package where it is missing, so a device runs a graph the host derived); any
    other graph is derived once into ``config.cache_dir/graphs/`` under a key of the source's SHA-256 and
    the graph fields of the config, and reused afterwards."""
    proto = _load(model_path) if onnx_available() else model_path  # read once for the precision and the target
    present = graph_precision(proto)
    if present == config.precision:
        made_for = stored_target(proto) if present == "int8" else None
        if made_for not in (None, target):
            raise UserError("{}: an int8 graph made for {}, not {}: export it again with --target {}".format(
                model_path, made_for, target, target))
        return model_path
    if config.precision == "fp32":
        raise UserError("{}: a {} graph, not fp32; pass --precision {} to run it as it is, or the FP32 export".format(
            model_path, present, present))
    if present != "fp32":
        raise UserError("{}: a {} graph cannot be run at {}; pass the FP32 export".format(
            model_path, present, config.precision))
    import hashlib

    _onnx()  # deriving needs the onnx package: say so before anything is written
    config.needs_images(graph_path=True)  # int8 without --calibration: one line, before the 'deriving' note
    if config.fp32_layers:  # a name that matches no node: likewise
        matching_names([node.name for node in proto.graph.node], config.fp32_layers)
    identity = dict(config.graph_identity(), target=target, source=sha256_file(model_path))
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    stem = os.path.splitext(os.path.basename(model_path))[0]
    path = os.path.join(config.cache_dir, "graphs", "{}-{}-{}-{}.onnx".format(stem, config.precision, target, key))
    if os.path.isfile(path) and graph_precision(path) == config.precision:
        return path
    created = make_folders(os.path.dirname(path))
    log.warning("deriving the %s graph of %s for %s (once; cached at %s)", config.precision, model_path, target, path)
    try:
        return derive_graph(model_path, path, config, target)
    except BaseException:
        remove_empty_folders(created)  # a failed first derivation (a bad calibration image) leaves no empty cache
        raise


def class_map_agreement(first: np.ndarray, second: np.ndarray) -> float:
    """Share of pixels whose argmax class agrees between two logits (N x K x H x W) or class maps."""
    a = first.argmax(axis=1) if first.ndim == 4 else first
    b = second.argmax(axis=1) if second.ndim == 4 else second
    if a.shape != b.shape:
        raise ValueError("class maps differ in shape: {} vs {}".format(a.shape, b.shape))
    return float((a == b).mean())
