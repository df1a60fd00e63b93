"""The architecture holds: the import-linter contracts of pyproject.toml, no import cycle in
evsys, no module over 400 lines, a tracking client on the standard library alone.

Imports are read by grimp (what import-linter reads): type-only ones count, and so do the ones
inside functions, so a lazy import does not hide a cycle.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 400
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("evsys", include_external_packages=True, cache_dir=None)


def test_the_import_contracts_hold() -> None:
    # This checkout's evsys, whichever one the environment has installed.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"lint-imports failed:\n{done.stdout}\n{done.stderr}"
    assert "BROKEN" not in done.stdout and "KEPT" in done.stdout


def import_cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for start in sorted(imports):
        if start in index:
            continue
        work = [(start, iter(sorted(imports[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(imports.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
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
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_the_cycle_finder_finds_a_cycle_and_only_one() -> None:
    imports = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles(imports) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_evsys(graph: grimp.ImportGraph) -> None:
    modules = {m for m in graph.modules if m == "evsys" or m.startswith("evsys.")}
    imports = {m: graph.find_modules_directly_imported_by(m) & modules for m in modules}
    cycles = import_cycles(imports)
    details = []
    for cycle in cycles:
        members = set(cycle)
        details += [f"{a} -> {b}" for a in cycle for b in sorted(imports[a] & members)]
    assert not cycles, "import cycles:\n  " + "\n  ".join(details)


def test_the_tracking_client_imports_the_standard_library_alone(graph: grimp.ImportGraph) -> None:
    # evsys.errors (the exception tree its errors join) and what it imports are standard library
    # only themselves: checked here too.
    allowed_evsys = ("evsys.tracking", "evsys.errors", "evsys.redaction")
    sources = {"evsys.tracking", *graph.find_descendants("evsys.tracking"), *allowed_evsys[1:]}
    outside = {
        f"{source} -> {imported}"
        for source in sources
        for imported in graph.find_modules_directly_imported_by(source)
        if imported.split(".")[0] not in sys.stdlib_module_names
        and not imported.startswith(allowed_evsys)
    }
    assert not outside, sorted(outside)


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for folder in ("evsys", "hydra_plugins")
        for path in (ROOT / folder).rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_module_of_evsys_has_a_layer() -> None:
    # A package or module the layers contract does not name is bound by none of its rules.
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = settings["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["id"] == "layers")["layers"]
    named = {name.strip() for layer in layers for name in re.split(r"[:|]", layer)}
    present = {
        path.stem if path.is_file() else path.name
        for path in (ROOT / "evsys").iterdir()
        if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").is_file()
    }
    assert not present - named, f"not in any layer of pyproject.toml: {sorted(present - named)}"
