"""The layers of the tree, and that imports go one way between them."""

from __future__ import annotations

import ast
import pathlib

import pytest

from helpers import ROOT

# Each layer may import the layers listed after it, never one above it.
LAYERS = ["runner", "runners", "ops", "serving", "pipeline", "modules"]
# ops and serving are siblings: neither imports the other.
SIBLINGS = {("ops", "serving"), ("serving", "ops")}


def imported_layers(path: pathlib.Path) -> set[str]:
    """The project packages a file imports (anywhere in it, lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names if name.split(".")[0] in LAYERS}
    return found


def sources() -> list[tuple[str, pathlib.Path]]:
    files = [("runner", ROOT / "runner.py")]
    for layer in LAYERS[1:]:
        files += [(layer, p) for p in sorted((ROOT / layer).glob("*.py"))]
    return files


@pytest.mark.parametrize("layer, path", sources(), ids=lambda v: str(v.relative_to(ROOT)) if isinstance(v, pathlib.Path) else v)
def test_no_module_imports_a_layer_above_its_own(layer, path):
    allowed = set(LAYERS[LAYERS.index(layer) :])
    upward = {other for other in imported_layers(path) if other not in allowed or (layer, other) in SIBLINGS}
    assert not upward, f"{path.relative_to(ROOT)} ({layer}) imports {sorted(upward)}"


def test_the_check_finds_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from runners import local\n")
    assert imported_layers(bad) == {"runners"}
