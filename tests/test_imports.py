"""The import graph of ``lighttrack/``, read from the source (every import statement,
also those inside functions): no cycle, no edge from a lower layer to a higher one, and
neither Ray nor MLflow anywhere in the library (``ray_jobs/`` adapts it to them)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "lighttrack"

# Low to high; a module may import its own layer and the layers below.
LAYERS = [
    {"lighttrack", "config", "arch", "geometry", "atomic", "checkpoint", "costs"},  # values, files, no models
    {"data", "models"},
    {"tracker"},
    {"train", "search"},
    {"commands", "cli"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for p in LIB.rglob("*.py"):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def _imports(name: str, path: Path) -> list[str]:
    """Every module named by an import statement of ``path`` (absolute names)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            names += [base] + [f"{base}.{a.name}" for a in node.names]
    return names


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {m: set() for m in mods}
    for m, p in mods.items():
        for n in _imports(m, p):
            while n and n not in mods:  # `from lighttrack.data.fs import DataError` -> lighttrack.data.fs
                n = n.rpartition(".")[0]
            if n and n != m:
                graph[m].add(n)
    return graph


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "lighttrack"
    return next(i for i, names in enumerate(LAYERS) if top in names)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

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
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_every_library_module_has_a_layer():
    assert {m.split(".")[1] for m in _modules() if "." in m} <= set().union(*LAYERS)


def test_the_library_import_graph_has_no_cycle():
    assert _cycles(_graph()) == []


def test_no_import_points_up_a_layer():
    up = [(m, n) for m, ns in _graph().items() for n in ns if _layer(n) > _layer(m)]
    assert up == [], f"imports from a lower layer to a higher one: {up}"


def test_the_library_imports_neither_ray_nor_mlflow():
    bad = [(str(p.relative_to(ROOT)), n) for m, p in _modules().items() for n in _imports(m, p)
           if n.split(".")[0] in ("ray", "mlflow")]
    assert bad == []


def test_the_checks_see_a_cycle_and_an_upward_edge():
    """The graph reader on a made-up graph: a cycle and a layer-0 module importing a model."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert _layer("lighttrack.config") < _layer("lighttrack.models.supernet")
    assert "lighttrack.tracker.ort" in _graph()["lighttrack.tracker.export"]  # relative and absolute imports read
