"""TensorRT version shims.

These tests use small fake ``trt`` namespaces because what ``trt_compat`` decides is pure version
dispatch (which API name to call for 8.2, 8.5/8.6, 10.x and 11.x); TensorRT cannot be installed here.  The
fakes record which calls were made; they do not claim to behave like TensorRT otherwise.  The real
API is exercised by tests/gpu/test_tensorrt_gpu.py on a GPU machine.
"""

import types

import numpy as np
import pytest

from dfseg.backends.tensorrt import compat as trt_compat
from dfseg.errors import UserError


def fake_trt(version):
    return types.SimpleNamespace(
        __version__=version,
        NetworkDefinitionCreationFlag=types.SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=5),
        MemoryPoolType=types.SimpleNamespace(WORKSPACE="WORKSPACE"),
        BuilderFlag=types.SimpleNamespace(STRICT_TYPES="STRICT", OBEY_PRECISION_CONSTRAINTS="OBEY"),
        TensorIOMode=types.SimpleNamespace(INPUT="IN", OUTPUT="OUT"),
        nptype=lambda dtype: {"FLOAT": np.float32, "HALF": np.float16}[dtype],
    )


class Recorder:
    def __init__(self):
        self.calls = []

    def set_memory_pool_limit(self, pool, size):
        self.calls.append(("set_memory_pool_limit", pool, size))

    def set_tensor_address(self, name, address):
        self.calls.append(("set_tensor_address", name, address))
        return True

    def execute_async_v3(self, stream):
        self.calls.append(("execute_async_v3", stream))
        return True

    def execute_async_v2(self, bindings, stream):
        self.calls.append(("execute_async_v2", list(bindings), stream))
        return True


class BindingEngine:  # the 8.2 engine interface
    names = ["input", "output"]
    num_bindings = 2

    def get_binding_name(self, i):
        return self.names[i]

    def binding_is_input(self, i):
        return i == 0

    def get_binding_shape(self, i):
        return (1, 3, 8, 8) if i == 0 else (1, 19, 8, 8)

    def get_binding_dtype(self, i):
        return "FLOAT"


class NamedEngine:  # the 8.5+ engine interface
    num_io_tensors = 2

    def get_tensor_name(self, i):
        return ["input", "output"][i]

    def get_tensor_mode(self, name):
        return "IN" if name == "input" else "OUT"

    def get_tensor_shape(self, name):
        return (1, 3, 8, 8) if name == "input" else (1, 19, 8, 8)

    def get_tensor_dtype(self, name):
        return "HALF" if name == "output" else "FLOAT"


def test_versions():
    assert trt_compat.version_tuple(fake_trt("8.2.1.8")) == (8, 2)
    assert trt_compat.version_tuple(fake_trt("10.3.0")) == (10, 3)
    with pytest.raises(trt_compat.TensorRTVersionError, match=r"too old.*JetPack 4\.6\.1\+"):
        trt_compat.version_tuple(fake_trt("8.0.1"))  # JetPack 4.6 (not .1) ships 8.0
    with pytest.raises(trt_compat.TensorRTVersionError, match="cannot read"):
        trt_compat.version_tuple(fake_trt("unknown"))


def test_network_flags():
    assert trt_compat.network_flags(fake_trt("8.2.1")) == 1
    assert trt_compat.network_flags(fake_trt("8.6.1")) == 1
    assert trt_compat.network_flags(fake_trt("10.0.1")) == 0


def test_workspace():
    old = Recorder()
    trt_compat.set_workspace(fake_trt("8.2.1"), old, 1 << 30)
    assert old.max_workspace_size == 1 << 30 and old.calls == []
    new = Recorder()
    trt_compat.set_workspace(fake_trt("8.6.1"), new, 1 << 20)
    assert new.calls == [("set_memory_pool_limit", "WORKSPACE", 1 << 20)]


def test_strong_typing_per_version():
    # 11.x is always strongly typed; 10.x by default (weak flags on request); 8.x never.
    assert trt_compat.strongly_typed(fake_trt("11.4.0"), "fp16") is True
    assert trt_compat.network_flags(fake_trt("11.4.0"), True) == 0
    with pytest.raises(trt_compat.TensorRTVersionError, match="no weak typing"):
        trt_compat.strongly_typed(fake_trt("11.4.0"), "fp16", "weak")
    assert trt_compat.strongly_typed(fake_trt("10.16.1"), "int8") is True
    assert trt_compat.strongly_typed(fake_trt("10.16.1"), "fp16", "weak") is False
    assert trt_compat.strongly_typed(fake_trt("10.16.1"), "fp32") is False  # an FP32 graph needs no typing
    with pytest.raises(UserError, match="implicit calibrator is for 8.x"):  # a UserError: one line, exit 2
        trt_compat.strongly_typed(fake_trt("10.16.1"), "int8", "weak")
    assert trt_compat.network_flags(fake_trt("10.16.1"), True) == 1 << 5
    assert trt_compat.strongly_typed(fake_trt("8.2.1"), "fp16") is False
    with pytest.raises(trt_compat.TensorRTVersionError, match="need TensorRT 10"):
        trt_compat.strongly_typed(fake_trt("8.6.1"), "fp16", "strong")


def test_unsupported_new_major_is_one_line():
    with pytest.raises(trt_compat.TensorRTVersionError, match=r"12.0 is newer .* 'tensorrt<12'"):
        trt_compat.version_tuple(fake_trt("12.0.1"))


def test_bindings_path_for_8_2():
    trt = fake_trt("8.2.1")
    tensors = trt_compat.io_tensors(trt, BindingEngine())
    assert [(t.name, t.is_input, t.shape, t.dtype) for t in tensors] == [
        ("input", True, (1, 3, 8, 8), np.dtype(np.float32)), ("output", False, (1, 19, 8, 8), np.dtype(np.float32))]
    context = Recorder()
    bindings = trt_compat.bind_addresses(trt, context, tensors, {"output": 2000, "input": 1000})
    assert bindings == [1000, 2000] and context.calls == []
    trt_compat.execute(trt, context, bindings, 77)
    assert context.calls == [("execute_async_v2", [1000, 2000], 77)]


@pytest.mark.parametrize("version", ["8.5.2", "8.6.1", "10.3.0"])
def test_named_tensor_path(version):
    trt = fake_trt(version)
    tensors = trt_compat.io_tensors(trt, NamedEngine())
    assert [t.is_input for t in tensors] == [True, False] and tensors[1].dtype == np.dtype(np.float16)
    context = Recorder()
    assert trt_compat.bind_addresses(trt, context, tensors, {"input": 1000, "output": 2000}) == []
    trt_compat.execute(trt, context, [], 77)
    assert context.calls == [("set_tensor_address", "input", 1000), ("set_tensor_address", "output", 2000),
                             ("execute_async_v3", 77)]


def test_failed_enqueue_raises():
    class Refuses(Recorder):
        def execute_async_v3(self, stream):
            return False

    with pytest.raises(RuntimeError, match="failed to enqueue"):
        trt_compat.execute(fake_trt("10.0.1"), Refuses(), [], 1)
