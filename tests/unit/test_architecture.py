"""The shape of the code, checked: no import cycles inside ``dataferry``, and no module so long it
should have been split (over 400 lines) unless its docstring says why it is longer.

The import graph is read from the source with ``ast``, not by importing: every ``import`` counts,
also one inside a function (a lazy import still runs, just later), except those under
``if TYPE_CHECKING:`` (they never run). ``from dataferry.a import b`` is an edge to ``dataferry.a.b``
when ``b`` is a module, else to ``dataferry.a``. Importing ``dataferry.a.b`` also runs
``dataferry/a/__init__.py``, but that parent-package edge is not counted: a package's
``__init__`` importing its own submodules is how packages gather their names, not a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "dataferry"
MAX_LINES = 400
EXPLAINED = "longer than 400 lines because"

#: Cycles that exist today outside the CLI/jobs redesign, each as the set of modules on it; the
#: edges among those modules are ignored (so keep this list short).
KNOWN_CYCLES: list[frozenset[str]] = []

#: Modules over the limit that are not split yet, and why.
OVERSIZE_ALLOWED: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for ``__init__``)."""
    found: dict[str, Path] = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, skipping the bodies of ``if TYPE_CHECKING:`` (imports there never run)."""
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo += node.orelse
            continue
        todo += ast.iter_child_nodes(node)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ``dataferry`` modules that module ``name`` imports directly."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.add(_nearest_module(alias.name, modules))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in modules else _nearest_module(base, modules))
    out.discard("")
    out.discard(name)
    return {m for m in out if m == PACKAGE or m.startswith(PACKAGE + ".")}


def _nearest_module(dotted: str, modules: dict[str, Path]) -> str:
    parts = dotted.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: modules it imports}`` inside the package."""
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each strongly connected group of modules (Tarjan, then BFS)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    found = []
    for group in groups:
        start = min(group)
        found.append(_shortest_cycle(graph, start, group))
    return sorted(found)


def _shortest_cycle(graph: dict[str, set[str]], start: str, group: set[str]) -> list[str]:
    paths = {start: [start]}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(graph[v] & group):
            if w == start:
                return [*paths[v], start]
            if w not in paths:
                paths[w] = [*paths[v], w]
                todo.append(w)
    raise AssertionError(f"no cycle through {start}")


def _without_known(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph minus the edges between the modules of each known cycle."""
    pruned = {v: set(ws) for v, ws in graph.items()}
    for known in KNOWN_CYCLES:
        for v in known:
            pruned[v] = pruned.get(v, set()) - known
    return pruned


def test_the_import_graph_is_read_correctly() -> None:
    graph = import_graph()
    assert "dataferry.errors" in graph["dataferry.cli._common"]
    assert "dataferry.jobs.state" in graph["dataferry.cli.jobs"]  # from dataferry.jobs import state
    assert "dataferry.jobs" not in graph["dataferry.cli.jobs"]
    assert "dataferry.quickstart" in graph["dataferry.cli.core"]  # imported inside a function
    assert "dataferry.artifacts" not in graph["dataferry.errors"]  # only under TYPE_CHECKING
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycles() -> None:
    found = cycles(_without_known(import_graph()))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_module_over_400_lines_without_a_reason() -> None:
    too_long = {}
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        doc = ast.get_docstring(ast.parse(text)) or ""
        if lines > MAX_LINES and EXPLAINED not in " ".join(doc.split()) and name not in OVERSIZE_ALLOWED:
            too_long[name] = lines
    assert not too_long, f"split these, or say in the docstring why they are {EXPLAINED} ...: {too_long}"


#: The layers, lowest first (docs/architecture.md draws them). A module may import its own layer and
#: the ones below; nothing imports upward. The package's ``__init__`` (the public API) and
#: ``__main__`` sit on top and load their names lazily.
LAYERS: list[tuple[str, ...]] = [
    (
        "dataferry.errors",
        "dataferry._version",
        "dataferry.engines.registry",
        "dataferry.environ",
        "dataferry.stopping",
    ),
    (
        "dataferry.config",
        "dataferry.streams",
        "dataferry.heap",
        "dataferry.progress",
        "dataferry.gzipio",
        "dataferry.private",
        "dataferry.cpus",
    ),
    ("dataferry.codecs", "dataferry.encryption", "dataferry.stores", "dataferry.engines"),
    ("dataferry.artifacts", "dataferry.signing"),
    ("dataferry.layouts", "dataferry.sanitise", "dataferry.metrics"),
    ("dataferry.pipeline", "dataferry.pieces", "dataferry.runspace"),
    ("dataferry.ops",),
    ("dataferry.jobs", "dataferry.compat"),
    ("dataferry.quickstart", "dataferry.render", "dataferry.serve"),
    ("dataferry.cli",),
    ("dataferry", "dataferry.__main__"),
]


def layer_of(module: str) -> int:
    """The layer of a module: that of the longest listed prefix."""
    best, rank = -1, -1
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, rank = len(name), index
    assert rank >= 0, f"{module} is in no layer: add it to LAYERS and to docs/architecture.md"
    return rank


def test_nothing_imports_upward() -> None:
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in sorted(import_graph().items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "imports upward:\n" + "\n".join(upward)


def test_the_architecture_page_names_every_layer() -> None:
    page = (SRC.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    for names in LAYERS[:-1]:
        for name in names:
            if name.rsplit(".", 1)[-1].startswith("_"):
                continue
            short = name.removeprefix("dataferry.")
            assert short in page, f"docs/architecture.md does not mention {short}"


def test_a_command_starts_without_the_s3_client() -> None:
    """boto3 and botocore cost every command ~0.2 s of start-up (a third of it); only a command
    that opens an S3 store imports them (``stores.open_store``, ``stores.s3copy``)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from dataferry.cli import run\n"
        "run(['--help'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "[]"
    assert "Usage:" in out.stdout  # the command line did load every command
