"""The import graph's layering: the benchmarks and agents on top, then the env, the wire below the server and
the model, and no loops.

Every import of every module of ``world_model``, ``dreamx_env``, ``agents`` and ``dreamx_bench`` is read from
its source (the ones under ``if TYPE_CHECKING:`` only name types and are left out), function-local ones
included."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("world_model", "dreamx_env", "agents", "dreamx_bench")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of the imports under ``if TYPE_CHECKING:``."""
    lines = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.If)
            and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING"
        ):
            lines |= {n.lineno for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return lines


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_only(tree)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.lineno in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                assert not node.level, (
                    f"{name}:{node.lineno}: a relative import (the project imports absolutely)"
                )
                base = node.module or ""
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            edges[name] |= {t for t in targets if t in modules and t != name}
    return edges


def test_nothing_below_the_env_imports_it():
    """world_model imports only itself; the env imports no agent or benchmark; nothing imports a benchmark."""
    upward = [
        (a, b)
        for a, targets in _graph().items()
        for b in targets
        if (a.startswith("world_model") and b.split(".")[0] != "world_model")
        or (a.startswith("dreamx_env") and b.startswith(("agents", "dreamx_bench")))
        or (b.startswith("dreamx_bench") and not a.startswith("dreamx_bench"))
    ]
    assert upward == []


def test_the_wire_is_below_the_server_and_the_model():
    graph = _graph()
    up = ("world_model.serve", "world_model.model", "world_model.engine")
    assert [
        (a, b) for a in graph if a.startswith("world_model.wire") for b in graph[a] if b.startswith(up)
    ] == []
    below = ("world_model.model", "world_model.engine")  # the backends do not know the server or the wire
    assert [
        (a, b)
        for a in graph
        if a.startswith(below)
        for b in graph[a]
        if b.startswith(("world_model.serve", "world_model.wire"))
    ] == []


def test_no_module_imports_itself_through_others():
    graph = _graph()
    index, low, stack, on_stack, loops = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                loops.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert loops == []
