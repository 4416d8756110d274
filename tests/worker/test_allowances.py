"""A job may use only what the worker's operator allowed: API URLs, token variables, directories.

Against real loopback servers: the emulator (allowed) and a recording server
that answers every request 500 and keeps what it was sent, so "nothing
reached it" is checked, not assumed. Both queue backends.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bulkpush.emulator import EmulatorConfig
from bulkpush.errors import ConfigError
from bulkpush.worker.allow import Allowances, TokenGrant
from bulkpush.worker.control import start_control
from bulkpush.worker.jobs import JobOptions, JobSpec, Target
from bulkpush.worker.queue import open_queue
from bulkpush.worker.runner import Worker

from ..conftest import TEST_TOKEN
from .conftest import allowances, free_port, write_catalog
from .test_runner import job, run_worker, wait_status

pytestmark = pytest.mark.timeout(60)

FAST = EmulatorConfig(tokens=frozenset({TEST_TOKEN}), products_rate=None, other_rate=None)
CLOUD_SECRET = "cloud-secret-9f3a-MUST-NOT-LEAVE"
DEFAULT_URL = "https://stream-api.productsup.com"


@dataclass
class Recorder:
    """A loopback HTTP server that records every request (method, path, headers)."""

    url: str
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder(url="")

    async def record(request: web.Request) -> web.Response:
        rec.seen.append((request.method, request.path, dict(request.headers)))
        return web.Response(status=500, text="recorded")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    rec.url = f"http://127.0.0.1:{port}"
    try:
        yield rec
    finally:
        await runner.cleanup()


def secret_worker(q: Any, allow: Allowances) -> Worker:
    """A worker whose environment holds the test token and another secret."""
    env = {"BP_TEST_TOKEN": TEST_TOKEN, "MY_CLOUD_SECRET": CLOUD_SECRET}
    return Worker(q, poll_s=0.05, environ=env, allow=allow)


async def test_a_job_naming_another_token_variable_is_refused_and_sends_nothing(
    queue_factory: Any, emulator_factory: Any, recorder: Recorder, tmp_path: Path
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("other-token")
    q = queue_factory()
    cat = write_catalog(tmp_path / "c.ndjson", 100)
    # The recorder's URL is allowed: only the token variable is refused.
    allow = Allowances(
        api_urls=(emu.url, recorder.url),
        token_envs=(TokenGrant("BP_TEST_TOKEN"),),
        dirs=(str(tmp_path),),
    )
    stolen = await q.submit(job(recorder.url, cat, stream="1", token_env="MY_CLOUD_SECRET"))
    good = await q.submit(job(emu.url, cat, stream=sid))
    view = await run_worker(q, good, worker=secret_worker(q, allow))
    assert view.status == "done", view.error
    bad = await q.get(stolen)
    assert bad.status == "failed"
    assert "refused by this worker's allowances: the token variable $MY_CLOUD_SECRET may not " in (
        bad.error or ""
    )
    assert f"be sent to {recorder.url} (allowed there: BP_TEST_TOKEN, BULKPUSH_TOKEN;" in (
        bad.error or ""
    )
    assert recorder.seen == []  # not a request, let alone the secret
    assert CLOUD_SECRET not in (bad.error or "")
    assert len(emu.products(sid)) == 100


async def test_a_token_granted_for_one_url_goes_there_only(
    queue_factory: Any, emulator_factory: Any, recorder: Recorder, tmp_path: Path
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("granted-token")
    q = queue_factory()
    cat = write_catalog(tmp_path / "c.ndjson", 10)
    allow = Allowances(
        token_envs=(TokenGrant("BP_TEST_TOKEN", emu.url), TokenGrant("MY_CLOUD_SECRET", emu.url)),
        dirs=(str(tmp_path),),
    )
    # Granted for the emulator only: not to the recorder, and BULKPUSH_TOKEN not to the emulator.
    elsewhere = await q.submit(job(recorder.url, cat, stream="1", token_env="MY_CLOUD_SECRET"))
    default = await q.submit(job(emu.url, cat, stream=sid, token_env="BULKPUSH_TOKEN"))
    good = await q.submit(job(emu.url, cat, stream=sid))
    worker = secret_worker(q, allow)
    worker.environ["BULKPUSH_TOKEN"] = TEST_TOKEN
    view = await run_worker(q, good, worker=worker)
    assert view.status == "done", view.error
    first, second = await q.get(elsewhere), await q.get(default)
    assert first.status == second.status == "failed"
    assert f"the API URL {recorder.url} is not allowed" in (first.error or "")
    assert f"$BULKPUSH_TOKEN may not be sent to {emu.url}" in (second.error or "")
    assert "allowed there: BP_TEST_TOKEN, MY_CLOUD_SECRET" in (second.error or "")
    assert recorder.seen == []
    assert len(emu.products(sid)) == 10
    assert set(emu.upload_counts(sid).values()) == {1}  # the good job's only


async def test_a_job_for_an_api_url_not_allowed_is_refused_and_reaches_nothing(
    queue_factory: Any, emulator_factory: Any, recorder: Recorder, tmp_path: Path
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("other-url")
    q = queue_factory()
    cat = write_catalog(tmp_path / "c.ndjson", 100)
    elsewhere = await q.submit(job(recorder.url, cat, stream=sid))
    good = await q.submit(job(emu.url, cat, stream=sid))
    view = await run_worker(q, good, allow=allowances(emu.url, tmp_path))
    assert view.status == "done", view.error
    bad = await q.get(elsewhere)
    assert bad.status == "failed"
    assert (
        f"the API URL {recorder.url} is not allowed (allowed: {DEFAULT_URL}, {emu.url}; "
        "bulkpush worker --allow-api-url)"
    ) in (bad.error or "")
    assert recorder.seen == []
    assert len(emu.products(sid)) == 100


async def test_a_source_outside_the_allowed_directories_is_not_read(
    queue_factory: Any, emulator_factory: Any, tmp_path: Path
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("etc-passwd")
    q = queue_factory()
    rejects = tmp_path / "rejects.ndjson"
    passwd = await q.submit(job(emu.url, Path("/etc/passwd"), stream=sid, rejects=str(rejects)))
    view = await run_worker(q, passwd, allow=allowances(emu.url, tmp_path))
    assert view.status == "failed"
    assert "the source /etc/passwd is outside the directories jobs may read" in (view.error or "")
    assert not list(tmp_path.glob("rejects*"))  # noqa: ASYNC240 - no rejects file, no part file
    assert emu.requests() == [] and emu.products(sid) == {}


async def test_symlink_and_dotdot_escapes_are_refused(
    queue_factory: Any,
    emulator_factory: Any,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("escapes")
    q = queue_factory()
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    outside = tmp_path_factory.mktemp("outside")  # not under tmp_path (a SQLite queue's dir)
    secret = write_catalog(outside / "secret.ndjson", 50)  # valid: it would be pushed if read
    (allowed / "link.ndjson").symlink_to(secret)
    (allowed / "out").symlink_to(outside, target_is_directory=True)
    good_cat = write_catalog(allowed / "c.ndjson", 20)
    dotdot = allowed / ".." / ".." / outside.name / "secret.ndjson"
    assert dotdot.resolve() == secret.resolve()
    escapes = {
        await q.submit(job(emu.url, allowed / "link.ndjson", stream=sid)): "source",
        await q.submit(job(emu.url, allowed / "out" / "secret.ndjson", stream=sid)): "source",
        await q.submit(job(emu.url, dotdot, stream=sid)): "source",
        await q.submit(
            job(emu.url, good_cat, stream=sid, report=str(allowed / "out" / "report.json"))
        ): "report file",
        await q.submit(
            job(emu.url, good_cat, stream=sid, rejects=str(allowed / "out" / "rejects.ndjson"))
        ): "rejects file",
    }
    good = await q.submit(job(emu.url, good_cat, stream=sid, report=str(allowed / "r.json")))
    view = await run_worker(q, good, allow=allowances(emu.url, allowed))
    assert view.status == "done", view.error
    for job_id, what in escapes.items():
        bad = await q.get(job_id)
        assert bad.status == "failed", bad.to_json()
        assert f"the {what} " in (bad.error or "") and "(resolved: " in (bad.error or "")
        assert "is outside the directories jobs may" in (bad.error or "")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.ndjson"]
    assert len(emu.products(sid)) == 20  # the good job's only: nothing of the secret file
    assert (allowed / "r.json").exists()


async def test_a_read_only_directory_is_read_not_written(
    queue_factory: Any,
    emulator_factory: Any,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("read-only")
    q = queue_factory()
    catalogs = tmp_path_factory.mktemp("catalogs")  # not under tmp_path (a SQLite queue's dir)
    out = tmp_path / "out"
    out.mkdir()
    cat = write_catalog(catalogs / "c.ndjson", 30)
    overwrite = await q.submit(job(emu.url, cat, stream=sid, report=str(catalogs / "c.ndjson")))
    good = await q.submit(job(emu.url, cat, stream=sid, report=str(out / "r.json")))
    allow = Allowances(
        api_urls=(emu.url,),
        token_envs=(TokenGrant("BP_TEST_TOKEN"),),
        dirs=(str(out),),
        read_dirs=(str(catalogs),),
    )
    view = await run_worker(q, good, allow=allow)
    assert view.status == "done", view.error
    bad = await q.get(overwrite)
    assert bad.status == "failed"
    assert f"the report file {catalogs / 'c.ndjson'} is outside the directories jobs may write" in (
        bad.error or ""
    )
    assert cat.read_bytes().count(b"\n") == 30  # the catalog is intact
    assert len(emu.products(sid)) == 30


async def test_post_jobs_refuses_a_job_the_worker_would_refuse(
    queue_factory: Any, recorder: Recorder, tmp_path: Path
) -> None:
    q = queue_factory()
    worker = secret_worker(q, Allowances(dirs=(str(tmp_path),)))
    port = free_port()
    runner = await start_control(f"127.0.0.1:{port}", worker=worker, token="ctl")
    auth = {"Authorization": "Bearer ctl"}
    cat = write_catalog(tmp_path / "c.ndjson", 10)
    spec = JobSpec(
        sources=(str(cat),),
        target=Target(stream="1", api_url=recorder.url, token_env="MY_CLOUD_SECRET"),
        options=JobOptions(),
    )
    passwd = JobSpec(sources=("/etc/passwd",), target=Target(stream="1"), options=JobOptions())
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/jobs"
            async with http.post(url, json=spec.to_json(), headers=auth) as r:
                assert r.status == 403
                error = (await r.json())["error"]
            async with http.post(url, json=passwd.to_json(), headers=auth) as r:
                assert r.status == 403
                passwd_error = (await r.json())["error"]
    finally:
        await runner.cleanup()
    assert error.startswith("refused by this worker's allowances: the API URL ")
    assert "the source /etc/passwd is outside the directories jobs may read" in passwd_error
    assert await q.list_jobs() == []  # nothing queued
    assert recorder.seen == []


# -- the rules, without I/O ----------------------------------------------------------------


def spec_for(api_url: str = "", token_env: str = "BULKPUSH_TOKEN", **opts: Any) -> JobSpec:
    sources = opts.pop("sources", ("/srv/in/c.ndjson",))
    target = Target(stream="1", api_url=api_url, token_env=token_env, **opts.pop("target", {}))
    return JobSpec(sources=sources, target=target, options=JobOptions(**opts))


@pytest.mark.parametrize(
    "url",
    [
        "",  # the kind's default
        DEFAULT_URL + "/",
        "HTTPS://Stream-API.productsup.com:443",
        DEFAULT_URL + "/some/prefix",
    ],
)
def test_the_kinds_default_url_is_allowed_by_origin(url: str) -> None:
    assert Allowances(read_dirs=("/srv/in",)).refusal(spec_for(url)) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://stream-api.productsup.com",  # another scheme
        "https://stream-api.productsup.com:8443",  # another port
        "https://stream-api.productsup.com.evil.example",
        "https://stream-api.productsup.com@evil.example",
        "https://evil.example#@stream-api.productsup.com",
        "https://evil.example?@stream-api.productsup.com",
    ],
)
def test_any_other_origin_is_refused(url: str) -> None:
    refusal = Allowances(read_dirs=("/srv/in",)).refusal(spec_for(url)) or ""
    assert "is not allowed (allowed: https://stream-api.productsup.com;" in refusal


def test_every_reason_is_given_at_once() -> None:
    spec = spec_for(
        "https://evil.example",
        sources=("/etc/passwd",),
        rejects="/etc/cron.d/x",
        target={"insecure": True, "ca_bundle": "/root/ca.pem"},
    )
    refusal = Allowances().refusal(spec) or ""
    reasons = [
        "the API URL https://evil.example is not allowed",
        "TLS verification off (insecure) is not allowed",
        "the source /etc/passwd is outside the directories jobs may read",
        "the CA bundle /root/ca.pem is outside the directories jobs may read",
        "the rejects file /etc/cron.d/x is outside the directories jobs may write",
    ]
    at = [refusal.find(reason) for reason in reasons]
    assert -1 not in at and at == sorted(at), refusal
    insecure = spec_for(target={"insecure": True})
    assert Allowances(insecure=True, read_dirs=("/srv",)).refusal(insecure) is None


def test_a_sqlite_queues_directory_is_allowed_but_not_its_files(tmp_path: Path) -> None:
    allow = Allowances().for_queue(f"sqlite:///{tmp_path / 'jobs.db'}")
    assert allow.dirs == (str(tmp_path.resolve()),)
    assert allow.refusal(spec_for(sources=(str(tmp_path / "c.ndjson"),))) is None
    spec = spec_for(sources=(str(tmp_path / "jobs.db-wal"),), report=str(tmp_path / "jobs.db"))
    refusal = allow.refusal(spec) or ""
    assert f"the source {tmp_path / 'jobs.db-wal'} is a file of the queue" in refusal
    assert f"the report file {tmp_path / 'jobs.db'} is a file of the queue" in refusal
    assert Allowances().for_queue("redis://127.0.0.1:6379/0") == Allowances()


@pytest.mark.parametrize(
    ("grant", "message"),
    [("BAD NAME", "takes NAME or NAME=URL"), ("X=ftp://h", "X=ftp://h: not an http(s) URL")],
)
def test_a_bad_grant_is_refused(grant: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        TokenGrant.parse(grant)


def test_a_bad_api_url_allowance_is_refused() -> None:
    with pytest.raises(ConfigError, match="--allow-api-url: 'not a url' is not an http"):
        Allowances(api_urls=("not a url",))


# -- a real worker process, configured by flags and environment ----------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--allow-api-url", "ftp://h"], "--allow-api-url: 'ftp://h' is not an http(s) URL"),
        (["--allow-token-env", "NO WAY"], "--allow-token-env takes NAME or NAME=URL"),
        (["--allow-dir", "/no/such/dir"], "Directory '/no/such/dir' does not exist"),
    ],
)
def test_the_worker_refuses_a_bad_allowance_at_start(
    tmp_path: Path, args: list[str], message: str
) -> None:
    queue = f"sqlite:///{tmp_path / 'q.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "bulkpush", "worker", "--queue", queue, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


async def test_a_worker_process_applies_its_flags_and_environment(
    queue_url: str, emulator_factory: Any, recorder: Recorder, tmp_path: Path
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("process")
    data = tmp_path / "data"
    data.mkdir()
    cat = write_catalog(data / "c.ndjson", 200)
    q = open_queue(queue_url)
    env = {
        **os.environ,
        "BULKPUSH_TOKEN": TEST_TOKEN,
        "MY_CLOUD_SECRET": CLOUD_SECRET,
        "BULKPUSH_WORKER_ALLOW_DIR": str(data),  # as the environment may say it
    }
    args = ["-v", "--queue", queue_url, "--poll", "0.1", "--allow-api-url", emu.url]
    args += ["--allow-api-url", recorder.url]
    log_path = tmp_path / "worker.log"
    try:
        stolen = await q.submit(job(recorder.url, cat, stream="1", token_env="MY_CLOUD_SECRET"))
        passwd = await q.submit(job(emu.url, Path("/etc/passwd"), stream=sid))
        good = await q.submit(job(emu.url, cat, stream=sid, token_env="BULKPUSH_TOKEN"))
        with open(log_path, "wb") as log:  # noqa: ASYNC230 - a local file, opened once
            proc = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
                [sys.executable, "-m", "bulkpush", "worker", *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            view = await wait_status(q, good, {"done", "failed"}, limit=30)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.to_thread(proc.wait), 15)
            except TimeoutError:
                proc.kill()
                proc.wait()
        assert view.status == "done", view.error
        refused = [await q.get(stolen), await q.get(passwd)]
    finally:
        await q.aclose()
    assert [v.status for v in refused] == ["failed", "failed"]
    assert "the token variable $MY_CLOUD_SECRET may not be sent" in (refused[0].error or "")
    assert "the source /etc/passwd is outside" in (refused[1].error or "")
    assert recorder.seen == []
    assert len(emu.products(sid)) == 200
    text = log_path.read_text()
    assert f"read and write files under {data.resolve()}" in text  # the worker says so
    assert CLOUD_SECRET not in text
