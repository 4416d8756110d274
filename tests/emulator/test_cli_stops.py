"""``bulkpush emulator`` says in one line why it cannot start, and in one line when a
client goes away mid-request: no tracebacks. Driven over real loopback."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.timeout(60)

TOKEN = "stops-token"


def test_a_busy_port_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "bulkpush", "emulator", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"bulkpush: error: cannot listen on 127.0.0.1:{port}: address already in use\n"
    )


@pytest.fixture
def emulator() -> Iterator[tuple[subprocess.Popen[str], str]]:
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
        yield proc, line.rsplit(" ", 1)[1].strip()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def create_stream(url: str, name: str) -> str:
    body = {"data": {"type": "stream", "attributes": {"name": name, "type": "chunked"}}}
    request = urllib.request.Request(
        f"{url}/streams",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/vnd.api+json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.load(response)["data"]["id"])


def upload_and_hang_up(url: str, sid: str, *, reset: bool) -> None:
    """Send the headers and part of a body, then close (``reset``: with an RST)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (
            f"POST /streams/{sid}/products HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/x-ndjson\r\n"
            "Content-Length: 100000\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"id": "1", "title": "one"}\n' * 10)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)


def test_a_client_hanging_up_mid_upload_is_one_line(
    emulator: tuple[subprocess.Popen[str], str],
) -> None:
    proc, url = emulator
    sid = create_stream(url, "disconnects")
    assert proc.stderr is not None
    for reset in (True, False):
        upload_and_hang_up(url, sid, reset=reset)
        line = proc.stderr.readline()
        assert line.startswith(
            f"client 127.0.0.1 disconnected during POST /streams/{sid}/products: "
        ), line
    assert create_stream(url, "still serving")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "Traceback" not in err
    assert err == ""  # nothing more than the one line each
    assert "stopped" in out
