"""A job this worker cannot read fails alone, with its reason; the others run (both backends)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bulkpush.emulator import EmulatorConfig

from ..conftest import TEST_TOKEN
from .conftest import allowances, edit_stored_spec, write_catalog
from .test_runner import job, run_worker

pytestmark = pytest.mark.timeout(90)

FAST = EmulatorConfig(tokens=frozenset({TEST_TOKEN}), products_rate=None, other_rate=None)


def store_raw_spec(queue_url: str, job_id: str, raw: str) -> None:
    """Overwrite a queued job's stored spec with ``raw`` text (not necessarily JSON)."""
    if queue_url.startswith("sqlite:///"):
        path = queue_url[len("sqlite:///") :]
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as db, db:
            db.execute("UPDATE jobs SET spec = ? WHERE id = ?", (raw, job_id))
        return
    import redis

    client = redis.Redis.from_url(queue_url)
    try:
        client.hset(f"bulkpush:job:{job_id}", "spec", raw)
    finally:
        client.close()


async def test_a_job_with_an_option_from_a_newer_version_fails_alone(
    queue_factory: Any, queue_url: str, emulator_factory: Any, tmp_path: Path
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("newer-option")
    q = queue_factory()
    newer = await q.submit(job(emu.url, write_catalog(tmp_path / "a.ndjson", 10), stream=sid))
    edit_stored_spec(queue_url, newer, lambda doc: doc["options"].update(dedupe_window=60))
    good = await q.submit(job(emu.url, write_catalog(tmp_path / "b.ndjson", 100), stream=sid))
    assert {v.id for v in await q.list_jobs()} == {newer, good}  # listing does not fail on it
    view = await run_worker(q, good, allow=allowances(emu.url, tmp_path))
    assert view.status == "done"
    bad = await q.get(newer)
    assert bad.status == "failed"
    assert "unknown option key 'dedupe_window'" in (bad.error or "")
    assert bad.spec.sources == (str(tmp_path / "a.ndjson"),)  # shown as stored
    assert len(emu.products(sid)) == 100


async def test_a_spec_that_is_not_json_fails_alone(
    queue_factory: Any, queue_url: str, emulator_factory: Any, tmp_path: Path
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("not-json")
    q = queue_factory()
    broken = await q.submit(job(emu.url, write_catalog(tmp_path / "a.ndjson", 10), stream=sid))
    store_raw_spec(queue_url, broken, "{not json")
    good = await q.submit(job(emu.url, write_catalog(tmp_path / "b.ndjson", 100), stream=sid))
    view = await run_worker(
        q, good, allow=allowances(emu.url, tmp_path)
    )  # the worker survives it and runs the next job
    assert view.status == "done"
    bad = await q.get(broken)
    assert bad.status == "failed" and "the job spec is not JSON" in (bad.error or "")
    listed = {v.id: v.status for v in await q.list_jobs()}
    assert listed == {broken: "failed", good: "done"}


async def test_a_cancelled_unreadable_job_blocks_nothing(
    queue_factory: Any, queue_url: str, emulator_factory: Any, tmp_path: Path
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("cancelled-unreadable")
    q = queue_factory()
    newer = await q.submit(job(emu.url, write_catalog(tmp_path / "a.ndjson", 10), stream=sid))
    edit_stored_spec(queue_url, newer, lambda doc: doc["target"].update(region="eu"))
    assert await q.cancel(newer)
    good = await q.submit(job(emu.url, write_catalog(tmp_path / "b.ndjson", 100), stream=sid))
    view = await run_worker(q, good, allow=allowances(emu.url, tmp_path))
    assert view.status == "done"
    cancelled = await q.get(newer)
    assert cancelled.status == "cancelled" and "unknown target key 'region'" in cancelled.error
    assert len(emu.products(sid)) == 100
