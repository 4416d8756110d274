"""Fixtures of the worker tests: a private redis-server, both queue backends, catalogs."""

from __future__ import annotations

import contextlib
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkpush.worker.allow import Allowances, TokenGrant
from bulkpush.worker.queue import JobQueue, open_queue


def allowances(
    api_url: str, *dirs: Path, tokens: tuple[str, ...] = ("BP_TEST_TOKEN",)
) -> Allowances:
    """What the tests' jobs use, allowed explicitly: an emulator, token variables, directories."""
    return Allowances(
        api_urls=(api_url,),
        token_envs=tuple(TokenGrant(t) for t in tokens),
        dirs=tuple(str(d) for d in dirs),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of our own on a free port (never 6379); yields its URL."""
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(exe).exists():
        pytest.skip("redis-server is not installed (scripts/test installs it)")
    workdir = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def edit_stored_spec(queue_url: str, job_id: str, edit: Callable[[dict[str, Any]], None]) -> None:
    """Change a queued job's spec where the backend keeps it, as an older version may have left it.

    ``edit`` changes the spec's JSON document in place.
    """
    if queue_url.startswith("sqlite:///"):
        path = queue_url[len("sqlite:///") :]
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as db, db:
            (raw,) = db.execute("SELECT spec FROM jobs WHERE id = ?", (job_id,)).fetchone()
            doc = orjson.loads(raw)
            edit(doc)
            db.execute("UPDATE jobs SET spec = ? WHERE id = ?", (orjson.dumps(doc), job_id))
        return
    import redis

    client = redis.Redis.from_url(queue_url)
    try:
        key = f"bulkpush:job:{job_id}"
        doc = orjson.loads(client.hget(key, "spec"))
        edit(doc)
        client.hset(key, "spec", orjson.dumps(doc).decode())
    finally:
        client.close()


@pytest.fixture(params=["sqlite", "redis"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty queue URL of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    url: str = request.getfixturevalue("redis_server")
    _flush(url)
    return url


@pytest.fixture
async def queue_factory(queue_url: str) -> AsyncIterator[object]:
    """``make(lease_ttl=...)`` opens the test's queue; every queue opened is closed."""
    opened: list[JobQueue] = []

    def make(lease_ttl: float = 30.0) -> JobQueue:
        q = open_queue(queue_url, lease_ttl=lease_ttl)
        opened.append(q)
        return q

    yield make
    for q in opened:
        await q.aclose()


def write_catalog(path: Path, n: int, *, start: int = 0, bad_every: int = 0) -> Path:
    """An NDJSON catalog of ``n`` small products with ids start..start+n-1.

    ``bad_every`` > 0 makes every such product invalid (no id) for client rejections.
    """
    with open(path, "wb") as fh:
        buf = []
        for i in range(start, start + n):
            if bad_every and i % bad_every == 0:
                buf.append(b'{"title":"no id %d"}\n' % i)
            else:
                buf.append(b'{"id":"%d","t":"p"}\n' % i)
            if len(buf) >= 10000:
                fh.write(b"".join(buf))
                buf.clear()
        fh.write(b"".join(buf))
    return path
