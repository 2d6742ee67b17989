"""The host package's structure: no import cycles, nothing imports upwards into the CLI.

Every import counts, also one inside a function (a cycle hidden in a constructor is still a
cycle). The sim's firmware is MicroPython code run on the virtual board: not host code.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "host_tools" / "mpguard"


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            # the longest known module the import names (a name imported from a package
            # may be a submodule or an attribute)
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    files = [p for p in PKG.rglob("*.py") if "firmware" not in p.parts]
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules) for p in files}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    # Tarjan's strongly connected components; a component of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read():
    g = graph()
    assert "mpguard.cli" in g and "mpguard.errors" in g["mpguard.cli"]
    assert "mpguard.reasons" in g["mpguard.errors"]


def test_no_import_cycles():
    # a package's __init__ importing its own submodules (a facade) is not a cycle of layers
    g = {m: {d for d in deps if not m or not d.startswith(m + ".")} for m, deps in graph().items()}
    assert cycles(g) == []


def test_cycle_detector_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_imports_the_cli_upwards():
    bad = sorted(m for m, deps in graph().items()
                 if not m.startswith("mpguard.cli") and m != "mpguard.__main__"
                 and any(d.startswith("mpguard.cli") for d in deps))
    assert bad == []


def test_leaf_modules_import_nothing_of_mpguard():
    g = graph()
    for leaf in ("mpguard.reasons", "mpguard.files"):
        assert g[leaf] == set(), leaf
