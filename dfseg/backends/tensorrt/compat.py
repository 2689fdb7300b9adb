"""The few places where the TensorRT Python API differs between 8.2 (JetPack 4.6.1), 8.5/8.6 (JetPack 5),
10.x (JetPack 6, desktop wheels) and 11.x.  Everything else in ``dfseg.backends.tensorrt`` is one code path.

=================  ============================  ==================================  =====================
concern            8.2 / 8.4                     8.5 .. 10.x                         11.x
=================  ============================  ==================================  =====================
workspace          config.max_workspace_size     config.set_memory_pool_limit (8.4+)  same
network flags      EXPLICIT_BATCH                none (10.0: explicit is the only     none (always strongly
                                                 mode); STRONGLY_TYPED for graphs     typed)
I/O tensors        bindings (index based)        named tensors (num_io_tensors)       same
execution          execute_async_v2(bindings)    set_tensor_address + v3              same
FP16 / INT8        weak typing: BuilderFlag      10: the graph (strong), weak flags   the graph only
                   FP16/INT8 + entropy           as a fallback (--network-typing
                   calibrator                    weak)
FP32 layers        layer.precision + OBEY_       10 strong: casts in the graph        casts in the graph
                   PRECISION_CONSTRAINTS
=================  ============================  ==================================  =====================

Each function takes the imported ``tensorrt`` module as ``trt`` so the dispatch is testable without
TensorRT; ``tests/test_trt_contract.py`` runs these code paths against a recorder and checks every name
they touch against NVIDIA's binding wheels.  Device side: Python 3.6, no torch.
"""

import functools
import logging
import re
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ...errors import UserError

NAMED_TENSORS_SINCE = (8, 5)
MEMORY_POOLS_SINCE = (8, 4)
EXPLICIT_BATCH_DEFAULT_SINCE = (10, 0)
STRONG_TYPING_SINCE = (10, 0)
ALWAYS_STRONG_SINCE = (11, 0)
# The newest major version whose API this module knows; a later one may have removed names we use.
SUPPORTED_BELOW = (12, 0)


class TensorRTVersionError(UserError):
    """The installed TensorRT (or trtexec) is outside 8.2..11.x, or lacks what was asked of it."""


class IOTensor(NamedTuple):
    name: str
    is_input: bool
    shape: Tuple[int, ...]
    dtype: np.dtype
    index: int  # binding index (8.2) or I/O tensor index (8.5+); both enumerate inputs and outputs


@functools.lru_cache(maxsize=16)
def _parse_version(text: str) -> Optional[Tuple[int, int]]:
    """(major, minor) from a version string, or None; cached, as it is asked on every execute call."""
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def version_tuple(trt: Any) -> Tuple[int, int]:
    """(major, minor) of the ``tensorrt`` module; 8.2 is the oldest supported."""
    version = _parse_version(str(getattr(trt, "__version__", "")))
    if version is None:
        raise TensorRTVersionError("cannot read the TensorRT version from tensorrt.__version__ = {!r}".format(
            getattr(trt, "__version__", None)))
    return supported(version)


def supported(version: Tuple[int, int]) -> Tuple[int, int]:
    """``version`` when dfseg knows its API (8.2 to 11.x), else a one-line TensorRTVersionError."""
    if version < (8, 2):
        raise TensorRTVersionError("TensorRT {}.{} is too old: dfseg needs 8.2 or newer (JetPack 4.6.1+)".format(
            *version))
    if version >= SUPPORTED_BELOW:
        raise TensorRTVersionError("TensorRT {}.{} is newer than this dfseg supports (8.2 to {}.x): pip install "
                                   "'tensorrt<{}', or upgrade dfseg".format(version[0], version[1],
                                                                            SUPPORTED_BELOW[0] - 1,
                                                                            SUPPORTED_BELOW[0]))
    return version


def uses_named_tensors(trt: Any) -> bool:
    return version_tuple(trt) >= NAMED_TENSORS_SINCE


def strongly_typed(trt: Any, precision: str, network_typing: str = "auto") -> bool:
    """``typing_for`` the installed ``tensorrt`` module."""
    return typing_for(version_tuple(trt), precision, network_typing)


def typing_for(version: Tuple[int, int], precision: str, network_typing: str = "auto") -> bool:
    """Whether TensorRT ``version`` builds ``precision`` from the graph (a strongly typed network) rather
    than from builder flags; the one rule for the Python API and trtexec alike.

    11.x: always.  10.x: FP16/INT8 from the graph unless ``network_typing`` is "weak" (the deprecated
    FP16 flag, as a fallback; INT8 always from the Q/DQ graph: the implicit calibrator is for 8.x only);
    FP32 needs no typing.  8.x: never (the flags and the entropy calibrator)."""
    if version >= ALWAYS_STRONG_SINCE:
        if network_typing == "weak":
            raise TensorRTVersionError("TensorRT {}.{} has no weak typing: drop --network-typing weak".format(*version))
        return True
    if version >= STRONG_TYPING_SINCE:
        if network_typing == "weak" and precision == "int8":
            raise TensorRTVersionError("int8 on TensorRT {}.{} is built from the Q/DQ graph (the implicit calibrator "
                                       "is for 8.x): drop --network-typing weak".format(*version))
        return precision != "fp32" and network_typing != "weak"
    if network_typing == "strong":
        raise TensorRTVersionError("strongly typed networks need TensorRT 10 or newer, this is {}.{}: drop "
                                   "--network-typing strong".format(*version))
    return False


