"""``push --dry-run`` and ``Engine.open_push(..., dry_run=True)``: the catalog is read,
validated and cut, the preflight runs, no upload reaches the API, the report balances."""

from __future__ import annotations

import os
import re
from pathlib import Path

import orjson

from bulkpush import PushOptions, StreamClient
from bulkpush.emulator import Emulator, EmulatorConfig
from bulkpush.report import render_summary

from .conftest import bulkpush_cli as bulkpush

TOKEN = "dry-token"


def catalog(path: Path, n: int, *, broken: int = 0) -> Path:
    lines = [orjson.dumps({"id": f"p{i}", "title": f"product {i}"}) for i in range(n)]
    for i in range(broken):
        lines[2 * i + 1] = b'{"title": "no id"}'
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def uploads(emu: Emulator, sid: str) -> list[str]:
    return [f"{r.method} {r.path}" for r in emu.requests(sid) if r.method != "GET"]


async def test_a_dry_run_sends_nothing_and_balances(tmp_path: Path) -> None:
    async with Emulator(EmulatorConfig(tokens=frozenset({TOKEN}))) as emu:
        sid = emu.create_stream("dry", "chunked")
        source = str(catalog(tmp_path / "c.ndjson", 1000, broken=3))
        opts = PushOptions(max_products_per_request=100)
        async with StreamClient(token=TOKEN, api_url=emu.url) as client:
            report = await client.engine.push(
                client.target(sid), source, options=opts, dry_run=True
            )
        assert uploads(emu, sid) == []
        assert emu.products(sid) == {}
        assert [r.method for r in emu.requests(sid)] == ["GET"]  # the preflight only
    assert (report.read, report.accepted, report.rejected, report.not_sent) == (1000, 0, 3, 997)
    assert report.balanced
    d = report.to_dict()
    assert d["dry_run"] is True
    assert (d["would_send"], d["would_send_requests"]) == (997, 10)
    assert 0 < d["would_send_bytes"] < d["bytes_read"]  # gzip, as it would be sent
    assert (d["requests"], d["bytes_sent"], d["batches"]) == (0, 0, [])
    summary = render_summary(d)
    assert f"dry run done for stream {sid}, nothing sent" in summary
    assert re.search(r"would send +997  \(in 10 requests, ", summary)
    assert "accepted" not in summary  # nothing can be accepted in a dry run


async def test_a_real_push_is_no_dry_run(tmp_path: Path) -> None:
    async with Emulator(EmulatorConfig(tokens=frozenset({TOKEN}))) as emu:
        sid = emu.create_stream("wet", "chunked")
        async with StreamClient(token=TOKEN, api_url=emu.url) as client:
            report = await client.push(str(catalog(tmp_path / "c.ndjson", 10)), stream=sid)
    d = report.to_dict()
    assert (d["dry_run"], d["would_send"], d["accepted"]) == (False, 0, 10)


async def test_push_dry_run_on_the_command_line(tmp_path: Path) -> None:
    async with Emulator(EmulatorConfig(tokens=frozenset({TOKEN}))) as emu:
        sid = emu.create_stream("dry cli", "chunked")
        env = {**os.environ, "BULKPUSH_TOKEN": TOKEN, "BULKPUSH_API_URL": emu.url}
        good = str(catalog(tmp_path / "good.ndjson", 50))
        bad = str(catalog(tmp_path / "bad.ndjson", 50, broken=2))
        report_path = tmp_path / "report.json"

        code, out, err = await bulkpush("push", good, "--stream", sid, "--dry-run", env=env)
        assert code == 0, err
        assert "would send  50  (in 1 request," in out

        code, out, err = await bulkpush(
            "push", bad, "--stream", sid, "--dry-run", "--report", str(report_path), env=env
        )
        assert code == 1, err  # some products would be rejected
        d = orjson.loads(report_path.read_bytes())
        assert (d["dry_run"], d["would_send"], d["rejected"], d["not_sent"]) == (True, 48, 2, 48)
        assert d["read"] == d["accepted"] + d["rejected"] + d["not_sent"]

        # The preflight still runs: a wrong stream type, a missing stream are said so.
        code, _, err = await bulkpush(
            "push", good, "--stream", sid, "--stream-type", "referenced", "--dry-run", env=env
        )
        assert code == 2 and "is a chunked stream" in err
        code, _, err = await bulkpush("push", good, "--stream", "999999", "--dry-run", env=env)
        assert code == 3 and "does not exist" in err
        assert uploads(emu, sid) == [] and emu.products(sid) == {}

        no_token = {k: v for k, v in env.items() if k != "BULKPUSH_TOKEN"}
        code, _, err = await bulkpush("push", good, "--stream", sid, "--dry-run", env=no_token)
        assert code == 2 and "no token" in err and "preflight" in err
