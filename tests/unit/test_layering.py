"""The shape of the library, checked from its source (AST, no import-time side effects):

- no module imports one that imports it back, directly or through others, lazy (function-level) imports
  included: a cycle hidden in a function body still ties two modules into one;
- the pure core (language/, customers/profile, journeys/engine) loads neither boto3 nor the runtime's
  AWS clients (retention.core.runtime): everything importing them loads at module level is followed;
- nothing in the layer imports the dev-only code (local/, cli/, infra/, bench/) or the handlers.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

LAYER = Path(__file__).resolve().parents[2] / "layers" / "common" / "python"
PURE = ("retention.language", "retention.customers.profile", "retention.journeys.engine")
IMPURE = ("boto3", "botocore", "retention.core.runtime")
DEV_ONLY = ("local", "cli", "infra", "bench", "functions", "tests")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((LAYER / "retention").rglob("*.py")):
        name = ".".join(path.relative_to(LAYER).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _target(module: str, name: str | None) -> str:
    """`from a.b import c`: the module a.b.c when c is one, else a.b."""
    full = f"{module}.{name}" if name else module
    return full if full in MODULES else module


def _imports(path: Path, *, module_level_only: bool) -> set[str]:
    """Absolute names imported by a file; with module_level_only, what runs when the module loads (not
    function bodies, not `if TYPE_CHECKING:` blocks)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if module_level_only and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if module_level_only and isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.update(_target(child.module, alias.name) for alias in child.names)
            visit(child)

    visit(tree)
    return found


def _graph(*, module_level_only: bool) -> dict[str, set[str]]:
    return {name: _imports(path, module_level_only=module_level_only) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), and self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                connect(w)
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
            if len(component) > 1 or v in graph.get(v, ()):
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def _reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every name reachable from `start`, with the module that imports it (for the failure message)."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        current = todo.pop()
        for name in graph.get(current, ()):
            if name not in seen:
                seen[name] = current
                if name in graph:
                    todo.append(name)
    return seen


def test_the_checker_sees_a_lazy_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert _cycles(_graph(module_level_only=False)) == []


@pytest.mark.parametrize("pure", [m for m in MODULES if m.startswith(PURE)])
def test_the_pure_core_loads_neither_boto3_nor_the_runtime(pure: str) -> None:
    reached = _reachable(_graph(module_level_only=True), pure)
    bad = {name: via for name, via in reached.items() if name.startswith(IMPURE)}
    assert bad == {}, f"{pure} loads {sorted(bad)} (imported by {sorted(set(bad.values()))})"


def test_importing_the_engine_loads_no_boto3() -> None:
    """The same, as the interpreter sees it."""
    code = ("import sys; import retention.journeys.engine, retention.customers.profile, retention.language.lint, "
            "retention.language.rules, retention.language.segments, retention.language.templates; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore') "
            "or m == 'retention.core.runtime'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(LAYER), "PATH": ""})
    assert out.stdout.strip() == "[]"


def test_the_layer_imports_no_dev_only_code() -> None:
    graph = _graph(module_level_only=False)
    bad = {m: sorted(n for n in names if n.split(".")[0] in DEV_ONLY) for m, names in graph.items()}
    assert {m: names for m, names in bad.items() if names} == {}
