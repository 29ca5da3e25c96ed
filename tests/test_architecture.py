"""The shape of the code, checked: layers that only import downward, no import cycle, short functions.

The folders are the data flow (model -> accel -> boards -> the command), so each layer may import only the
layers below it: `intformer.model` neither `accel` nor `boards`, `intformer.accel` no `boards`, and nothing
below the command imports the command's modules (scripts/). Every import counts, a lazy one inside a
function too, since it binds the two modules together all the same. The module graph has no cycle (Tarjan's
strongly connected components over every import). No function or method in accel/ or boards/ is longer
than 150 lines. The imports are read from the source with `ast`, so the check needs nothing to run.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"model": "intformer.model", "accel": "intformer.accel", "boards": "intformer.boards", "scripts": "intformer"}
LAYER = {"intformer.model": 0, "intformer.accel": 1, "intformer.boards": 2, "intformer": 3}
MAX_FUNCTION_LINES = 150


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def package_of(module: str) -> str:
    for package in ("intformer.model", "intformer.accel", "intformer.boards"):
        if module == package or module.startswith(package + "."):
            return package
    return "intformer"


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The project's modules that `module` imports, anywhere in its source."""
    is_package = path.stem == "__init__"
    base = module if is_package else module.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                parent = ".".join(parts[:len(parts) - (node.level - 1)])
                target = f"{parent}.{node.module}" if node.module else parent
            else:
                target = node.module or ""
            names = [target] + [f"{target}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:       # `from pkg import module` or a name inside a module
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {m: imports(m, p, known) for m, p in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_layers_import_only_downward():
    upward = []
    for module, targets in graph().items():
        for target in targets:
            package, other = package_of(module), package_of(target)
            if LAYER[other] > LAYER[package]:
                upward.append(f"{module} imports {target}")
    assert not upward, "a lower layer imports a higher one:\n" + "\n".join(sorted(upward))


def test_no_import_cycle():
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_cycle_check_can_fail():
    """The cycle finder itself finds a cycle where there is one (so the test above can fail)."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def long_functions(folder: str) -> list[str]:
    out = []
    for path in sorted((ROOT / folder).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    out.append(f"{folder}/{path.name}:{node.lineno} {node.name} ({lines} lines)")
    return out


@pytest.mark.parametrize("folder", ["accel", "boards"])
def test_functions_are_short(folder):
    found = long_functions(folder)
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines: " + ", ".join(found)
