"""Which uebench modules import each other in a circle? Reads every `import` in src/uebench with `ast`, those inside
functions included (a lazy import is still an import), and prints each group of modules that reach one another
(Tarjan's strongly connected components), largest first. An empty output means the import graph has no cycle.

    python benchmarks/import_cycles.py            # from the repository root
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src"


def modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package's __init__)."""
    out = {}
    for f in root.rglob("*.py"):
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
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return sorted(found, key=len, reverse=True)


if __name__ == "__main__":
    for group in cycles(edges(modules(ROOT))):
        print(f"{len(group)} modules: {', '.join(group)}")
