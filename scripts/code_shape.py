"""The shape targets of the code (issue 14), measured: module length, function length,
constructor parameters and import direction. `python scripts/code_shape.py` prints them;
tests/test_code_shape.py holds them.

Function length counts the lines from ``def`` to the last line of the body, decorators
and docstring included, as a reader sees them."""

from __future__ import annotations

import ast
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "proxy"

# Imports point one way: a module may import from its own folder and from any folder of
# a lower layer, never from a higher one (entry points at the top, config at the bottom).
LAYERS: dict[str, int] = {
    "__main__": 9,
    "cli": 8,
    "server": 7,
    "app": 6,
    "modes": 6,
    "http": 5,
    "webhooks": 5,
    "tracing": 5,
    "login": 5,
    "auth": 4,
    "refresh": 3,
    "session": 3,
    "oauth": 2,
    "upstream": 2,
    "ops": 2,
    "crypto": 0,
    "errors": 0,
    "clock": 0,
    "request_state": 0,
    "config": 0,
    "sipgate": 0,  # data about sipgate's API (its operations and scopes)
}
ENTRY_POINTS = {"__main__", "cli", "server"}  # the only modules that may import app


@dataclass(frozen=True)
class Function:
    module: str
    name: str
    lines: int
    parameters: int  # without self/cls, *args and **kwargs count one each


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "node_modules" not in p.parts)


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _parameter_count(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    args = node.args
    names = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    count = len(names) + (args.vararg is not None) + (args.kwarg is not None)
    if names and names[0].arg in ("self", "cls"):
        count -= 1
    return count


def functions(path: Path) -> list[Function]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = (node.end_lineno or node.lineno) - first + 1
            found.append(Function(module_name(path), node.name, length, _parameter_count(node)))
    return found


def constructor_parameters(path: Path) -> list[tuple[str, int]]:
    """(class, parameters) for every class: its __init__, or its dataclass fields."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        init = [f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"]
        if init:
            found.append((f"{module_name(path)}.{node.name}", _parameter_count(init[0])))
    return found


def layer_of(module: str) -> tuple[str, int] | None:
    parts = module.split(".")
    if parts[0] != "proxy" or len(parts) < 2:
        return None
    top = parts[1]
    return (top, LAYERS[top]) if top in LAYERS else None


def upward_imports(path: Path) -> list[str]:
    """Imports from a higher layer (or from app), as 'importer -> imported'."""
    importer = module_name(path)
    own = layer_of(importer)
    if own is None:
        return []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    wrong = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        for target in targets:
            layer = layer_of(target)
            if layer is None or layer[0] == own[0]:
                continue
            if layer[1] > own[1] or (layer[0] == "app" and own[0] not in ENTRY_POINTS):
                wrong.append(f"{importer} -> {target}")
                break
    return wrong


def _runtime_imports(tree: ast.Module) -> list[str]:
    """Module-level imports, without those under ``if TYPE_CHECKING:`` (never run)."""
    found: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.ImportFrom) and inner.module and inner.level == 0:
                found += [inner.module] + [f"{inner.module}.{a.name}" for a in inner.names]
            elif isinstance(inner, ast.Import):
                found += [a.name for a in inner.names]
    return found


def import_cycles() -> list[list[str]]:
    """Cycles among the package's modules through imports that run at import time."""
    names = {module_name(p).removesuffix(".__init__"): p for p in modules()}
    graph = {
        name: sorted(
            {t for t in _runtime_imports(ast.parse(path.read_text())) if t in names and t != name}
        )
        for name, path in names.items()
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in graph[node]:
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])
    return cycles


def main() -> int:
    paths = modules()
    lengths = {module_name(p): len(p.read_text().splitlines()) for p in paths}
    every = [f for p in paths for f in functions(p)]
    sizes = sorted(f.lines for f in every)
    print(f"modules: {len(paths)}, largest:")
    for name, lines in sorted(lengths.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {lines:4d} {name}")
    print(
        f"functions: {len(sizes)}, median {statistics.median(sizes):.0f} lines, "
        f"p90 {statistics.quantiles(sizes, n=10)[-1]:.0f}, max {sizes[-1]}"
    )
    print("longest functions:")
    for f in sorted(every, key=lambda f: -f.lines)[:10]:
        print(f"  {f.lines:4d} {f.module}.{f.name}")
    wide = [(c, n) for p in paths for c, n in constructor_parameters(p) if n > 5]
    print(f"constructors over 5 parameters: {wide or 'none'}")
    upward = [w for p in paths for w in upward_imports(p)]
    print(f"imports against the layers: {upward or 'none'}")
    print(f"import cycles: {import_cycles() or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
