"""The package layout is the pipeline: no import cycles, and lower stages never reach up.

The import graph is read from the source (every ``import`` statement, function-local ones
included; only ``if TYPE_CHECKING:`` blocks are left out, since they never run). A new cycle
or a lower stage importing a higher one fails here with the path that closes the loop.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("grounded", "connectors", "indexes")

# Bottom to top: a component may import its own layer or lower ones only. Components are the
# sub-packages of grounded (and its top-level modules); connectors and indexes sit at the bottom.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("grounded.errors", "grounded.plugins", "grounded.text", "grounded.html", "grounded.version"),
    ("grounded.config", "grounded.config_docs"),
    ("connectors", "indexes", "grounded.access"),
    ("grounded.experts", "grounded.checks"),
    ("grounded.retrieval",),
    ("grounded.store",),
    ("grounded.ingest", "grounded.sql"),
    ("grounded.tools",),
    ("grounded.grounding",),
    ("grounded.answering",),
    ("grounded.notebook", "grounded.optimize"),
    ("grounded.kb",),
    ("grounded.ops", "grounded.tune"),
    # The client shares the API's schemas; the framework integrations wrap the client or a local KB.
    ("grounded.api", "grounded.client", "grounded.integrations"),
    ("grounded.cli", "grounded"),
)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    out: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                # ``from pkg import module`` depends on the module (the package's __init__ runs for
                # any submodule, so it is no dependency of its own); ``from pkg import name`` on pkg.
                names = [f"{base}.{alias.name}" for alias in node.names]
                targets = [n for n in names if n in modules] or [base]
                if len(targets) < len(names):
                    targets.append(base)
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges[name].add(target)
    return edges


def _component(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "grounded":
        return parts[0]
    if len(parts) == 1:
        return "grounded"
    return ".".join(parts[:2])


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_module_imports_itself_in_a_circle() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_package_imports_itself_in_a_circle() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for source, targets in _graph().items():
        for target in targets:
            if _component(source) != _component(target):
                edges[_component(source)].add(_component(target))
    cycle = _cycle(edges)
    assert cycle is None, "package import cycle: " + " -> ".join(cycle or [])


def test_lower_stages_never_import_higher_ones() -> None:
    layer = {component: i for i, components in enumerate(LAYERS) for component in components}
    upward = []
    for source, targets in sorted(_graph().items()):
        for target in sorted(targets):
            a, b = _component(source), _component(target)
            assert a in layer, f"{a} (from {source}) is not in LAYERS: place the new package in the pipeline"
            assert b in layer, f"{b} (from {target}) is not in LAYERS: place the new package in the pipeline"
            if layer[b] > layer[a]:
                upward.append(f"{source} -> {target}")
    assert not upward, "imports from a lower stage into a higher one:\n" + "\n".join(upward)


def test_the_graph_sees_function_local_imports() -> None:
    # The checks above are only as good as the graph: a lazy import must count as an edge.
    assert "grounded.kb" in _graph()["grounded"]
