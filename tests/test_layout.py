"""The package's layout holds: one subpackage per stage, imports only go down, no cycles.

The stages, from the bottom: ``_transform`` (pure) ← ``_queue`` ← ``_delivery`` ← ``_console`` ←
``_ingest`` ← ``_cli``; ``_sandbox`` stands beside them and uses only the transform. The graph is
read from the
code's own imports (``ast``, every ``import`` statement, also those inside functions and under
``TYPE_CHECKING``), so a new module or import that breaks the layout fails here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "attentive_router"

ALLOWED: Mapping[str, frozenset[str]] = {
    "_transform": frozenset(),
    "_queue": frozenset({"_transform"}),
    "_delivery": frozenset({"_queue", "_transform"}),
    "_console": frozenset({"_delivery", "_queue", "_transform"}),
    "_ingest": frozenset({"_console", "_delivery", "_queue", "_transform"}),
    "_sandbox": frozenset({"_transform"}),
    "_cli": frozenset({"_ingest", "_console", "_delivery", "_queue", "_sandbox", "_transform"}),
    # The package itself re-exports the public API, which is the transform's.
    "": frozenset({"_transform"}),
    "__main__": frozenset({"_cli"}),
}
"""For each stage, the stages its modules may import (besides their own)."""

Graph = dict[str, set[str]]


def module_name(path: Path, base: Path) -> str:
    """Dotted name of the module in ``path``, relative to the folder ``base`` that holds it."""
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(tree: ast.Module, name: str, is_package: bool, known: Iterable[str]) -> set[str]:
    """Modules of ``known`` that the module ``name`` imports, wherever the statement stands."""
    modules = set(known)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from package import module`` imports the module; ``from module import name``
            # imports the module that holds the name.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        found.update(target for target in targets if target in modules and target != name)
    return found


def build_graph(bases: Mapping[Path, Iterable[Path]]) -> Graph:
    """Import graph of the project's own modules: each base folder with the files under it."""
    files = {
        module_name(path, base): path for base, paths in bases.items() for path in sorted(paths)
    }
    return {
        name: imported(
            ast.parse(path.read_text(encoding="utf-8"), str(path)),
            name,
            path.name == "__init__.py",
            files,
        )
        for name, path in files.items()
    }


def stage_of(module: str, package: str = PACKAGE) -> str | None:
    """The stage a module of ``package`` belongs to ("" for the package itself), else None."""
    if module == package:
        return ""
    if not module.startswith(f"{package}."):
        return None
    return module.split(".")[1]


def layer_violations(graph: Graph, package: str = PACKAGE) -> list[str]:
    """Every import of ``package`` that goes up or sideways, and every module outside a stage."""
    problems = []
    for module, targets in sorted(graph.items()):
        stage = stage_of(module, package)
        if stage is None:
            continue
        if stage not in ALLOWED:
            problems.append(f"{module} is in no stage; put it in one of {sorted(ALLOWED)}")
            continue
        for target in sorted(targets):
            other = stage_of(target, package)
            if other is None or other == stage or other in ALLOWED[stage]:
                continue
            where = f"stage {other!r}" if other else "the package's public API"
            problems.append(f"{module} imports {target} ({where}), which {stage!r} may not use")
    return problems


def cycles(graph: Graph) -> list[list[str]]:
    """The import cycles of ``graph``: its strongly connected parts with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            part = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                part.append(member)
                if member == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def project_graph() -> Graph:
    """The source package, the benchmark and the code generator, as one graph."""
    src = ROOT / "src"
    return build_graph(
        {
            src: (src / PACKAGE).rglob("*.py"),
            ROOT: [*(ROOT / "bench").rglob("*.py"), *(ROOT / "codegen").rglob("*.py")],
        }
    )


def test_the_graph_holds_the_stages_and_their_imports() -> None:
    # Guards the checks below against passing on an empty or unresolved graph.
    graph = project_graph()
    assert {stage_of(module) for module in graph} >= set(ALLOWED) | {None}
    assert "attentive_router._transform.router" in graph["attentive_router._delivery.sender"]
    assert (
        "attentive_router._transform.generated.transforms"
        in graph["attentive_router._transform.router"]
    )
    assert (
        "attentive_router._transform.expressions"
        in graph["attentive_router._transform.generated.transforms"]
    )
    assert "bench.transform" in graph["bench.instructions"]


def test_imports_only_go_down_the_stages() -> None:
    assert layer_violations(project_graph()) == []


def test_there_are_no_import_cycles() -> None:
    assert cycles(project_graph()) == []


def test_no_stage_imports_the_package_itself() -> None:
    """Stages import each other's modules, never the package (whose ``__init__`` imports them)."""
    graph = project_graph()
    importers = sorted(
        module for module, targets in graph.items() if stage_of(module) and PACKAGE in targets
    )
    assert importers == []


def _tree(tmp_path: Path, files: Mapping[str, str]) -> Graph:
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return build_graph({tmp_path: tmp_path.rglob("*.py")})


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("from pkg._cli.main import run", "pkg._transform.a imports pkg._cli.main"),
        ("from pkg._cli import main", "pkg._transform.a imports pkg._cli.main"),
        ("import pkg._sandbox.server", "pkg._transform.a imports pkg._sandbox.server"),
        ("from .._queue.store import Queue", "pkg._transform.a imports pkg._queue.store"),
    ],
)
def test_an_upward_import_is_found_wherever_it_stands(
    tmp_path: Path, statement: str, expected: str
) -> None:
    graph = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/_transform/__init__.py": "",
            "pkg/_transform/a.py": f"def late():\n    {statement}\n",
            "pkg/_cli/__init__.py": "",
            "pkg/_cli/main.py": "from pkg._transform import a\n",
            "pkg/_sandbox/__init__.py": "",
            "pkg/_sandbox/server.py": "",
            "pkg/_queue/__init__.py": "",
            "pkg/_queue/store.py": "",
        },
    )
    problems = layer_violations(graph, "pkg")
    assert len(problems) == 1
    assert problems[0].startswith(expected)
    assert layer_violations({**graph, "pkg._transform.a": set()}, "pkg") == []


def test_a_module_outside_the_stages_and_a_sideways_import_are_found(tmp_path: Path) -> None:
    graph = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/_helpers.py": "",
            "pkg/_sandbox/__init__.py": "",
            "pkg/_sandbox/server.py": "from pkg._delivery.sender import send\n",
            "pkg/_delivery/__init__.py": "",
            "pkg/_delivery/sender.py": "",
        },
    )
    assert layer_violations(graph, "pkg") == [
        (
            "pkg._helpers is in no stage; put it in one of "
            "['', '__main__', '_cli', '_console', '_delivery', '_ingest', '_queue', '_sandbox', "
            "'_transform']"
        ),
        (
            "pkg._sandbox.server imports pkg._delivery.sender (stage '_delivery'), "
            "which '_sandbox' may not use"
        ),
    ]


def test_a_cycle_is_found_through_a_late_import(tmp_path: Path) -> None:
    graph = _tree(
        tmp_path,
        {
            "tool/__init__.py": "",
            "tool/__main__.py": "from tool import report\n",
            "tool/report.py": "def run():\n    from tool import __main__\n",
            "tool/corpus.py": "",
        },
    )
    assert cycles(graph) == [["tool.__main__", "tool.report"]]
    assert cycles({**graph, "tool.report": set()}) == []
