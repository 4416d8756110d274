"""A job whose token is not set on one worker waits for a worker that has it (both backends)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, cast

import pytest

from bulkpush.emulator import EmulatorConfig
from bulkpush.worker.queue import JobQueue, Lease
from bulkpush.worker.runner import Worker

from ..conftest import TEST_TOKEN
from .conftest import allowances, write_catalog
from .test_runner import job, wait_status

pytestmark = pytest.mark.timeout(60)

FAST = EmulatorConfig(tokens=frozenset({TEST_TOKEN}), products_rate=None, other_rate=None)


class CountsDefers:
    """The queue, counting the parts given back untried."""

    def __init__(self, inner: JobQueue) -> None:
        self._inner = inner
        self.defers = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def defer(self, lease: Lease, *, now: float) -> None:
        self.defers += 1
        await self._inner.defer(lease, now=now)


async def test_a_worker_without_the_token_leaves_the_job_to_one_that_has_it(
    queue_factory: Any, emulator_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("token-elsewhere")
    q = CountsDefers(queue_factory())
    job_id = await q.submit(job(emu.url, write_catalog(tmp_path / "c.ndjson", 500), stream=sid))
    caplog.set_level(logging.WARNING, "bulkpush.worker")
    queue = cast(JobQueue, q)
    allow = allowances(emu.url, tmp_path)
    without = Worker(
        queue, worker_id="without", poll_s=0.01, environ={}, token_wait_s=30, allow=allow
    )
    with_token = Worker(
        queue, worker_id="with", poll_s=0.01, environ={"BP_TEST_TOKEN": TEST_TOKEN}, allow=allow
    )
    tasks = [asyncio.create_task(without.run())]
    try:
        await asyncio.sleep(1.5)  # it polls 150 times meanwhile: it must not spin on the job
        view = await q.get(job_id)
        assert view.status == "queued" and view.parts[0].attempts == 0
        assert 1 <= q.defers <= 2  # backoff: once, then once more after a second
        warnings = [r for r in caplog.records if "BP_TEST_TOKEN" in r.getMessage()]
        assert len(warnings) == 1 and "left for a worker that has it" in warnings[0].getMessage()
        tasks.append(asyncio.create_task(with_token.run()))
        view = await wait_status(q, job_id, {"done", "failed"}, tasks[1])
    finally:
        without.stop()
        with_token.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert view.status == "done", view.error
    assert [p.worker for p in view.parts] == ["with"] and view.parts[0].attempts == 1
    assert len(emu.products(sid)) == 500


async def test_a_job_no_worker_has_the_token_for_fails_after_the_wait(
    queue_factory: Any, emulator_factory: Any, tmp_path: Path
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("token-nowhere")
    q = queue_factory()
    orphan = await q.submit(
        job(emu.url, write_catalog(tmp_path / "a.ndjson", 10), stream=sid, token_env="NOWHERE_X")
    )
    good = await q.submit(job(emu.url, write_catalog(tmp_path / "b.ndjson", 100), stream=sid))
    worker = Worker(
        q,
        poll_s=0.02,
        environ={"BP_TEST_TOKEN": TEST_TOKEN},
        token_wait_s=1.0,
        allow=allowances(emu.url, tmp_path, tokens=("BP_TEST_TOKEN", "NOWHERE_X")),
    )
    started = time.monotonic()
    task = asyncio.create_task(worker.run())
    try:
        assert (await wait_status(q, good, {"done", "failed"}, task)).status == "done"
        assert (await q.get(orphan)).status == "queued"  # not failed at once
        view = await wait_status(q, orphan, {"failed"}, task, limit=20)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
    assert time.monotonic() - started >= 1.0
    assert "environment variable NOWHERE_X is not set on the workers" in (view.error or "")
    assert "--token-wait 1" in (view.error or "")
    assert len(emu.products(sid)) == 100
