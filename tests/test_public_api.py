"""The public surface is curated: ``bulkpush.__all__`` is exactly the README's list.

Adding a name is a decision: it goes into the README's "Public API" section
(between the ``public-api`` markers) and into ``bulkpush/__init__.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import bulkpush

README = Path(__file__).resolve().parents[1] / "README.md"


def documented_names() -> set[str]:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- public-api -->(.*?)<!-- /public-api -->", text, re.S)
    assert match, "README.md has no public-api section"
    return set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", match.group(1)))


def test_all_is_the_readme_list() -> None:
    assert set(bulkpush.__all__) == documented_names()
    assert len(bulkpush.__all__) == len(set(bulkpush.__all__))


def test_every_name_in_all_exists() -> None:
    for name in bulkpush.__all__:
        assert hasattr(bulkpush, name), name


def test_every_public_error_derives_from_the_root() -> None:
    for name in bulkpush.__all__:
        obj = getattr(bulkpush, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, bulkpush.BulkpushError), name
