"""The package's layers (DESIGN): imports only go down, and never into another subpackage's
private modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lifexport

PACKAGE = Path(lifexport.__file__).parent
#: Lowest first; a module may import its own layer and those before it. Top-level modules
#: (demo, errors, version) and the TOOLS subpackages are the tools layer. ``runtime`` sits
#: right above ``graph``: it reads the contract and nothing else of the package (it must run
#: without torch), and no layer below the tools runs files through it.
LAYERS = (
    "functional",
    "kernels",
    "modules",
    "graph",
    "runtime",
    "export",
    "nir",
    "validation",
    "digits",
)
#: Subpackages of the tools layer: above every layer, each with its own private modules.
TOOLS = ("cli", "bench")
BELOW_EVERYTHING = {"lifexport.errors", "lifexport._version", "lifexport.limits"}


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return len(LAYERS)  # the tools: lifexport itself, _demo, the TOOLS subpackages


def _imports(path: Path) -> list[str]:
    """The lifexport modules that ``path`` imports (absolute imports; the package uses them)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "lifexport":
            found += [f"lifexport.{alias.name}" for alias in node.names]  # a subpackage, or
            # a name the package exports (then it counts as the tools layer: checked as such)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [m for m in found if m == "lifexport" or m.startswith("lifexport.")]


SOURCES = sorted(p for p in PACKAGE.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_and_not_into_private_modules(path: Path) -> None:
    importer = _module_name(path)
    own = importer.split(".")[:2]
    for imported in _imports(path):
        if imported in BELOW_EVERYTHING or imported == "lifexport" and importer == "lifexport":
            continue
        parts = imported.split(".")
        if _layer(importer) < len(LAYERS):
            assert _layer(imported) <= _layer(importer), f"{importer} imports {imported} (up)"
        other_subpackage = parts[:2] != own
        private = any(p.startswith("_") for p in parts[2:])
        if other_subpackage and len(parts) > 2:
            assert not private, f"{importer} imports {imported}, private to {'.'.join(parts[:2])}"


def test_the_layer_list_covers_every_subpackage() -> None:
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages <= {*LAYERS, *TOOLS}, subpackages - {*LAYERS, *TOOLS}


def test_the_runtime_reads_only_the_contract() -> None:
    # numpy and onnxruntime only: of the package, the graph layer and what sits below all.
    for path in sorted((PACKAGE / "runtime").glob("*.py")):
        for imported in _imports(path):
            layer = imported.split(".")[1] if "." in imported else ""
            assert imported in BELOW_EVERYTHING or layer in ("graph", "runtime"), imported
