"""The package's import graph: imports point one way through the layers, and no module cycle exists.

The graph is read from the source with `ast` (every `import` and `from ... import`, including those
inside functions; `if TYPE_CHECKING:` blocks count too, since they state a dependency as well).

    base      _version, errors, config, sqlfiles
    core      values, arrow, columns, source, windows, scan, run paths, run data, filters
    remote    the GraphQL transport, queries and API source          (core)
    local     the .wandb reader and its source                       (core)
    emulator  the W&B API emulator                                   (core, local)
    api       Api / Run / Runs and run resolution                    (core, remote, local)
    engines   pushdown, Polars, DuckDB, Ray, Spark                   (api and below)
    export    the checkpointed exporter and its sinks                (api and below)
    cli       the wandb-history command                              (everything)
    public    the package root and the connector.polars/duckdb/ray/spark entry points
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "connector"

BELOW = {
    "base": set(),
    "core": {"base"},
    "remote": {"base", "core"},
    "local": {"base", "core"},
    "emulator": {"base", "core", "local"},
    "api": {"base", "core", "remote", "local"},
    "engines": {"base", "core", "remote", "local", "api"},
    "export": {"base", "core", "remote", "local", "api"},
    "cli": {"base", "core", "remote", "local", "api", "engines", "export", "emulator"},
    "public": {"base", "core", "remote", "local", "api", "engines", "export", "emulator", "cli"},
}
TOP_LEVEL = {
    "connector._version": "base",
    "connector.errors": "base",
    "connector.config": "base",
    "connector.sqlfiles": "base",
    "connector.api": "api",
    "connector.resolve": "api",
    "connector.runs_table": "api",
    "connector": "public",
    "connector.polars": "public",
    "connector.duckdb": "public",
    "connector.ray": "public",
    "connector.spark": "public",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    if module in TOP_LEVEL:
        return TOP_LEVEL[module]
    sub = module.split(".")[1]
    if sub in BELOW:
        return sub
    raise AssertionError(f"{module} belongs to no layer: add it to tests/test_layers.py")


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(module: str) -> set[str]:
    """Modules of the package that `module` imports (the longest existing name of each import)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            named = [f"{origin}.{alias.name}" for alias in node.names]
            targets = [name for name in named if name in MODULES] or [origin]
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target.startswith("connector") and target != module:
                found.add(target)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module: str) -> None:
    layer = layer_of(module)
    wrong = sorted(
        f"{target} ({layer_of(target)})"
        for target in GRAPH[module]
        if layer_of(target) != layer and layer_of(target) not in BELOW[layer]
    )
    assert not wrong, f"{module} ({layer}) imports against the layer order: {', '.join(wrong)}"


def test_no_import_cycle() -> None:
    """Packages' `__init__` re-exports aside (an `__init__` importing its own submodules), no module
    reaches itself through imports."""
    edges = {
        m: {t for t in targets if not (MODULES[m].name == "__init__.py" and t.startswith(m + "."))}
        for m, targets in GRAPH.items()
    }
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_graph_is_read() -> None:
    """The reader sees known edges, so an empty graph cannot pass the tests above."""
    assert "connector.core.arrow" in GRAPH["connector.core.scan"]
    assert "connector.remote.transport" in GRAPH["connector.api"]
