"""The house keeps its shape: the import graph of ``pooler/`` and ``protocol/`` has no cycle and
follows the layer order.

Every module is parsed (``ast``, nothing is imported) and every import statement counts, those
under ``if TYPE_CHECKING:`` and inside functions too: they are part of the design. ``from pkg
import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``. The checks:

- no cycle between modules;
- no cycle between units (a unit is a package such as ``pooler.web``, or a top-level module
  such as ``pooler.backend``: the rows of :data:`LAYERS`);
- no import of a unit from a higher layer (a module may import its own layer or lower ones).

The layer table is the one in README.md's architecture section (low to high).
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

import pooler
import protocol

ROOTS = {"pooler": Path(pooler.__file__).parent, "protocol": Path(protocol.__file__).parent}

LAYERS: dict[int, tuple[str, ...]] = {
    0: ("protocol",),  # the wire contract, pure
    1: ("pooler", "pooler.errors", "pooler.config"),  # version; the exception tree; Settings
    2: ("pooler.core",),  # the pure coordinator
    3: (  # adapters: may use the core's types
        "pooler.chain",
        "pooler.backend",
        "pooler.store",
        "pooler.stats",
        "pooler.miners",
        "pooler.metrics",
        "pooler.logs",
        "pooler.devnet",
    ),
    4: ("pooler.runtime",),  # the runner, outboxes, hub, inbox, task owners, search worker
    5: ("pooler.cluster",),  # a group on Redis
    6: ("pooler.web",),  # Starlette app, routes, miner socket and lane, the handlers' ports
    7: ("pooler.app",),  # options, wiring, service, observer
    # entry points (and the supervisor of PROCESSES > 1)
    8: ("pooler.cli", "pooler.serve", "pooler.supervisor", "pooler.demo", "pooler.config_cli"),
}
LAYER_OF = {unit: layer for layer, units in LAYERS.items() for unit in units}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for top, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            parts = [top, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()
PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}


def _resolve(module: str, level: int, current: str) -> str:
    """The absolute name of ``from <level dots><module> import ...`` written in ``current``."""
    if level == 0:
        return module
    base = current.split(".")
    if current not in PACKAGES:
        base.pop()  # a module's own package is its parent
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, *([module] if module else [])])


def _known(name: str) -> str | None:
    """``name``, or its nearest enclosing module of ours; None for a third-party name."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(name: str) -> set[str]:
    """The modules of ours that module ``name`` imports (every import statement in it)."""
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets: Iterable[str] = (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, name)
            # from pkg import sub: the submodule when there is one, else pkg itself
            targets = (
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names
            )
        else:
            continue
        for target in targets:
            known = _known(target)
            if known is not None and known != name:
                out.add(known)
    return out


GRAPH = {name: imports_of(name) for name in MODULES}


def unit_of(module: str) -> str:
    """The row of LAYERS a module belongs to: its package below ``pooler``, or itself."""
    parts = module.split(".")
    if parts[0] == "protocol":
        return "protocol"
    if len(parts) == 1:
        return "pooler"
    return ".".join(parts[:2])


def _cycles(graph: dict[str, set[str]]) -> Iterator[list[str]]:
    """Each strongly connected component with more than one node (Tarjan), as one cycle through
    it (a path from its first node back to it); the component's other nodes follow the path in
    the failure messages (:func:`_show`)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    for component in components:
        _COMPONENT[component[0]] = component
        yield _path_through(graph, component)


_COMPONENT: dict[str, list[str]] = {}  # a cycle's first node -> its whole component (messages)


def _path_through(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest cycle inside ``component`` through its first node (breadth first)."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    seen = {start}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if w not in seen:
                    seen.add(w)
                    previous[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"no cycle through {component}")


def _show(path: list[str]) -> str:
    """``a -> b -> a``, plus the rest of its component when the component is larger."""
    rest = [m for m in _COMPONENT.get(path[0], ()) if m not in path]
    return " -> ".join(path) + (f"   (and, in the same knot: {', '.join(rest)})" if rest else "")


def test_the_graph_is_read() -> None:
    assert len(MODULES) > 60
    assert "pooler.core.coordinator" in GRAPH["pooler.runtime.runner"]
    # from pkg import submodule resolves to the submodule
    assert "pooler.web.dashboard" in GRAPH["pooler.web.app"]
    # every module is placed in the layer table
    unplaced = sorted({unit_of(m) for m in MODULES} - LAYER_OF.keys())
    assert not unplaced, f"not in the layer table (tests/unit/test_architecture.py, README): {unplaced}"


def test_no_cycle_between_modules() -> None:
    cycles = list(_cycles(GRAPH))
    assert not cycles, "import cycles between modules:\n" + "\n".join(_show(c) for c in cycles)


def test_no_cycle_between_packages() -> None:
    units: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        mine = unit_of(module)
        units.setdefault(mine, set()).update(unit_of(t) for t in targets if unit_of(t) != mine)
    cycles = list(_cycles(units))
    where = {
        (unit_of(a), unit_of(b)): f"{a} -> {b}"
        for a, targets in GRAPH.items()
        for b in targets
        if unit_of(a) != unit_of(b)
    }
    lines = []
    for cycle in cycles:
        steps = [where[(x, y)] for x, y in itertools.pairwise(cycle)]
        lines.append(f"{_show(cycle)}\n    e.g. {'; '.join(steps)}")
    assert not cycles, "import cycles between packages:\n" + "\n".join(lines)


def test_every_import_follows_the_layer_order() -> None:
    against = sorted(
        f"{module} (layer {LAYER_OF[unit_of(module)]}) imports {target} (layer {LAYER_OF[unit_of(target)]})"
        for module, targets in GRAPH.items()
        for target in targets
        if LAYER_OF[unit_of(target)] > LAYER_OF[unit_of(module)]
    )
    assert not against, "imports against the layer order (low -> high):\n" + "\n".join(against)


MAX_MODULE_LINES = 700  # a module longer than this holds more than one concept
MAX_CLASS_LINES = 450  # likewise a class: split it along its seams


def test_modules_and_classes_stay_small() -> None:
    too_big: list[str] = []
    for name, path in MODULES.items():
        if not name.startswith("pooler"):
            continue
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n") + 1
        if lines > MAX_MODULE_LINES:
            too_big.append(f"{name}: {lines} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                size = node.end_lineno - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    too_big.append(f"{name}.{node.name}: {size} lines (at most {MAX_CLASS_LINES})")
    assert not too_big, "split these along their seams:\n" + "\n".join(too_big)
