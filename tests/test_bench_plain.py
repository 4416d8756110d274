"""The plain threaded peer (benchmarks/plain_client.py) end to end on loopback.

The benchmark server runs in its own process, storing what it accepts
(throughput mode off); the peer runs in another, as in the suite. Every
product must arrive exactly once; lines that are not products must not.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from benchmarks.plain_client import MAX_PRODUCT_BYTES, Limiter
from benchmarks.server import BenchServer, ServerConfig
from bulkpush.samples import write_catalog

ROOT = Path(__file__).resolve().parent.parent
PRODUCTS = 2_000


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plain") / "catalog.ndjson"
    write_catalog(path, PRODUCTS)
    return path


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_bytes().splitlines() if line.strip()]


def _peer(server: BenchServer, catalog: Path, stream: str, *extra: str) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.peers", "plain_threaded", "--url", server.url,
            "--catalog", str(catalog), "--index-or-stream", stream, "--compression", "gzip",
            "--token", server.config.token, *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads(lines[0])
    assert result["peer"] == "plain_threaded"
    return result


def _stored_ids(server: BenchServer, stream: str) -> list[str]:
    url = f"{server.url}/_emulator/streams/{stream}/products"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return [json.loads(line)["id"] for line in resp.read().splitlines() if line.strip()]


def test_every_product_arrives_once_and_bad_lines_do_not(catalog: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.ndjson"
    bad = [
        b"[1, 2, 3]",  # not an object
        b'{"title": "no id"}',
        b'{"id": "broken", ',  # not JSON
        b'{"id": "huge", "description": "' + b"x" * MAX_PRODUCT_BYTES + b'"}',  # over 1 MB
    ]
    lines = catalog.read_bytes().splitlines()
    # The bad lines spread through the catalog, and one blank line (skipped, not counted).
    body = lines[:500] + bad[:2] + lines[500:1500] + [b""] + bad[2:] + lines[1500:]
    mixed.write_bytes(b"\n".join(body) + b"\n")
    expected = _ids(catalog)

    with BenchServer(ServerConfig(rate=None, throughput_mode=False)) as server:
        sid = server.create_stream("plain end to end")
        # 300 products per request: 6 full bodies and a last one of 200.
        result = _peer(server, mixed, sid, "--chunk-size", "300")
        stored = _stored_ids(server, sid)
        counters = server.counters(sid)
        uploads = server.uploads(sid)

    assert result["products"] == PRODUCTS
    assert result["rejected"] == len(bad)
    assert result["errors"] == 0
    assert result["requests"] == 7 and result["status_429"] == 0
    assert result["cpu_s"] > 0 and result["seconds"] > 0
    # What the server stored: every product, each once, nothing else.
    assert sorted(stored) == sorted(expected)
    assert counters["products_accepted"] == PRODUCTS
    assert counters["uploads"] == 7
    assert sorted(n for _, _, n in uploads) == [200] + [300] * 6
    assert all(status == 200 for _, status, _ in uploads)


def test_the_shared_limiter_paces_the_uploads(catalog: Path) -> None:
    # 40 requests at 20/s against the published 30/s in fixed windows, 100 ms latency:
    # 8 threads could send 80/s, the limiter must hold them to 20/s, so no 429.
    rate = 20.0
    with BenchServer(ServerConfig(rate=30.0, latency_s=0.1)) as server:
        sid = server.create_stream("plain paced")
        result = _peer(server, catalog, sid, "--chunk-size", "50", "--rate", str(rate))
        uploads = server.uploads(sid)
        counters = server.counters(sid)

    assert result["products"] == PRODUCTS and result["errors"] == 0
    assert result["status_429"] == 0
    assert counters["products_accepted"] == PRODUCTS
    times = sorted(t for t, status, _ in uploads if status == 200)
    assert len(times) == len(uploads) == PRODUCTS // 50
    observed = (len(times) - 1) / (times[-1] - times[0])
    assert observed <= rate * 1.05, observed  # never faster than asked
    assert observed >= rate * 0.5, observed  # and not stalled


def test_limiter_spaces_slots_evenly_across_threads() -> None:
    limiter = Limiter(1000.0)
    slots: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(25):
            slot = limiter.wait()
            with lock:
                slots.append(slot)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(slots) == 200
    slots.sort()
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert min(gaps) >= 0.001 - 1e-9


def test_limiter_saves_no_slots_while_idle() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = Limiter(10.0, clock=lambda: now[0], sleep=sleep)
    assert [limiter.wait() for _ in range(3)] == pytest.approx([100.0, 100.1, 100.2])
    now[0] += 5.0  # idle: the next caller goes at once, the one after waits a full interval
    assert limiter.wait() == pytest.approx(105.2)
    assert limiter.wait() == pytest.approx(105.3)
    assert slept == pytest.approx([0.1, 0.1, 0.1])
    assert Limiter(None).wait() > 0  # no rate: never sleeps
