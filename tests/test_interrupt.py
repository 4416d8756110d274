"""Interrupted runs keep their report: Ctrl-C/SIGTERM stop reading, let the requests in
flight end (a grace period), write the report and the rejects file, exit 4; a second
signal stops at once and still writes them; no temporary file remains."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import orjson
import pytest

from bulkpush import Interrupted, Outcome, PushOptions, RunStopped, StreamClient
from bulkpush.emulator import Emulator, EmulatorConfig, Faults
from bulkpush.samples import iter_products

TOKEN = "interrupt-token"


def leftovers(directory: Path) -> list[str]:
    """Temporary files left in ``directory``."""
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def names(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def catalog(path: Path, n: int) -> Path:
    lines = list(iter_products(n, seed=11, size="small"))
    lines[3] = b'{"title":"no id"}'  # one client rejection: the rejects file has content
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


async def test_interrupt_lets_the_requests_in_flight_end_and_stops(tmp_path: Path) -> None:
    async with Emulator(EmulatorConfig(tokens=frozenset({TOKEN}))) as emu:
        sid = emu.create_stream("interrupted")
        emu.set_faults(sid, Faults(latency_s=0.3))
        opts = PushOptions(max_products_per_request=50, rejects_path=str(tmp_path / "r.ndjson"))
        async with StreamClient(token=TOKEN, api_url=emu.url) as client:
            pipeline = await client.open_push(
                str(catalog(tmp_path / "c.ndjson", 5000)), stream=sid, options=opts
            )
            with pytest.raises(RunStopped) as info:
                async for event in pipeline.events():
                    if isinstance(event, Outcome):
                        pipeline.interrupt("interrupted (test)", grace_s=5.0)
        assert isinstance(info.value.cause, Interrupted)
        report = info.value.report
        assert report.read == report.accepted + report.rejected + report.not_sent
        assert report.not_sent > 0
        # The requests in flight ended within the grace period: every product the
        # API stored was answered and counted accepted, no more, no less.
        assert report.accepted == len(emu.products(sid))
        assert report.to_dict()["stopped"] == "interrupted (test)"
    assert leftovers(tmp_path) == [] and "r.ndjson" in names(tmp_path)


async def run_cli_and_signal(
    tmp_path: Path, latency_s: float, signals: list[signal.Signals]
) -> tuple[int, str, dict[str, object], int]:
    async with Emulator(EmulatorConfig(tokens=frozenset({TOKEN}))) as emu:
        sid = emu.create_stream("cli-interrupted")
        emu.set_faults(sid, Faults(latency_s=latency_s))
        src = catalog(tmp_path / "c.ndjson", 20_000)
        report_path, rejects = tmp_path / "report.json", tmp_path / "rejects.ndjson"
        env = {**os.environ, "BULKPUSH_TOKEN": TOKEN, "BULKPUSH_API_URL": emu.url}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bulkpush", "push", str(src), "--stream", sid, "-q",
            "--max-products", "100", "--report", str(report_path), "--rejects", str(rejects),
            env=env, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        for _ in range(300):  # until the preflight is answered (bounded: 30 s)
            if emu.requests(sid):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # uploads are under way
        for sig in signals:
            proc.send_signal(sig)
            await asyncio.sleep(0.2)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        assert leftovers(tmp_path) == [] and rejects.name in names(tmp_path)
        stored = len(emu.products(sid))
        return proc.returncode, err.decode(), orjson.loads(report_path.read_bytes()), stored


async def test_ctrl_c_writes_the_report_and_exits_4(tmp_path: Path) -> None:
    code, err, report, stored = await run_cli_and_signal(tmp_path, 0.3, [signal.SIGINT])
    assert code == 4, err
    assert "stopping" in err and "interrupted (SIGINT)" in err
    assert report["read"] == report["accepted"] + report["rejected"] + report["not_sent"]
    assert report["not_sent"] > 0 and report["stopped"] == "interrupted (SIGINT)"
    assert report["accepted"] == stored
    assert "Traceback" not in err


async def test_a_second_sigterm_stops_at_once_and_still_writes_the_report(
    tmp_path: Path,
) -> None:
    # Answers take 5 s: the first signal's grace would wait; the second does not.
    code, err, report, _ = await run_cli_and_signal(tmp_path, 5.0, [signal.SIGTERM, signal.SIGTERM])
    assert code == 4, err
    assert report["read"] == report["accepted"] + report["rejected"] + report["not_sent"]
    assert report["not_sent"] > 0 and report["accepted"] == 0
    assert report["stopped"] == "interrupted (SIGTERM)"


@pytest.mark.timeout(15)  # the queued rate slots alone would take over 30 s
async def test_an_interrupt_does_not_wait_out_the_rate_slots_of_queued_requests(
    tmp_path: Path,
) -> None:
    # 30 requests/s and small requests: hundreds of chunks fit the in-flight budget
    # and wait for their rate slot. Interrupted, they are not sent and the run ends
    # at once, not after the grace period (which here is longer than the test's
    # timeout) or after the seconds their rate slots would take.
    async with Emulator(EmulatorConfig(tokens=frozenset({TOKEN}))) as emu:
        sid = emu.create_stream("interrupted-queue")
        opts = PushOptions(max_products_per_request=20)
        async with StreamClient(token=TOKEN, api_url=emu.url) as client:
            pipeline = await client.open_push(
                str(catalog(tmp_path / "c.ndjson", 20_000)), stream=sid, options=opts
            )
            answered = 0
            with pytest.raises(RunStopped) as info:
                async for event in pipeline.events():
                    if isinstance(event, Outcome) and event.accepted:
                        answered += 1
                        if answered == 30:  # a second of uploads: the queue is full
                            pipeline.interrupt("interrupted (test)", grace_s=600.0)
        report = info.value.report
        assert report.read == report.accepted + report.rejected + report.not_sent
        assert report.not_sent > 20 * 30  # more than a second of rate slots was queued
        assert report.accepted == len(emu.products(sid))
