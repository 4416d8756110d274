"""``--log-format json``: one JSON object per line on stderr, with fields; no credential
ever appears; the human format stays the default."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkpush._http import HttpTransport, Secret, TransportOptions
from bulkpush._logging import current_format, log_outcome, setup_logging
from bulkpush._records import Chunk, Outcome, Record
from bulkpush.emulator import Emulator, EmulatorConfig, Faults

from .conftest import bulkpush_cli as run

TOKEN = "log-token-0123456789"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    ours = logging.getLogger("bulkpush")
    our_level = ours.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
    ours.setLevel(our_level)


def lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines()]


def chunk(n: int) -> Chunk:
    records = [Record("c.ndjson", i, 0, b'{"id":"%d"}' % i) for i in range(11, 11 + n)]
    return Chunk(seq=4, records=records, nbytes=100)


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_carry_time_level_logger_message_and_fields() -> None:
    out = io.StringIO()
    setup_logging("json", stream=out)
    assert current_format() == "json"
    log = logging.getLogger("bulkpush.test")
    log.info("retrying %s", "POST /x", extra={"attempt": 2, "status": 503, "where": ["a", 1]})
    log.debug("not shown")
    logging.getLogger("other.library").info("not shown: other libraries log warnings only")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    first, second = lines(out.getvalue())
    assert first["time"].endswith("+00:00") and first["level"] == "info"
    assert (first["logger"], first["message"]) == ("bulkpush.test", "retrying POST /x")
    assert (first["attempt"], first["status"], first["where"]) == (2, 503, ["a", 1])
    assert second["level"] == "error" and "ValueError: boom" in second["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_no_credential_reaches_the_log_in_either_format() -> None:
    for fmt in ("json", "human"):
        out = io.StringIO()
        setup_logging(fmt, stream=out)  # type: ignore[arg-type]
        log = logging.getLogger("bulkpush.test")
        log.warning(
            "queue redis://:hunter2@db:6379/0, header %s, Authorization: Bearer %s",
            Secret(TOKEN),
            TOKEN,
            extra={
                "token": TOKEN,
                "url": "https://user:hunter2@api.example.com/streams",
                "nested": {"api_key": "k-123456789", "note": f"token={TOKEN}"},
                "secret_obj": Secret(TOKEN),
            },
        )
        text = out.getvalue()
        assert TOKEN not in text and "hunter2" not in text and "k-123456789" not in text, fmt
        assert "redis://:***@db:6379/0" in text
    (json_line,) = [ln for ln in text.splitlines() if ln.startswith("{")] or [None]
    assert json_line is None  # the last format was human: no JSON


@pytest.mark.usefixtures("restore_logging")
async def test_the_transport_warning_masks_a_password_in_the_url() -> None:
    out = io.StringIO()
    setup_logging("json", stream=out)
    transport = HttpTransport(
        "https://user:hunter2@api.example.invalid",
        auth_headers={"Authorization": Secret(f"Bearer {TOKEN}")},
        options=TransportOptions(verify_tls=False),
    )
    async with transport:
        pass
    (line,) = lines(out.getvalue())
    assert line["level"] == "warning" and line["logger"] == "bulkpush.transport"
    assert "https://user:***@api.example.invalid" in line["message"]
    assert "hunter2" not in out.getvalue() and TOKEN not in out.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_setting_up_again_replaces_the_handler_and_human_is_the_default() -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    out = io.StringIO()
    setup_logging("json", stream=io.StringIO())
    setup_logging(stream=out)
    assert len(root.handlers) == before + 1 and current_format() == "human"
    log = logging.getLogger("bulkpush.test")
    log.info("quiet unless verbose")
    log.warning("shown")
    assert out.getvalue().rstrip().endswith("WARNING shown")
    assert "quiet" not in out.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_a_push_logs_retried_throttled_and_unsent_requests() -> None:
    out = io.StringIO()
    setup_logging("json", stream=out)
    log = logging.getLogger("bulkpush.push")
    log_outcome(log, Outcome(chunk=chunk(3), status=200, accepted=3, attempts=1))  # no news
    log_outcome(
        log, Outcome(chunk=chunk(3), status=200, accepted=3, attempts=3, throttled=2, batch_id="b")
    )
    log_outcome(
        log, Outcome(chunk=chunk(2), status=503, not_sent=2, attempts=2, error="gave up: 503")
    )
    retried, unsent = lines(out.getvalue())
    assert retried["event"] == "retried" and retried["level"] == "info"
    assert (retried["attempts"], retried["retries"], retried["throttled"]) == (3, 2, 2)
    assert (retried["source"], retried["first_line"], retried["last_line"]) == ("c.ndjson", 11, 13)
    assert retried["batch_id"] == "b"
    assert unsent["event"] == "not_sent" and unsent["level"] == "info"
    assert (unsent["not_sent"], unsent["error"], unsent["status"]) == (2, "gave up: 503", 503)


async def test_push_log_format_json_end_to_end(tmp_path: Path) -> None:
    async with Emulator(EmulatorConfig(tokens=frozenset({TOKEN}))) as emu:
        sid = emu.create_stream("logs", "chunked")
        emu.set_faults(sid, Faults(error_rate=1.0, error_status=503))
        env = {**os.environ, "BULKPUSH_TOKEN": TOKEN, "BULKPUSH_API_URL": emu.url}
        catalog = tmp_path / "c.ndjson"
        catalog.write_text('{"id": "a", "t": "x"}\n{"id": "b", "t": "y"}\n')
        code, out, err = await run(
            "push", str(catalog), "--stream", sid, "--max-attempts", "2",
            "--log-format", "json", env=env,
        )  # fmt: skip
    assert code == 3
    assert "not sent" in out  # the summary still goes to stdout
    events = lines(err)  # every line of stderr is a JSON object
    by_event = {e.get("event"): e for e in events}
    assert by_event["not_sent"]["attempts"] == 2, by_event
    assert "gave up after 2 attempts" in by_event["not_sent"]["error"]
    assert by_event["error"]["exit_code"] == 3 and by_event["error"]["level"] == "error"
    finished = by_event["finished"]
    assert (finished["read"], finished["not_sent"], finished["stream"]) == (2, 2, sid)
    assert TOKEN not in err and TOKEN not in out


async def test_worker_log_format_json(tmp_path: Path) -> None:
    queue = f"sqlite:///{tmp_path / 'jobs.db'}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bulkpush", "worker", "--queue", queue, "--poll", "0.1",
        "--log-format", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    started = orjson.loads(await asyncio.wait_for(proc.stderr.readline(), 30))
    assert started["level"] == "info" and started["logger"] == "bulkpush.worker"
    assert "started" in started["message"]
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert all(orjson.loads(line)["logger"].startswith("bulkpush") for line in err.splitlines())


def test_redact_masks_a_urls_password_and_keeps_the_rest() -> None:
    from bulkpush.report import redact

    assert redact("redis://:hunter2@db:6379/0 down") == "redis://:***@db:6379/0 down"
    assert redact("https://user:hunter2@h/x") == "https://user:***@h/x"
    for plain in ("http://127.0.0.1:8080/streams", "sqlite:////tmp/jobs.db", "a:b@c"):
        assert redact(plain) == plain
