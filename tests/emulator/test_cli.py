"""``bulkpush emulator`` as a separate process, driven with curl like the reference's tutorial."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.emulator.test_uploads import SECOND, TUTORIAL

TOKEN = "tutorial-token"


@pytest.fixture
def served() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bulkpush", "emulator", "--port", "0", "--token", TOKEN],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("bulkpush emulator listening on http://127.0.0.1:"), line
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - only if shutdown hangs
            proc.kill()
            proc.communicate()
            raise
        assert proc.returncode == 0
        assert "stopped" in out


def curl(*args: str, data: bytes | None = None) -> tuple[int, Any]:
    result = subprocess.run(
        ["curl", "--silent", "--show-error", "--write-out", "\n%{http_code}", *args],
        input=data,
        capture_output=True,
        check=True,
        timeout=20,
    )
    body, _, status = result.stdout.rpartition(b"\n")
    return int(status), json.loads(body) if body.strip() else {}


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_tutorial_with_curl(served: str) -> None:
    auth = f"Authorization: Bearer {TOKEN}"
    # Request 1: create your first stream.
    status, created = curl(
        "--location",
        "--request",
        "POST",
        f"{served}/streams",
        "--header",
        auth,
        "--header",
        "Content-Type: application/vnd.api+json",
        "--header",
        "Accept: application/vnd.api+json",
        "--data-raw",
        '{"data": {"type": "stream", "attributes": '
        '{"name": "Getting started tutorial My first stream", "type": "chunked"}}}',
    )
    assert status == 201
    data = created["data"]
    assert isinstance(data, dict)
    sid = data["id"]
    assert data["attributes"]["name"] == "Getting started tutorial My first stream"
    # Request 2: list your streams.
    status, listed = curl(f"{served}/streams", "--header", auth)
    assert status == 200
    assert [s["id"] for s in listed["data"]] == [sid]
    # Request 3: upload three products, one with a syntax error.
    status, uploaded = curl(
        "--location",
        "--request",
        "POST",
        f"{served}/streams/{sid}/products",
        "--header",
        auth,
        "--header",
        "Content-Type: application/x-ndjson",
        "--header",
        "Accept: application/vnd.api+json",
        "--data-binary",
        "@-",
        data=TUTORIAL,
    )
    assert status == 202
    batch = uploaded["data"]
    assert isinstance(batch, dict)
    upload = batch["attributes"]["stages"]["upload"]
    assert batch["attributes"]["status"] == "uploaded"
    assert (upload["status"], upload["successCount"], upload["errorCount"]) == ("warning", 2, 1)
    assert upload["errors"] == [
        {"message": "Syntax error", "occurrences": 1, "example": {"lineNumber": 2, "value": SECOND}}
    ]
    # Request 6: check the status of your upload.
    status, got = curl(f"{served}/streams/{sid}/batches/{batch['id']}", "--header", auth)
    assert status == 200
    assert got == uploaded
    # Without the token: 401.
    status, refused = curl(f"{served}/streams")
    assert status == 401
    assert refused == {"errors": [{"status": "401", "title": "Unauthorized"}]}


def test_help_lists_the_flags() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bulkpush", "emulator", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    for flag in (
        "--host",
        "--port",
        "--token",
        "--rate-products",
        "--no-rate-limit",
        "--latency",
        "--throughput-mode",
        "--referenced-min-bytes",
        "--seed",
        "--error-rate",
        "--drop-rate",
        "--lock",
    ):
        assert flag in out


def test_bad_flags_are_usage_errors() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bulkpush", "emulator", "--error-rate", "3"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--error-rate" in result.stderr  # the flag, not the config field


def test_without_tokens_the_startup_message_says_so() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bulkpush", "emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("bulkpush emulator listening on ")
        assert "any non-empty bearer token is accepted" in proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 0
