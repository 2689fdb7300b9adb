"""A stand-in ``tensorrt`` module that records every attribute dfseg's code touches on it.

It is not a TensorRT double: it returns placeholders (truthy, iterable, two of everything) so that
dfseg's real code paths run to the end, and it remembers each name read, written, called or
overridden (methods that a subclass of a TensorRT interface defines, such as ``report_layer_time``,
are names TensorRT calls back).  ``tests/test_trt_contract.py`` checks those names against NVIDIA's
binding wheels, so the list of names cannot fall behind the code.
"""

import re
from typing import Any

import numpy as np

INTERFACE = re.compile(r"^I[A-Z0-9]")
# Calls whose results dfseg uses as Python values, not as TensorRT objects.
VALUES = {
    "get_tensor_name": "input",
    "get_binding_name": "input",
    "nptype": np.float32,
}
ATTRIBUTE_VALUES = {"name": "/head/conv/Conv"}
# TensorRT 8.2 to 8.5.2 build nptype's mapping with ``np.bool`` (python/packaging/tensorrt/__init__.py at
# tags 8.2.1..8.5.2; ``np.bool_`` from 8.5.3), an alias numpy 1.24-1.26 no longer has: on a JetPack 5
# with pip's numpy 1.24.4 every call raises (NVIDIA/TensorRT#2557).  The recorder raises for those
# versions whatever numpy runs the test, so a call of trt.nptype on those code paths is caught.
NPTYPE_BROKEN_THROUGH = (8, 5, 2)
NPTYPE_ERROR = ("module 'numpy' has no attribute 'bool' (tensorrt {}'s nptype reads np.bool, which numpy "
                "1.24-1.26 lack)")


def nptype_breaks(version: str) -> bool:
    parts = tuple(int(p) for p in re.findall(r"\d+", version)[:3])
    return parts <= NPTYPE_BROKEN_THROUGH


class Recorder:
    def __init__(self, version: str, parse_ok: bool = True) -> None:
        self.version = version
        self.parse_ok = parse_ok
        self.names = set()  # type: Set[str]
        self.interfaces = {}  # type: Dict[str, type]

    def module(self) -> "Node":
        return Module(self)

    def interface(self, name: str) -> type:
        if name not in self.interfaces:
            recorder = self

            def init_subclass(cls: type, **kwargs: Any) -> None:
                recorder.names.update(n for n in vars(cls) if not n.startswith("_"))

            self.interfaces[name] = type(name, (), {"__init__": lambda self, *a: None,
                                                    "__init_subclass__": classmethod(init_subclass)})
        return self.interfaces[name]


class Node:
    """A placeholder TensorRT object; ``_path`` says how it was reached (for messages only)."""

    def __init__(self, recorder: Recorder, path: str, call_name: str = "") -> None:
        object.__setattr__(self, "_recorder", recorder)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_call_name", call_name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        self._recorder.names.add(name)
        if INTERFACE.match(name):
            return self._recorder.interface(name)
        if name in ATTRIBUTE_VALUES:
            return ATTRIBUTE_VALUES[name]
        return Node(self._recorder, self._path + "." + name, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._recorder.names.add(name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._call_name == "nptype" and nptype_breaks(self._recorder.version):
            raise AttributeError(NPTYPE_ERROR.format(self._recorder.version))
        if self._call_name in VALUES:
            return VALUES[self._call_name]
        if self._call_name == "parse":
            return self._recorder.parse_ok
        return Node(self._recorder, self._path + "()")

    def __int__(self) -> int:
        return 2

    __index__ = __int__

    def __bool__(self) -> bool:
        return True

    def __iter__(self):
        return iter((1, 3, 8, 8))

    def __bytes__(self) -> bytes:
        return b"placeholder"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Node) and other._path == self._path

    def __hash__(self) -> int:
        return hash(self._path)

    def __lshift__(self, other: Any) -> int:
        return 1 << int(other)

    __rlshift__ = __lshift__


class Module(Node):
    """The module itself: its ``__version__`` is read too (it lives in the wheel's ``__init__.py``)."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(recorder, "tensorrt")

    def __getattribute__(self, name: str) -> Any:
        if name == "__version__":
            recorder = object.__getattribute__(self, "_recorder")
            recorder.names.add(name)
            return recorder.version
        return object.__getattribute__(self, name)
