"""The layers import each other in one direction only, and only cloud/ reaches openstacksdk.

Read from the source (the AST of every module), not from what happens to be imported at
test time, so an import inside a function counts too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "flexinfra"
#: the sandbox and the demo are the test ground's, leaving the package (issue 8)
NOT_THE_OPERATOR = {"sandbox", "demo"}

#: layer -> the layers it may import (itself always allowed). Top-level modules that are
#: leaves (settings, metrics, status) are layers of their own.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "settings": set(),
    "metrics": set(),
    "status": set(),
    "api": {"core"},
    "cloud": {"core"},
    "planning": {"core"},
    "reconcile": {"core", "cloud", "planning", "api", "metrics"},
    "agent": set(),
    "galera": {"agent"},
    "kinds": {"core", "cloud", "planning", "reconcile", "api", "galera", "metrics"},
    "k8s": {"core", "api"},
    "lease": {"k8s"},
    "handlers": {"core", "cloud", "reconcile", "kinds", "api", "k8s", "metrics", "settings",
                 "status", "lease", "galera"},
    "plan_cli": {"core", "api", "cloud", "kinds", "handlers", "k8s"},
    "runner": {"api", "settings", "handlers", "cloud", "core", "lease", "k8s"},
    "cli": {"api", "runner", "plan_cli", "sandbox", "agent"},
    "__init__": set(),
    "__main__": {"cli"},
}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        if rel.parts[0] in NOT_THE_OPERATOR:
            continue
        name = ".".join(("flexinfra", *rel.parts)).removesuffix(".__init__")
        found[name] = path
    return found


def layer(module: str) -> str:
    """``flexinfra.<layer>...``; ``flexinfra`` itself and its attributes (``__version__``)
    are the package's ``__init__``, a leaf everyone may read."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else "__init__"


def imports(path: Path, *, runtime_only: bool = False) -> set[str]:
    """The flexinfra modules ``path`` imports (``runtime_only``: not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skip |= {id(n) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
            "flexinfra"
        ):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("flexinfra")}
    return found


def test_every_layer_is_known():
    assert {layer(m) for m in modules()} <= set(ALLOWED)


def test_layers_import_downwards_only():
    wrong = []
    for module, path in modules().items():
        mine = layer(module)
        for target in imports(path):
            theirs = layer(target)
            if theirs not in (mine, "__init__") and theirs not in ALLOWED[mine]:
                wrong.append(f"{module} imports {target} ({mine} -> {theirs})")
    assert not wrong, "\n".join(wrong)


def test_cloud_and_planning_do_not_know_each_other():
    for module, path in modules().items():
        others = {layer(t) for t in imports(path)}
        if layer(module) == "cloud":
            assert "planning" not in others, module
        if layer(module) == "planning":
            assert "cloud" not in others, module


def test_no_import_cycle_between_layers_or_modules():
    known = modules()
    layer_graph: dict[str, set[str]] = {}
    module_graph: dict[str, set[str]] = {}
    for module, path in known.items():
        targets = {t for t in imports(path, runtime_only=True) if t in known}
        module_graph[module] = targets - {module}
        layer_graph.setdefault(layer(module), set()).update(
            layer(t) for t in targets if layer(t) != layer(module)
        )
    for graph in (layer_graph, module_graph):
        cycle = find_cycle(graph)
        assert cycle is None, " -> ".join(cycle or [])


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


SDK = re.compile(
    r"^\s*(import|from)\s+(openstack|keystoneauth1)\b|"
    r"\bconn\.(network|compute|block_storage|load_balancer|image|identity)\b|\.conn\b",
    re.M,
)


def test_nothing_above_cloud_touches_openstacksdk():
    wrong = []
    for module, path in modules().items():
        if layer(module) == "cloud":
            continue
        for match in SDK.finditer(path.read_text()):
            line = path.read_text()[: match.start()].count("\n") + 1
            wrong.append(f"{path.relative_to(PACKAGE)}:{line}: {match.group(0).strip()}")
    assert not wrong, "\n".join(wrong)
