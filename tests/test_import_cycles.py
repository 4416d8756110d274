"""No import cycles inside the package: the module graph is read from the source with ``ast``.

Every ``import`` counts, those inside functions too: a lazy import only hides
a cycle until the day someone moves it to the top. ``from pkg import name``
counts as an import of ``pkg.name`` when that is a module, else of ``pkg``.
Importing a submodule runs its package's ``__init__`` too, but that edge is
left out: every ``__init__`` that re-exports would otherwise close a cycle.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

import bulkpush

PACKAGE = Path(bulkpush.__file__).parent


def _modules(root: Path) -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in mods)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                if f"{base}.{alias.name}" in mods:
                    found.add(f"{base}.{alias.name}")
                elif base in mods:
                    found.add(base)
    found.discard(name)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module name -> the package's modules it imports (anywhere in its source)."""
    mods = _modules(root)
    return {name: _imports(name, path, mods) for name, path in mods.items()}


def test_the_graph_is_read_from_real_imports() -> None:
    graph = import_graph(PACKAGE)
    # Top-level and function-level imports are both edges.
    assert "bulkpush.worker.jobs" in graph["bulkpush.worker.sqlite_queue"]
    assert "bulkpush.worker.redis_queue" in graph["bulkpush.worker.queue"]  # a lazy import


def test_a_cycle_is_found(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import B\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(import_graph(pkg)).prepare()


def test_no_module_imports_itself_through_others() -> None:
    try:
        graphlib.TopologicalSorter(import_graph(PACKAGE)).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")
