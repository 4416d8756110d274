"""A Redis restart mid-job is an outage the worker waits out, not a job failure.

Each test runs its own redis-server with an append-only file (the queue
survives ``SHUTDOWN`` and a restart, as a production Redis with persistence
does), and restarts it while a worker in this process pushes a job to the
emulator through the Redis queue and the Redis-held shared limiter.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bulkpush.emulator import EmulatorConfig
from bulkpush.errors import QueueError
from bulkpush.worker.jobs import JobView
from bulkpush.worker.queue import JobQueue, open_queue
from bulkpush.worker.runner import Worker

from ..conftest import TEST_TOKEN
from .conftest import allowances, free_port, write_catalog
from .test_runner import job

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


class RestartableRedis:
    """A redis-server with an append-only file that a test may shut down and start again."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(exe).exists():
            pytest.skip("redis-server is not installed (scripts/test installs it)")
        self.exe = exe
        self.workdir = workdir
        self.extra = extra
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def _args(self) -> list[str]:
        return [
            self.exe,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--dir", str(self.workdir),
            *self.extra,
        ]  # fmt: skip

    def _up(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
            return True
        return False

    async def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
            self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not await asyncio.to_thread(self._up):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            await asyncio.sleep(0.02)

    def _send_shutdown(self) -> None:
        # A bare socket: a client library would retry the closed connection.
        with socket.create_connection(("127.0.0.1", self.port), 5) as sock:
            sock.sendall(b"*1\r\n$8\r\nSHUTDOWN\r\n")
            with contextlib.suppress(OSError):
                while sock.recv(1024):
                    pass

    async def shutdown(self) -> None:
        """``SHUTDOWN`` (the append-only file is flushed), as ``redis-cli shutdown`` does."""
        await asyncio.to_thread(self._send_shutdown)
        assert self.proc is not None
        deadline = time.monotonic() + 10
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, "redis-server did not stop"
            await asyncio.sleep(0.02)

    async def restart(self, down_s: float) -> None:
        await self.shutdown()
        await asyncio.sleep(down_s)
        await self.start()
        self.restarts += 1

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
async def restartable_redis(tmp_path: Path) -> AsyncIterator[RestartableRedis]:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RestartableRedis(workdir)
    await server.start()
    try:
        yield server
    finally:
        server.kill()


async def wait_finished(
    q: JobQueue, job_id: str, task: asyncio.Task[None], limit: float
) -> JobView:
    """The job once it is done, failed or cancelled; the test's own reads wait out the outage."""
    deadline = time.monotonic() + limit
    view = None
    while time.monotonic() < deadline:
        if task.done():
            task.result()  # the worker died: show why
        with contextlib.suppress(QueueError):
            view = await q.get(job_id)
        if view is not None and view.status in ("done", "failed", "cancelled"):
            return view
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {view and view.to_json()}")


FAST = EmulatorConfig(tokens=frozenset({TEST_TOKEN}), products_rate=None, other_rate=None)


async def push_through_a_restart(
    redis_server: RestartableRedis,
    emulator_factory: Any,
    tmp_path: Path,
    *,
    down_s: float,
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream(f"outage-{down_s:g}")
    n = 6000
    cat = write_catalog(tmp_path / "c.ndjson", n, bad_every=500)
    # A lease that outlasts the test: the job must go on by itself after the
    # restart, not by a lease running out and the part being reclaimed.
    q: JobQueue = open_queue(redis_server.url, lease_ttl=120)
    worker = Worker(
        q, poll_s=0.05, environ={"BP_TEST_TOKEN": TEST_TOKEN}, allow=allowances(emu.url, tmp_path)
    )
    task: asyncio.Task[None] | None = None
    try:
        # 120 requests at 20/s: about 6 s of pushing, the restart lands mid-job.
        job_id = await q.submit(job(emu.url, cat, stream=sid, parts=2, max_products=50, rate=20.0))
        task = asyncio.create_task(worker.run())

        def mid_job() -> bool:
            return len(emu.products(sid)) >= 1000

        deadline = time.monotonic() + 30
        while not mid_job():
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.02)
        await redis_server.restart(down_s)
        view = await wait_finished(q, job_id, task, limit=20)
        assert view.status == "done", view.error
        report = view.report()
        assert report["read"] == n
        assert report["read"] == report["accepted"] + report["rejected"] + report["not_sent"]
        assert report["balanced"] and report["rejected"] == n // 500
        assert len(emu.products(sid)) == n - n // 500  # every valid product landed
    finally:
        worker.stop()
        if task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(task, 15)
        await q.aclose()


async def test_a_short_redis_restart_does_not_fail_the_job(
    restartable_redis: RestartableRedis, emulator_factory: Any, tmp_path: Path
) -> None:
    await push_through_a_restart(restartable_redis, emulator_factory, tmp_path, down_s=0.0)


async def test_a_ten_second_redis_outage_does_not_fail_the_job(
    restartable_redis: RestartableRedis, emulator_factory: Any, tmp_path: Path
) -> None:
    await push_through_a_restart(restartable_redis, emulator_factory, tmp_path, down_s=10.0)
