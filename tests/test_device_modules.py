"""The Makefile's DEVICE_MODULES (the files vermin holds to the Python 3.6 floor) must cover every module
the device commands can import: the closure of dfseg-bench, dfseg-run and dfseg-eval over every dfseg
import (module level and inside functions), stopping at the host-only modules, those that import
torch when they load (a device never reaches them: the path to each is a lazy import for the host)."""

import ast
import pathlib
import re
from typing import Set

from test_layers import ROOT, dfseg_imports, module_name

DEVICE_COMMANDS = ("dfseg.cli.bench", "dfseg.cli.run", "dfseg.cli.eval")
MAKEFILE = ROOT.parent / "Makefile"


def path_of(module: str) -> pathlib.Path:
    path = ROOT.parent.joinpath(*module.split("."))
    return path / "__init__.py" if (path / "__init__.py").is_file() else path.with_suffix(".py")


def imports_torch_on_load(source: str) -> bool:
    for node in ast.parse(source).body:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
        if any(name == "torch" or name.startswith("torch.") for name in names):
            return True
    return False


def device_closure() -> Set[str]:
    seen: Set[str] = set()
    todo = list(DEVICE_COMMANDS)
    while todo:
        module = todo.pop()
        path = path_of(module)
        if module in seen or not path.is_file():
            continue
        source = path.read_text()
        if imports_torch_on_load(source):
            continue
        seen.add(module)
        # the packages above a module load with it
        todo += [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
        todo += [target for _, target in dfseg_imports(source, module, path.name == "__init__.py")]
    return seen


def vermin_modules() -> Set[str]:
    text = MAKEFILE.read_text().replace("\\\n", " ")
    entries = re.search(r"^DEVICE_MODULES\s*:=(.*)$", text, re.M).group(1).split()
    covered: Set[str] = set()
    for entry in entries:
        path = ROOT.parent / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        covered |= {module_name(f) for f in files}
    return covered


def test_vermin_checks_every_module_the_device_commands_import():
    closure = device_closure()
    assert {"dfseg.cli.bench", "dfseg.journal", "dfseg.backends.tensorrt.runner"} <= closure  # the walk works
    assert not any(m.startswith("dfseg.models") or m == "dfseg.export" for m in closure)  # and stops at torch
    missing = sorted(closure - vermin_modules())
    assert not missing, "add to DEVICE_MODULES in the Makefile: " + " ".join(str(path_of(m).relative_to(
        ROOT.parent)) for m in missing)
