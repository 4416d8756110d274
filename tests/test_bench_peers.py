"""The benchmark peers and the ``_bulk`` endpoint they talk to, end to end on loopback.

Each server and each peer runs in a process of its own, as in the benchmark.
No timing is asserted: only that every product arrives and the JSON line has
its shape.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bulkpush.samples import write_catalog

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "peers-token"
PRODUCTS = 2_000
CHUNK = 500
LINE_KEYS = {
    "peer",
    "products",
    "seconds",
    "products_per_s",
    "mb_per_s",
    "requests",
    "status_429",
    "errors",
    "rejected",
    "cpu_s",
    "peak_rss_mb",
}


@contextlib.contextmanager
def _serve(args: list[str], marker: str) -> Iterator[str]:
    """Start a server module in a subprocess; yield the URL its first line names."""
    proc = subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert marker in line, line
        yield line.split(marker, 1)[1].strip()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - only if shutdown hangs
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("peers") / "catalog.ndjson"
    write_catalog(path, PRODUCTS)
    return path


@pytest.fixture
def bulk_url() -> Iterator[str]:
    with _serve(["benchmarks.bulk_endpoint", "--port", "0"], "LISTENING ") as url:
        yield url


@pytest.fixture
def emulator_url() -> Iterator[str]:
    args = ["bulkpush", "emulator", "--port", "0", "--token", TOKEN, "--no-rate-limit"]
    with _serve(args, "listening on ") as url:
        yield url


def _call(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), json.loads(exc.read())


def _peer(name: str, url: str, catalog: Path, target: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.peers",
            name,
            "--url",
            url,
            "--catalog",
            str(catalog),
            "--index-or-stream",
            target,
            "--chunk-size",
            str(CHUNK),
            "--compression",
            "gzip",
            "--token",
            TOKEN,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout
    line: dict[str, Any] = json.loads(lines[0])
    assert set(line) == LINE_KEYS
    assert line["peer"] == name
    assert line["products"] == PRODUCTS, out.stderr
    assert line["errors"] == 0, out.stderr
    assert line["rejected"] == 0
    assert line["requests"] == PRODUCTS // CHUNK
    assert line["status_429"] == 0
    assert line["seconds"] > 0 and line["products_per_s"] > 0 and line["mb_per_s"] > 0
    assert line["peak_rss_mb"] > 0
    assert line["cpu_s"] > 0
    return line


def test_naive_peer_pushes_the_whole_catalog(catalog: Path, emulator_url: str) -> None:
    status, _, created = _call(
        emulator_url + "/streams",
        "POST",
        json.dumps(
            {"data": {"type": "stream", "attributes": {"name": "naive", "type": "chunked"}}}
        ).encode(),
        {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/vnd.api+json"},
    )
    assert status == 201, created
    sid = created["data"]["id"]
    _peer("naive", emulator_url, catalog, sid)
    _, _, counters = _call(f"{emulator_url}/_emulator/streams/{sid}/counters")
    assert counters["products_accepted"] == PRODUCTS
    assert counters["uploads"] == PRODUCTS // CHUNK


@pytest.mark.parametrize("name", ["es_async_streaming_bulk", "es_parallel_bulk"])
def test_elasticsearch_peer_pushes_the_whole_catalog(
    name: str, catalog: Path, bulk_url: str
) -> None:
    pytest.importorskip("elasticsearch")
    _peer(name, bulk_url, catalog, "products")
    _, _, stats = _call(bulk_url + "/_bench/bulk_stats")
    assert stats["docs"] == PRODUCTS
    assert stats["per_index"]["products"]["docs"] == PRODUCTS
    assert stats["requests"] == PRODUCTS // CHUNK
    assert stats["status_429"] == 0


def test_bulk_endpoint_limits() -> None:
    # One request per 1,000 s window per index and client: the second one is refused.
    args = ["benchmarks.bulk_endpoint", "--port", "0", "--rate", "0.001", "--max-actions", "2"]
    with _serve([*args, "--max-request-bytes", "4096"], "LISTENING ") as url:
        status, headers, info = _call(url + "/")
        assert status == 200
        assert headers["X-Elastic-Product"] == "Elasticsearch"
        assert info["version"]["number"].startswith("9.")

        pair = b'{"create":{"_id":"p1"}}\n{"id":"p1","title":"t"}\n'
        ndjson = {"Content-Type": "application/x-ndjson"}
        status, headers, answer = _call(
            url + "/a/_bulk", "PUT", gzip.compress(pair), {**ndjson, "Content-Encoding": "gzip"}
        )
        assert status == 200 and headers["X-Elastic-Product"] == "Elasticsearch"
        assert answer["errors"] is False
        assert answer["items"] == [
            {
                "create": {
                    "_index": "a",
                    "_id": "p1",
                    "_version": 1,
                    "result": "created",
                    "_shards": {"total": 2, "successful": 1, "failed": 0},
                    "_seq_no": 0,
                    "_primary_term": 1,
                    "status": 201,
                }
            }
        ]
        status, _, error = _call(url + "/a/_bulk", "POST", pair, ndjson)
        assert status == 429
        assert error["status"] == 429
        assert error["error"]["type"] == "es_rejected_execution_exception"
        status, _, _ = _call(url + "/b/_bulk", "POST", pair * 3, ndjson)
        assert status == 400  # three documents, at most two
        status, _, _ = _call(url + "/c/_bulk", "POST", pair * 100, ndjson)
        assert status == 413  # over 4096 bytes

        _, _, stats = _call(url + "/_bench/bulk_stats")
        assert stats["requests"] == 4
        assert stats["docs"] == 1
        assert stats["status_429"] == 1
        assert stats["per_index"]["a"]["status_429"] == 1
        assert stats["per_index"]["b"]["status_400"] == 1
        assert stats["per_index"]["c"]["status_413"] == 1
