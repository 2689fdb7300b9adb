"""The few places where the TensorRT Python API differs between 8.2 (JetPack 4.6), 8.5/8.6 (JetPack 5)
and 10.x (JetPack 6, desktop wheels).  Everything else in ``dfseg.backends.trt`` is one code path.

=================  ============================  ====================================
concern            8.2 / 8.4                     8.5+ (required from 10.0)
=================  ============================  ====================================
workspace          config.max_workspace_size     config.set_memory_pool_limit (8.4+)
explicit batch     EXPLICIT_BATCH network flag   flag deprecated, default in 10.0
I/O tensors        bindings (index based)        named tensors (num_io_tensors)
execution          execute_async_v2(bindings)    set_tensor_address + execute_async_v3
precision pinning  STRICT_TYPES (< 8.2)          OBEY_PRECISION_CONSTRAINTS (8.2+)
=================  ============================  ====================================

Each function takes the imported ``tensorrt`` module as ``trt`` so the dispatch is testable without
TensorRT.  Device side: Python 3.6, no torch.
"""

import functools
import re
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

NAMED_TENSORS_SINCE = (8, 5)
MEMORY_POOLS_SINCE = (8, 4)
EXPLICIT_BATCH_DEFAULT_SINCE = (10, 0)


class TensorRTVersionError(RuntimeError):
    """The installed TensorRT is older than dfseg supports."""


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
    if version < (8, 2):
        raise TensorRTVersionError("TensorRT {}.{} is too old: dfseg needs 8.2 or newer (JetPack 4.6+)".format(
            *version))
    return version


def uses_named_tensors(trt: Any) -> bool:
    return version_tuple(trt) >= NAMED_TENSORS_SINCE


def network_flags(trt: Any) -> int:
    """Flags for ``builder.create_network``: explicit batch, which 10.0 made the only mode."""
    if version_tuple(trt) >= EXPLICIT_BATCH_DEFAULT_SINCE:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def set_workspace(trt: Any, config: Any, workspace_bytes: int) -> None:
    if version_tuple(trt) >= MEMORY_POOLS_SINCE:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    else:
        config.max_workspace_size = int(workspace_bytes)


def precision_constraints_flag(trt: Any) -> Any:
    """The builder flag that makes per-layer precisions binding (used to keep layers in FP32)."""
    flag = getattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS", None)
    return flag if flag is not None else trt.BuilderFlag.STRICT_TYPES


def io_tensors(trt: Any, engine: Any) -> List[IOTensor]:
    """Inputs and outputs of ``engine`` in engine order, with numpy dtypes."""
    tensors = []
    if uses_named_tensors(trt):
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            tensors.append(IOTensor(
                name, engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                tuple(int(d) for d in engine.get_tensor_shape(name)),
                np.dtype(trt.nptype(engine.get_tensor_dtype(name))), index))
    else:
        for index in range(engine.num_bindings):
            tensors.append(IOTensor(
                engine.get_binding_name(index), bool(engine.binding_is_input(index)),
                tuple(int(d) for d in engine.get_binding_shape(index)),
                np.dtype(trt.nptype(engine.get_binding_dtype(index))), index))
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
