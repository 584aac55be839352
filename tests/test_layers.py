"""The tree reads as the flow: imports between affbench's modules point down the layers only,
and no two files import each other, directly or round a circle (issue 16). Every import
counts, inside functions too, and so does ``importlib.import_module("literal")``."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Lower number = lower layer; a module may import from its own layer or any lower one.
LAYERS = {
    "affbench.errors": 0, "affbench.version": 0, "affbench.protocol": 0, "affbench.reference": 0,
    "affbench.registry": 1, "implementations": 1, "affbench.measure": 1,
    "affbench.layer": 2, "affbench.verify": 2,
    "affbench.store": 3,
    "affbench.engine": 4,
    "affbench.report": 5, "affbench.train": 5,
    "affbench.commands": 6, "affbench.cli": 6, "affbench.pytest_plugin": 6,
    "affbench": 7, "affbench.__main__": 7,  # the package root re-exports the public names
}


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for pkg in ("affbench", "implementations"):
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _imports(mod: str, path: Path, is_pkg: bool, known: dict) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = mod.split(".") if is_pkg else mod.split(".")[:-1]
            prefix = (".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
                      if node.level else node.module or "")
            names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)):
            names = [node.args[0].value]
        for name in names:
            while name not in known and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in known and name != mod:
                found.add(name)
    return found


def _layer(mod: str) -> int:
    best = max((k for k in LAYERS if mod == k or mod.startswith(k + ".")), key=len)
    return LAYERS[best]


GRAPH = {m: _imports(m, p, is_pkg, _modules()) for m, (p, is_pkg) in _modules().items()}


def test_imports_point_down_the_layers():
    upward = [f"{m} -> {d}" for m, deps in GRAPH.items() for d in deps
              if d != "affbench" and _layer(d) > _layer(m)]
    # importing the package root itself only runs its set-up (thread pools, allocator)
    assert not upward, "imports pointing up: " + "; ".join(sorted(upward))


def test_no_import_circles():
    index, low, stack, on, circles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in GRAPH[v] - {"affbench"}:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                circles.append(sorted(part))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_registry_does_not_import_the_builtins():
    assert not {d for d in GRAPH["affbench.registry"] if d.startswith("implementations")}
