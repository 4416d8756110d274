"""The emulator stands in for the real API: it shares nothing with the client but the
published limits (``bulkpush.limits``) and the async-resource base."""

from __future__ import annotations

import ast
from pathlib import Path

import bulkpush.emulator

ALLOWED = {"bulkpush.limits", "bulkpush._resource", "bulkpush._click_types"}


def test_the_emulator_imports_nothing_of_the_client() -> None:
    root = Path(bulkpush.emulator.__file__).parent
    seen: dict[str, set[str]] = {}
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("bulkpush") and not name.startswith("bulkpush.emulator"):
                    seen.setdefault(name, set()).add(path.name)
    assert seen, "no bulkpush import found: the walk is broken"
    assert set(seen) <= ALLOWED, seen
