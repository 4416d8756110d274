"""The slow-links scenario's parts: the benchmark server's link and 10 s rule, the targets.

The server test sends real bodies over loopback through a slow uplink; no
timing is asserted beyond the server's own verdicts (answered or ended at its
timeout). The scenario's targets and its report section are checked on
figures written by hand, in the shape the scenario records them.
"""

from __future__ import annotations

import http.client
import urllib.parse
from pathlib import Path
from typing import Any

from benchmarks import render
from benchmarks.common import Scenario
from benchmarks.scenarios import links
from benchmarks.server import TOKEN, BenchServer, ServerConfig


def _post(url: str, path: str, body: bytes) -> int:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request(
            "POST",
            path,
            body=body,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"},
        )
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _ndjson(n: int, pad: int) -> bytes:
    return b"".join(b'{"id":"p%d","title":"%s"}\n' % (i, b"x" * pad) for i in range(n))


def test_server_reads_bodies_through_the_link_and_ends_slow_requests() -> None:
    # 200 KB/s: a 60 KB body takes about 0.3 s, an 800 KB body 4 s, over the 2 s timeout.
    config = ServerConfig(rate=None, uplink_bytes_per_s=200_000, request_timeout_s=2.0)
    assert ServerConfig.from_json(config.to_json()) == config
    assert "uplink 0.2 MB/s (1.6 Mbit/s)" in config.describe()
    small, large = _ndjson(600, 80), _ndjson(8000, 80)
    with BenchServer(config) as server:
        assert server.uplink()["bytes_per_s"] == 200_000
        sid = server.create_stream("links test")
        assert _post(server.url, f"/streams/{sid}/products", small) == 200
        assert _post(server.url, f"/streams/{sid}/products", large) == 504
        log = server.upload_log(sid)
        counters = server.counters(sid)
        carried = server.uplink()["carried"]
        uploads = server.uploads(sid)

    assert [(u.status, u.timed_out) for u in log] == [(200, False), (504, True)]
    ok, late = log
    assert (ok.size, ok.products) == (len(small), 600)
    assert 0 < late.size < len(large)  # ended while its body was still coming
    assert counters["timed_out"] == 1
    assert counters["products_accepted"] == 600  # nothing of the ended request is stored
    assert carried is not None and carried >= len(small) + late.size
    assert [u[1:] for u in uploads] == [(200, 600), (504, late.products)]  # the 3-tuple view


def _run(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "expected_link_s": 8.0,
        "limit_s": 39.0,
        "killed": False,
        "exit_code": 0,
        "seconds": 10.0,
        "seconds_source": "report",
        "wall_s": 11.0,
        "client_cores": 0.3,
        "products": 10_000,
        "catalog_products": 10_000,
        "requests": 4,
        "timed_out": 0,
        "status_429": 0,
        "refused": 0,
        "refused_statuses": [],
        "accepted_bytes": 11_250_000,  # 90 % of 1.25 MB/s x 10 s
        "carried_bytes": 11_250_000.0,
        "link_use": 0.9,
        "link_busy": 0.9,
        "server_window_s": 9.5,
        "longest_accepted_s": 5.0,
        "longest_s": 5.0,
        "client_accepted": 10_000,
        "client_requests": 4,
        "client_retries": 0,
        "client_bytes_sent": 11_250_000,
        "client_link_mb_per_s": None,
        "client_timed_out": None,
        "client_stopped": None,
        "stderr_tail": "",
    }
    row.update(overrides)
    return row


def test_targets_and_report_section(tmp_path: Path) -> None:
    path = tmp_path / "regular-10000-seed1-g2.ndjson"  # named as benchmarks.catalogs names them
    path.write_bytes(b"{}\n" * 10)
    good = links.Case(10, "chunked", "none", 10_000)
    late = links.Case(10, "referenced", "none", 10_000)
    fast = links.Case(100, "chunked", "gzip", 10_000)
    rows = [
        links._summary(good, path, 4.0, [_run()]),
        links._summary(
            late,
            path,
            4.0,
            [_run(timed_out=2, requests=6, link_use=0.4, link_busy=0.95, client_timed_out=2)],
        ),
        links._summary(fast, path, 4.0, [_run(link_use=0.97, client_link_mb_per_s=12.1)]),
    ]
    scenario = Scenario(title="Slow links")
    links._targets(scenario, rows)
    met = {t.id: t.met for t in scenario.targets}
    assert met == {
        "links_100_timed_out": True,
        "links_100_link_use": True,
        "links_10_timed_out": False,
        "links_10_link_use": False,
    }
    by_id = {t.id: t for t in scenario.targets}
    assert "2 of 10 uploads" in by_id["links_10_timed_out"].measured
    assert "lowest 40.0%" in by_id["links_10_link_use"].measured
    assert "10 Mbit/s, referenced, uncompressed" in by_id["links_10_link_use"].note

    scenario.figures = {"cases": rows}
    text = render.render({"scenarios": {"links": scenario.to_json()}})
    assert "## 1. Slow links (`--only links`)" in text
    assert "(figures could not be rendered" not in text
    table = [line for line in text.splitlines() if line.startswith("| 10")]
    assert len(table) == 3
    # The client's keys: shown when its report has them, a dash when not.
    assert "| 12.10 |" in table[2]
    assert "| – | – |" in table[0]
    assert "**2**" in table[1]
