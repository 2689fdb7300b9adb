"""Imports run only downwards through the layers of docs/architecture.md: every module of dfseg/ is
read with ast (module level, inside functions, relative or absolute) and each import of a dfseg
module above the importer's layer fails the test."""

import ast
import pathlib
from typing import Iterator, List, Tuple

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "dfseg"

# Top first; the architecture document gives the reason for each package's place.
LAYERS = (
    ("cli",),
    ("api",),
    ("search", "bench", "live", "eval"),
    ("export", "convert", "latency", "space"),
    ("models", "backends", "build_config", "precision", "calibration", "weights", "parts", "arch", "trt_parse_rules"),
    ("fileio", "journal", "sizes", "uri", "errors", "jetson", "cityscapes", "preprocess", "plots", "synthetic", "clocks",
     "onnx_wire", "opencv_log", "__init__"),
)
# dfseg.load re-exports the API lazily (imported inside the function), so `import dfseg` stays torch-free.
EXCEPTIONS = {("dfseg", "dfseg.api")}
LAYER_OF = {name: depth for depth, names in enumerate(LAYERS) for name in names}


def module_name(path: pathlib.Path) -> str:
    parts = ("dfseg",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    """The layer of a dfseg module: that of its first name below ``dfseg`` (``dfseg`` itself: its
    ``__init__``, a utility)."""
    top = module.split(".")[1] if "." in module else "__init__"
    if top not in LAYER_OF:
        raise AssertionError("{} is in no layer: add {!r} to LAYERS here and to docs/architecture.md".format(
            module, top))
    return LAYER_OF[top]


def is_module(name: str) -> bool:
    path = ROOT.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def dfseg_imports(source: str, module: str, is_package: bool) -> Iterator[Tuple[int, str]]:
    """(line, imported dfseg module) for every import anywhere in ``source``, relative ones resolved;
    ``from X import y`` imports the module X.y where there is one, else X (y is a name in X)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            names = [base + "." + alias.name if is_module(base + "." + alias.name) else base for alias in node.names]
        else:
            continue
        for name in names:
            if name == "dfseg" or name.startswith("dfseg."):
                yield node.lineno, name


def modules() -> List[pathlib.Path]:
    return sorted(ROOT.rglob("*.py"))


def test_every_module_is_in_a_layer():
    for path in modules():
        layer(module_name(path))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_only_go_down(path):
    module = module_name(path)
    own = layer(module)
    upward = ["{}:{} imports {} (layer {} above {})".format(path.relative_to(ROOT.parent), line, target,
                                                           layer(target), own)
              for line, target in dfseg_imports(path.read_text(), module, path.name == "__init__.py")
              if layer(target) < own and (module, target) not in EXCEPTIONS]
    assert not upward, "\n".join(upward)


def test_the_walker_sees_relative_and_function_level_imports():
    source = ("from ..cli.space_options import x\n"
              "def f():\n"
              "    from .. import cli, __version__\n"
              "    import dfseg.search.study\n"
              "from . import study\n"
              "import numpy\n")
    found = sorted(dfseg_imports(source, "dfseg.search.candidates", is_package=False))
    assert found == [(1, "dfseg.cli.space_options"), (3, "dfseg"), (3, "dfseg.cli"), (4, "dfseg.search.study"),
                     (5, "dfseg.search.study")]
    assert [layer(name) for _, name in found] == [0, 5, 0, 2, 2]
