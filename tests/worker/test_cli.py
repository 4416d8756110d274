"""``jobs submit`` takes exactly ``push``'s target and push options, and queues no token."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import click
import orjson
import pytest
from click.testing import CliRunner

from bulkpush.cli import cli
from bulkpush.worker.queue import open_queue

from .conftest import write_catalog

pytestmark = pytest.mark.timeout(60)

SECRET = "tok-3c1f-SHOULD-NEVER-BE-QUEUED"


def flags(name: str, *sub: str) -> set[str]:
    command: Any = cli
    for part in (name, *sub):
        command = command.commands[part]
    return {opt for p in command.params if isinstance(p, click.Option) for opt in p.opts}


def test_submit_takes_every_push_option_and_a_token_reference_instead_of_a_token() -> None:
    push, submit = flags("push"), flags("jobs", "submit")
    # --dry-run, --log-format and --workers (the reading processes of one push)
    # concern the process that runs: not a job's options.
    assert push - submit == {
        "--workers",
        "--token",
        "--token-file",
        "--quiet",
        "-q",
        "--dry-run",
        "--log-format",
    }
    assert submit - push == {"--token-env", "--max-in-flight", "--parts", "--queue"}


def stored_bytes(queue_url: str) -> bytes:
    """Everything the queue backend holds, raw."""
    if queue_url.startswith("sqlite:///"):
        path = Path(queue_url[len("sqlite:///") :])
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    import redis

    client = redis.Redis.from_url(queue_url)
    try:
        out = []
        for key in client.scan_iter("*"):
            kind = client.type(key)
            if kind == b"hash":
                out += [k + b"=" + v for k, v in client.hgetall(key).items()]
            elif kind == b"stream":
                out += [repr(e).encode() for e in client.xrange(key)]
            elif kind == b"zset":
                out += client.zrange(key, 0, -1)
            elif kind == b"string":
                out.append(client.get(key) or b"")
        return b"\n".join(out)
    finally:
        client.close()


def test_submit_queues_the_token_reference_never_the_token(queue_url: str, tmp_path: Path) -> None:
    cat = write_catalog(tmp_path / "c.ndjson", 10)
    env = {**os.environ, "BULKPUSH_TOKEN": SECRET, "MY_TOKEN": SECRET}
    result = CliRunner().invoke(
        cli,
        [
            "jobs",
            "submit",
            str(cat),
            "--stream",
            "124773",
            "--token-env",
            "MY_TOKEN",
            "--rate",
            "12.5",
            "--compression",
            "none",
            "--rejects",
            "rejects.ndjson",
            "--queue",
            queue_url,
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip()
    assert SECRET.encode() not in stored_bytes(queue_url)
    # A worker started without allowances would refuse the variable: said early.
    assert "refuses this job: the token variable $MY_TOKEN may not be sent" in result.stderr
    assert SECRET not in result.output

    async def get() -> Any:
        queue = open_queue(queue_url)
        try:
            return await queue.get(job_id)
        finally:
            await queue.aclose()

    view = asyncio.run(get())
    assert view is not None and view.spec.target.token_env == "MY_TOKEN"
    options = view.spec.options
    assert (options.rate, options.compression) == (12.5, "none")
    assert options.rejects is not None and os.path.isabs(options.rejects)
    shown = CliRunner().invoke(cli, ["jobs", "show", job_id, "--json", "--queue", queue_url])
    assert SECRET not in shown.output
    assert orjson.loads(shown.output)["target"]["token_env"] == "MY_TOKEN"
    assert orjson.loads(shown.output)["target"]["kind"] == "productsup-stream"
    assert view.spec.target.kind == "productsup-stream"


def test_an_ended_job_cannot_be_cancelled(queue_url: str, tmp_path: Path) -> None:
    cat = write_catalog(tmp_path / "c.ndjson", 10)
    submit = CliRunner().invoke(
        cli, ["jobs", "submit", str(cat), "--stream", "124773", "--queue", queue_url]
    )
    assert submit.exit_code == 0, submit.output
    job_id = submit.stdout.strip()

    async def finish() -> str:
        queue = open_queue(queue_url)
        try:
            while (lease := await queue.lease("w1")) is not None:
                await queue.complete(lease, {})
            view = await queue.get(job_id)
            assert view is not None
            return view.status
        finally:
            await queue.aclose()

    assert asyncio.run(finish()) == "done"
    cancel = CliRunner().invoke(cli, ["jobs", "cancel", job_id, "--queue", queue_url])
    assert cancel.exit_code == 2
    assert f"job {job_id} is done: an ended job cannot be cancelled" in cancel.stderr
    shown = CliRunner().invoke(cli, ["jobs", "show", job_id, "--json", "--queue", queue_url])
    assert orjson.loads(shown.stdout)["status"] == "done"
    # A queued job is cancelled once; a second cancel says it has ended.
    again = CliRunner().invoke(
        cli, ["jobs", "submit", str(cat), "--stream", "124773", "--queue", queue_url]
    )
    other = again.stdout.strip()
    first = CliRunner().invoke(cli, ["jobs", "cancel", other, "--queue", queue_url])
    assert first.exit_code == 0 and f"cancelled {other}" in first.stdout
    second = CliRunner().invoke(cli, ["jobs", "cancel", other, "--queue", queue_url])
    assert second.exit_code == 2 and "is cancelled" in second.stderr
