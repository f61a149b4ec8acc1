"""The module structure of docs/architecture.md: dependencies point one way (reports -> cohort),
and no module imports, even lazily inside a function, a module that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cohort", "reports")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            found[".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")] = path
    return found


def imports_in(source: str, module: str, known) -> set[str]:
    """The modules of `known` that `source` (the code of `module`) imports anywhere: at the top,
    in a function, under TYPE_CHECKING. `from cohort import crf` names cohort.crf."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module and target not in PACKAGES:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    known = modules()
    return {name: imports_in(path.read_text(encoding="utf-8"), name, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that reach each other (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_reader_sees_every_kind_of_import():
    """A lazy import inside a function is a dependency as much as one at the top."""
    source = (
        "from cohort import crf, models as m\n"
        "import reports.outcomes\n"
        "def f():\n"
        "    from reports.loaders import load_patients\n"
        "    from django.db import models\n"
    )
    known = {"cohort.crf", "cohort.models", "reports.outcomes", "reports.loaders", "cohort.views"}
    assert imports_in(source, "cohort.views", known) == {
        "cohort.crf",
        "cohort.models",
        "reports.outcomes",
        "reports.loaders",
    }


def test_the_graph_covers_both_apps():
    graph = import_graph()
    assert {"cohort.crf", "cohort.views", "reports.outcomes", "reports.pdf"} <= graph.keys()
    assert "cohort.crf" in graph["cohort.views"]


def test_cohort_never_imports_reports():
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        if module.startswith("cohort")
        for target in targets
        if target.startswith("reports")
    )
    assert wrong == [], "cohort tells reports about changes through cohort.signals, never by importing it"


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
