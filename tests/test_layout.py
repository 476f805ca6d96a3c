"""The layout's rules, checked on the source (docs/ARCHITECTURE.md, "The tree"):

- gateway/ imports nothing of router/ or workers/; workers/ imports neither;
- code outside one of gateway's sub-packages imports it only through the
  sub-package's public names (`from gateway.pool import Relay`), never a module
  inside it; only tests reach inside;
- no module imports another module's private (`_`) names;
- the module-level imports form no cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "router", "workers", "loadtests")
SUB_PACKAGES = frozenset(p.parent.name for p in (ROOT / "gateway").glob("*/__init__.py"))


def modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            yield name, path
    yield "run", ROOT / "run.py"


def module_imports(path: Path) -> Iterator[tuple[str, list[str]]]:
    """(module, names) of every module-level import, TYPE_CHECKING blocks aside."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        yield from _imports(node)


def _imports(node: ast.stmt) -> Iterator[tuple[str, list[str]]]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, []
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        yield node.module, [alias.name for alias in node.names]
    elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
        for child in node.body + node.orelse:
            yield from _imports(child)
    elif isinstance(node, ast.Try):
        for child in node.body:
            yield from _imports(child)


def all_imports(path: Path) -> Iterator[tuple[str, list[str]]]:
    """Every import in the file, function-level ones too."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def sub_package(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "gateway" and parts[1] in SUB_PACKAGES:
        return parts[1]
    return None


def test_packages_import_only_what_the_layout_allows() -> None:
    bad = []
    for name, path in modules():
        top = name.split(".")[0]
        for target, _ in all_imports(path):
            target_top = target.split(".")[0]
            if top == "gateway" and target_top in ("router", "workers", "loadtests", "run"):
                bad.append(f"{name} imports {target}")
            if top == "workers" and target_top in ("gateway", "router", "loadtests", "run"):
                bad.append(f"{name} imports {target}")
    assert bad == []


def test_sub_packages_are_entered_through_their_public_names() -> None:
    bad = []
    for name, path in modules():
        for target, _ in all_imports(path):
            inside = sub_package(target)
            if inside and target != f"gateway.{inside}" and sub_package(name) != inside:
                bad.append(f"{name} imports {target}")
    assert bad == [], "import these from the sub-package itself:\n" + "\n".join(bad)


def test_no_private_names_cross_modules() -> None:
    bad = []
    for name, path in modules():
        for target, names in all_imports(path):
            if target.split(".")[0] in (*PACKAGES, "run", "tests"):
                bad += [f"{name}: {n} from {target}" for n in names if n.startswith("_")]
    assert bad == []


def test_no_import_cycles() -> None:
    known = dict(modules())
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        edges = graph.setdefault(name, set())
        for target, names in module_imports(path):
            for candidate in (*(f"{target}.{n}" for n in names), target):
                if candidate in known and candidate != name:
                    edges.add(candidate)
                    break
    cycles = [scc for scc in _components(graph) if len(scc) > 1]
    assert cycles == []


def _components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                result.append(sorted(component))
    return result
