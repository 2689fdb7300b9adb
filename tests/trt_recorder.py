"""A stand-in ``tensorrt`` module that records every attribute dfseg's code touches on it.

It is not a TensorRT double: it returns placeholders (truthy, iterable, two of everything) so that
dfseg's real code paths run to the end, and it remembers each name read, written, called or
overridden (methods that a subclass of a TensorRT interface defines, such as ``report_layer_time``,
are names TensorRT calls back).  ``tests/test_trt_contract.py`` checks those names against NVIDIA's
binding wheels, so the list of names cannot fall behind the code.
"""

import re
from typing import Any, Dict, List, Optional, Set, Tuple  # noqa: F401  (Set: in a type comment)

import numpy as np

INTERFACE = re.compile(r"^I[A-Z0-9]")


class DataTypeMember:
    """A ``trt.DataType`` member as pybind11 prints it (``DataType.FLOAT``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return "DataType." + self.name


# The numpy that pip gives each JetPack's Python: 4.6.1 ships 1.19.5 (python3-numpy, Python 3.6); on
# JetPack 5.1 (Python 3.8) pip resolves numpy>=1.19 to 1.24.4, the last release for 3.8.
JETPACK_NUMPY = {"8.2.1": (1, 19), "8.5.2": (1, 24)}


def nptype_of(version: str) -> Any:
    """``trt.nptype`` as each release's python/packaging/tensorrt/__init__.py defines it: 8.2.1 to 8.5.2
    build ``{..., bool: np.bool}`` on every call, an AttributeError with numpy 1.24 to 1.26 (the alias was
    removed in 1.24 and came back in 2.0; NVIDIA/TensorRT#2557); 8.5.3 and later use ``np.bool_``.  The
    numpy is the one that the release's JetPack gets (``JETPACK_NUMPY``), else the one installed here."""
    release = tuple(int(p) for p in re.findall(r"\d+", version)[:3])
    numpy_version = JETPACK_NUMPY.get(version) or tuple(int(p) for p in np.__version__.split(".")[:2])

    def nptype(trt_type: Any) -> Any:
        if release <= (8, 5, 2) and (1, 24) <= numpy_version < (2, 0):
            raise AttributeError("module 'numpy' has no attribute 'bool'")
        return np.float32

    return nptype


# Calls whose results dfseg uses as Python values, not as TensorRT objects.
VALUES = {
    "get_tensor_name": "input",
    "get_binding_name": "input",
    "get_tensor_dtype": DataTypeMember("FLOAT"),
    "get_binding_dtype": DataTypeMember("FLOAT"),
}
ATTRIBUTE_VALUES = {"name": "/head/conv/Conv"}


class Recorder:
    def __init__(self, version: str, parse_ok: bool = True, attributes: Optional[Dict[str, Any]] = None) -> None:
        self.version = version
        self.parse_ok = parse_ok
        self.attributes = dict(ATTRIBUTE_VALUES, **(attributes or {}))  # values of properties such as
        self.names = set()  # type: Set[str]                          # platform_has_fast_int8
        self.interfaces = {}  # type: Dict[str, type]
        self.calls = []  # type: List[Tuple[str, Tuple[str, ...]]]  (callee path, argument paths)

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
        if name in self._recorder.attributes:
            return self._recorder.attributes[name]
        return Node(self._recorder, self._path + "." + name, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._recorder.names.add(name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._recorder.calls.append((self._path, tuple(getattr(a, "_path", repr(a)) for a in args)))
        if self._call_name == "nptype":
            return nptype_of(self._recorder.version)(*args)
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