def network_flags(trt: Any, strong: bool = False) -> int:
    """Flags for ``builder.create_network``: explicit batch before 10.0 (then the only mode), strongly
    typed on 10.x when asked (11.x networks always are)."""
    version = version_tuple(trt)
    if version >= ALWAYS_STRONG_SINCE:
        return 0
    if version >= EXPLICIT_BATCH_DEFAULT_SINCE:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strong else 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def set_workspace(trt: Any, config: Any, workspace_bytes: int) -> None:
    if version_tuple(trt) >= MEMORY_POOLS_SINCE:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    else:
        config.max_workspace_size = int(workspace_bytes)


def set_weak_precision(trt: Any, builder: Any, config: Any, precision: str, calibrator: Any = None) -> None:
    """The weak-typing builder flags for FP16/INT8 (8.x, and 10.x's fallback); never called on 11.x."""
    if version_tuple(trt) >= ALWAYS_STRONG_SINCE:
        raise TensorRTVersionError("TensorRT 11 has no precision flags; build the FP16/INT8 graph instead")
    if precision == "int8" and not builder.platform_has_fast_int8:
        # TensorRT would quietly build FP16/FP32 kernels (a TX2, sm62, has no INT8 tensor path).
        raise UserError("this GPU has no fast INT8 (Jetson TX2 and Nano have none): use --precision fp16")
    if not builder.platform_has_fast_fp16:
        logging.getLogger("dfseg.trt").warning("this GPU has no fast FP16; the engine will be slow")
    config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator


def keep_layers_fp32(trt: Any, layers: Sequence[Any], config: Any) -> None:
    """Weak typing only: pin ``layers`` (and their outputs) to FP32 and make the pins binding."""
    for layer in layers:
        layer.precision = trt.float32
        for output in range(layer.num_outputs):
            layer.set_output_type(output, trt.float32)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)


# TensorRT DataType names -> numpy.  Not ``trt.nptype``: up to 8.5.2 it builds ``{bool: np.bool}``
# (python/packaging/tensorrt/__init__.py at tags 8.2.1 to 8.5.2; np.bool_ from 8.5.3), which raises on
# every call with numpy 1.24 to 1.26 (NVIDIA/TensorRT#2557; 2.0 brought np.bool back), the numpy pip
# picks on JetPack 5 (1.24.4).
NUMPY_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "BOOL": np.bool_,
                "UINT8": np.uint8, "INT64": np.int64}


def numpy_dtype(trt_dtype: Any) -> np.dtype:
    """The numpy dtype of a ``trt.DataType`` member (pybind11 enums print as ``DataType.FLOAT``)."""
    name = str(trt_dtype).rsplit(".", 1)[-1]
    if name not in NUMPY_DTYPES:
        raise UserError("a TensorRT {} tensor has no numpy type; export the model with float32/int32 "
                        "inputs and outputs".format(name))
    return np.dtype(NUMPY_DTYPES[name])


def io_tensors(trt: Any, engine: Any) -> List[IOTensor]:
    """Inputs and outputs of ``engine`` in engine order, with numpy dtypes."""
    tensors = []
    if uses_named_tensors(trt):
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            tensors.append(IOTensor(
                name, engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                tuple(int(d) for d in engine.get_tensor_shape(name)),
                numpy_dtype(engine.get_tensor_dtype(name)), index))
    else:
        for index in range(engine.num_bindings):
            tensors.append(IOTensor(
                engine.get_binding_name(index), bool(engine.binding_is_input(index)),
                tuple(int(d) for d in engine.get_binding_shape(index)),
                numpy_dtype(engine.get_binding_dtype(index)), index))
    return tensors


def bind_addresses(trt: Any, context: Any, tensors: Sequence[IOTensor], addresses: Dict[str, int]) -> List[int]:
    """Tell the context where each tensor lives.  8.5+: once per address; 8.2: the binding list
    ``execute`` passes on every call (returned)."""
    if uses_named_tensors(trt):
        for tensor in tensors:
            if not context.set_tensor_address(tensor.name, int(addresses[tensor.name])):
                raise RuntimeError("TensorRT refused the device address of tensor {!r}".format(tensor.name))
        return []
    bindings = [0] * len(tensors)
    for tensor in tensors:
        bindings[tensor.index] = int(addresses[tensor.name])
    return bindings


def execute(trt: Any, context: Any, bindings: List[int], stream_handle: int) -> None:
    """Enqueue one inference on ``stream_handle`` (v3 with named tensors, v2 with bindings)."""
    if uses_named_tensors(trt):
        ok = context.execute_async_v3(stream_handle)
    else:
        ok = context.execute_async_v2(bindings, stream_handle)
    if not ok:
        raise RuntimeError("TensorRT failed to enqueue the inference (see the TensorRT log above)")
