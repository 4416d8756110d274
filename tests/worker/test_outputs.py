"""A job's report and rejects paths are checked before anything is sent; files are 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from bulkpush.emulator import EmulatorConfig
from bulkpush.report import write_json_atomic
from bulkpush.worker.queue import open_queue

from ..conftest import TEST_TOKEN
from .conftest import allowances, write_catalog
from .test_runner import job, run_worker

pytestmark = pytest.mark.timeout(60)

FAST = EmulatorConfig(tokens=frozenset({TEST_TOKEN}), products_rate=None, other_rate=None)


@pytest.mark.parametrize("which", ["rejects", "report"])
async def test_an_unwritable_output_fails_the_job_before_sending(
    queue_factory: Any, emulator_factory: Any, tmp_path: Path, which: str
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream(f"unwritable-{which}")
    q = queue_factory()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the directory should be")
    target = blocker / "out.ndjson"  # its "directory" is a file: nothing can be created there
    job_id = await q.submit(
        job(emu.url, write_catalog(tmp_path / "c.ndjson", 300), stream=sid, **{which: str(target)})
    )
    view = await run_worker(q, job_id, allow=allowances(emu.url, tmp_path))
    assert view.status == "failed"
    assert f"cannot write the {which} file {target}" in (view.error or "")
    assert len(emu.products(sid)) == 0  # nothing was sent


async def test_an_output_in_a_missing_directory_fails_the_job_before_sending(
    queue_factory: Any, emulator_factory: Any, tmp_path: Path
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("missing-dir")
    q = queue_factory()
    target = tmp_path / "gone" / "report.json"
    job_id = await q.submit(
        job(emu.url, write_catalog(tmp_path / "c.ndjson", 300), stream=sid, report=str(target))
    )
    view = await run_worker(q, job_id, allow=allowances(emu.url, tmp_path))
    assert view.status == "failed" and "No such file or directory" in (view.error or "")
    assert len(emu.products(sid)) == 0


async def test_files_the_worker_creates_are_private(
    queue_factory: Any, emulator_factory: Any, tmp_path: Path
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("private-files")
    q = queue_factory()
    rejects, report = tmp_path / "rejects.ndjson", tmp_path / "report.json"
    cat = write_catalog(tmp_path / "c.ndjson", 300, bad_every=100)
    job_id = await q.submit(
        job(emu.url, cat, stream=sid, parts=2, rejects=str(rejects), report=str(report))
    )
    old = os.umask(0o022)
    try:
        view = await run_worker(q, job_id, allow=allowances(emu.url, tmp_path))
    finally:
        os.umask(old)
    assert view.status == "done", view.error
    for path in (rejects, report):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # No temp file left behind, no probe file either (the SQLite queue lives here too).
    names = {p.name for p in tmp_path.iterdir()} - {"jobs.db", "jobs.db-wal", "jobs.db-shm"}  # noqa: ASYNC240
    assert names == {"c.ndjson", "rejects.ndjson", "report.json"}


async def test_the_sqlite_queue_file_is_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        q = open_queue(f"sqlite:///{tmp_path / 'q' / 'jobs.db'}")
        await q.depth()
        await q.aclose()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "q" / "jobs.db").stat().st_mode) == 0o600


def test_write_json_atomic_uses_an_exclusive_unpredictable_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    # A file planted where the old predictable temp name was is neither used nor touched.
    planted = tmp_path / f".r.json.{os.getpid()}.tmp"
    planted.write_text("planted")
    write_json_atomic(target, {"a": 1})
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert planted.read_text() == "planted"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [planted.name, "r.json"]
