"""Credentials in URLs are masked wherever the worker shows them.

In its log, ``jobs show``/``list``, job errors, the control API and ``/healthz``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from bulkpush.errors import ConfigError
from bulkpush.worker._urls import redact_url, redact_urls
from bulkpush.worker.queue import open_queue

from .conftest import free_port, write_catalog
from .test_outages import RestartableRedis

pytestmark = pytest.mark.timeout(90)

REDIS_PW = "redis-pw-5ecret"
API_PW = "api-pw-5ecret"


def test_redact_url() -> None:
    assert redact_url(f"redis://:{REDIS_PW}@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url(f"redis://app:{REDIS_PW}@host/0") == "redis://app:***@host/0"
    assert redact_url("redis://app@host/0") == "redis://app@host/0"  # a name is no secret
    assert redact_url(f"https://h/x?password={API_PW}&db=1") == "https://h/x?password=***&db=1"
    assert redact_url("sqlite:////var/lib/jobs.db") == "sqlite:////var/lib/jobs.db"
    text = f"cannot reach rediss://u:{REDIS_PW}@h:1/0 (refused)"
    assert redact_urls(text) == "cannot reach rediss://u:***@h:1/0 (refused)"


def test_an_unknown_queue_url_is_refused_without_its_password() -> None:
    with pytest.raises(ConfigError) as err:
        open_queue(f"memcache://:{REDIS_PW}@host:11211")
    assert REDIS_PW not in str(err.value) and "memcache://:***@host:11211" in str(err.value)


@pytest.fixture
async def redis_with_password(tmp_path: Path) -> AsyncIterator[RestartableRedis]:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RestartableRedis(workdir, "--requirepass", REDIS_PW)
    await server.start()
    try:
        yield server
    finally:
        server.kill()


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """``bulkpush ARGS``: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulkpush",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_the_worker_never_shows_a_password(
    redis_with_password: RestartableRedis, tmp_path: Path
) -> None:
    queue_url = f"redis://:{REDIS_PW}@127.0.0.1:{redis_with_password.port}/0"
    env = {**os.environ, "BULKPUSH_WORKER_TOKEN": "ctl-token", "BULKPUSH_TOKEN": "t"}
    cat = write_catalog(tmp_path / "c.ndjson", 10)
    # An API that refuses connections: the job fails, with an error to show.
    api = f"http://user:{API_PW}@127.0.0.1:{free_port()}"
    code, out, submitted = await run_cli(
        "jobs", "submit", str(cat), "--stream", "1", "--api-url", api, "--queue", queue_url,
        "--max-attempts", "1", env=env,
    )  # fmt: skip
    assert code == 0, submitted
    job_id = out.strip()
    # Warned: a worker without allowances refuses the URL (shown masked).
    assert "refuses this job: the API URL http://user:***@127.0.0.1:" in submitted
    port = free_port()
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:  # noqa: ASYNC230 - a local file, opened once
        worker = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
            [sys.executable, "-m", "bulkpush", "worker", "-v", "--queue", queue_url,
             "--http", f"127.0.0.1:{port}", "--poll", "0.1",
             "--allow-api-url", api, "--allow-dir", str(tmp_path)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        doc: dict[str, object] = {}
        for _ in range(300):
            code, out, _ = await run_cli(
                "jobs", "show", job_id, "--json", "--queue", queue_url, env=env
            )
            doc = orjson.loads(out) if code == 0 else {}
            if doc.get("status") == "failed":
                break
            await asyncio.sleep(0.1)
        assert doc.get("status") == "failed", doc
        code, text, _ = await run_cli("jobs", "show", job_id, "--queue", queue_url, env=env)
        _, listed, _ = await run_cli("jobs", "list", "--queue", queue_url, env=env)
        async with aiohttp.ClientSession() as http:
            auth = {"Authorization": "Bearer ctl-token"}
            async with http.get(f"http://127.0.0.1:{port}/healthz", headers=auth) as r:
                health = await r.json()
            async with http.get(f"http://127.0.0.1:{port}/jobs/{job_id}", headers=auth) as r:
                api_doc = await r.text()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)
    log_text = log_path.read_text()
    assert f"redis://:***@127.0.0.1:{redis_with_password.port}/0" in log_text  # -v names it
    assert health["queue"] == f"redis://:***@127.0.0.1:{redis_with_password.port}/0"
    assert doc["target"]["api_url"].startswith("http://user:***@127.0.0.1:")  # type: ignore[index]
    assert "jobs may push to" in log_text and "http://user:***@127.0.0.1:" in log_text
    shown = [
        submitted,
        orjson.dumps(doc).decode(),
        text,
        listed,
        api_doc,
        log_text,
        orjson.dumps(health).decode(),
    ]
    for where in shown:
        assert REDIS_PW not in where and API_PW not in where, where
