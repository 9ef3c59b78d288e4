"""The package's shape, read from its own imports (every `import` in src/uebench, those inside functions too: a lazy
import is still an import): no circle, and every folder imports only from the floors below it."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# the floors, bottom up: a module imports from its own folder and the ones before it
FLOORS = (
    "core",
    "data",
    "models",
    "defenses",
    "metrics",
    "poisons",
    "training",
    "attacks",
    "report",
    "experiments",
    "cli",
)
# the arrows that still point up, each for a reason docs/reference/layout.md gives; a new one fails the test
UPWARD: set[tuple[str, str]] = set()


def modules(root: Path = SRC) -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package's __init__)."""
    out = {}
    for f in (root / "uebench").rglob("*.py"):
        parts = list(f.relative_to(root).with_suffix("").parts)
        package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if package else parts)] = (f, package)
    return out


def absolute(name: str, level: int, current: str, package: bool) -> str:
    if level == 0:
        return name
    base = current.split(".") if package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def edges(mods: dict[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, (f, package) in mods.items():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                graph[m] |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                target = absolute(node.module or "", node.level, m, package)
                for a in node.names:  # `from pkg import mod` imports the module; `from mod import name`, the module
                    full = f"{target}.{a.name}"
                    graph[m].add(full if full in mods else target)
    return {m: {t for t in ts if t in mods and t != m} for m, ts in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found, key=len, reverse=True)


def floor(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in FLOORS) else None


def upward(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {
        (m, t)
        for m, ts in graph.items()
        for t in ts
        if floor(m) in FLOORS and floor(t) in FLOORS and FLOORS.index(floor(t)) > FLOORS.index(floor(m))
    }


def test_the_tarjan_search_finds_a_circle_worked_by_hand():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back_in_a_circle():
    assert cycles(edges(modules())) == []


def test_every_folder_imports_only_from_the_floors_below_it():
    graph = edges(modules())
    assert upward(graph) == UPWARD  # a new upward arrow fails; one that went away must leave UPWARD too


def test_the_package_root_holds_only_its_entry_points():
    root = {f.name for f in (SRC / "uebench").glob("*.py")}
    assert root <= {"__init__.py", "__main__.py"}
    folders = {d.name for d in (SRC / "uebench").iterdir() if d.is_dir() and (d / "__init__.py").exists()}
    assert folders == set(FLOORS)  # every folder is a floor of the drawing
