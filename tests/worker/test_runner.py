"""The worker loop in-process against the emulator, on both queue backends."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from bulkpush._records import Chunk, Outcome, Record, Rejection
from bulkpush.emulator import EmulatorConfig
from bulkpush.report import Report
from bulkpush.worker.allow import Allowances
from bulkpush.worker.jobs import JOB_STATUSES, JobOptions, JobSpec, Target
from bulkpush.worker.queue import JobQueue, Lease, LeaseState
from bulkpush.worker.runner import Watermark, Worker

from ..conftest import TEST_TOKEN
from .conftest import allowances, edit_stored_spec, write_catalog

pytestmark = pytest.mark.timeout(90)

FAST = EmulatorConfig(tokens=frozenset({TEST_TOKEN}), products_rate=None, other_rate=None)


async def wait_status(
    q: Any, job_id: str, statuses: set[str], task: Any = None, limit: float = 30
) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if task is not None and task.done():
            task.result()  # the worker died: show why
        view = await q.get(job_id)
        if view is not None and view.status in statuses:
            return view
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} not {statuses}: {view and view.to_json()}")


async def run_worker(
    q: Any,
    job_id: str,
    *,
    limit: float = 30,
    worker: Worker | None = None,
    allow: Allowances | None = None,
) -> Any:
    """Run a worker on ``q`` until ``job_id`` is done or failed; stop it; return the job.

    Without ``worker``, one with ``$BP_TEST_TOKEN`` set and the allowances ``allow``.
    """
    worker = worker or Worker(
        cast(JobQueue, q), poll_s=0.05, environ={"BP_TEST_TOKEN": TEST_TOKEN}, allow=allow
    )
    task = asyncio.create_task(worker.run())
    try:
        return await wait_status(q, job_id, {"done", "failed"}, task, limit)
    finally:
        worker.stop()
        with contextlib.suppress(TimeoutError):  # keep the test's own failure in view
            await asyncio.wait_for(task, 10)


def job(url: str, *sources: Path, token_env: str = "BP_TEST_TOKEN", **opts: Any) -> JobSpec:
    parts = opts.pop("parts", None)
    return JobSpec(
        sources=tuple(str(s) for s in sources),
        target=Target(stream=opts.pop("stream"), api_url=url, token_env=token_env),
        options=JobOptions(rate=opts.pop("rate", 500.0), **opts),
        parts=parts,
    )


async def test_job_with_parts_lands_every_product_once(
    queue_factory: Any, emulator_factory: Any, tmp_path: Path
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("worker-runner")
    cat = write_catalog(tmp_path / "c.ndjson", 5000, bad_every=1000)
    q = queue_factory()
    rejects = tmp_path / "rejects.ndjson"
    report_path = tmp_path / "report.json"
    job_id = await q.submit(
        job(
            emu.url,
            cat,
            stream=sid,
            parts=3,
            max_products=300,
            rejects=str(rejects),
            report=str(report_path),
        )
    )
    worker = Worker(
        q, poll_s=0.05, environ={"BP_TEST_TOKEN": TEST_TOKEN}, allow=allowances(emu.url, tmp_path)
    )
    view = await run_worker(q, job_id, worker=worker)
    assert view.status == "done", view.error
    products = emu.products(sid)
    assert len(products) == 4995
    assert all(n == 1 for n in emu.upload_counts(sid).values())
    report = view.report()
    assert (report["read"], report["accepted"], report["rejected"]) == (5000, 4995, 5)
    assert report["balanced"] and report["not_sent"] == 0
    lines = {e["line"] for g in report["errors"] for e in g["examples"]}
    assert lines == {1, 1001, 2001, 3001, 4001}  # source lines, across parts
    rejected = [orjson.loads(x) for x in rejects.read_bytes().splitlines()]
    assert len(rejected) == 5
    assert orjson.loads(report_path.read_bytes())["accepted"] == 4995
    assert not list(tmp_path.glob("rejects.ndjson.part*"))  # noqa: ASYNC240
    # jobs show --json: the documented keys; its report has every key of push --report.
    doc = orjson.loads(orjson.dumps(view.to_json()))
    assert set(doc) == {
        "id", "status", "error", "created", "finished", "sources", "target", "progress",
        "report", "parts",
    }  # fmt: skip
    assert doc["status"] in JOB_STATUSES and doc["status"] == "done"
    assert set(Report().to_dict()) <= set(doc["report"])
    assert doc["target"] == {
        "kind": "productsup-stream",
        "stream": sid,
        "api_url": emu.url,
        "token_env": "BP_TEST_TOKEN",
    }
    assert doc["progress"] == {"parts": 3, "parts_done": 3, "parts_running": 0, "fraction": 1.0}
    assert [p["status"] for p in doc["parts"]] == ["done"] * 3
    # The worker's metrics, per stream.
    metrics = worker.metrics.render()[0].decode()
    assert f'bulkpush_products_total{{result="accepted",stream="{sid}"}} 4995.0' in metrics
    assert f'bulkpush_products_total{{result="rejected",stream="{sid}"}} 5.0' in metrics
    assert f'bulkpush_parts_total{{status="done",stream="{sid}"}} 3.0' in metrics
    assert f'bulkpush_throttled_total{{stream="{sid}"}} 0.0' in metrics


async def test_failing_job_does_not_stop_others(
    queue_factory: Any, emulator_factory: Any, tmp_path: Path
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("worker-failing")
    q = queue_factory()
    missing = await q.submit(job(emu.url, tmp_path / "missing.ndjson", stream=sid))
    no_token = await q.submit(
        job(emu.url, write_catalog(tmp_path / "a.ndjson", 10), stream=sid, token_env="NOPE_X")
    )
    good = await q.submit(job(emu.url, write_catalog(tmp_path / "b.ndjson", 100), stream=sid))
    worker = Worker(
        q,
        poll_s=0.05,
        environ={"BP_TEST_TOKEN": TEST_TOKEN},
        token_wait_s=0.3,
        allow=allowances(emu.url, tmp_path, tokens=("BP_TEST_TOKEN", "NOPE_X")),
    )
    task = asyncio.create_task(worker.run())
    try:
        view = await wait_status(q, good, {"done", "failed"}, task)
        nt = await wait_status(q, no_token, {"failed"}, task)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
    assert view.status == "done"
    bad = await q.get(missing)
    assert bad.status == "failed" and "missing.ndjson" in bad.error
    assert "No such file" in bad.error or "no such file" in bad.error
    assert "NOPE_X is not set on the workers that took the job" in nt.error
    assert len(emu.products(sid)) == 100


async def test_a_queued_job_of_an_unknown_kind_fails_alone(
    queue_factory: Any, queue_url: str, emulator_factory: Any, tmp_path: Path
) -> None:
    # Queued when its kind was known (or by hand): the worker fails that job only.
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("worker-unknown-kind")
    q = queue_factory()
    retired = await q.submit(job(emu.url, write_catalog(tmp_path / "a.ndjson", 10), stream=sid))
    edit_stored_spec(queue_url, retired, lambda doc: doc["target"].update(kind="retired-kind"))
    good = await q.submit(job(emu.url, write_catalog(tmp_path / "b.ndjson", 100), stream=sid))
    view = await run_worker(q, good, allow=allowances(emu.url, tmp_path))
    assert view.status == "done"
    bad = await q.get(retired)
    assert bad.status == "failed"
    assert (bad.error or "").endswith(
        ": unknown target kind 'retired-kind': known kinds are productsup-stream"
    )
    assert bad.to_json()["target"]["kind"] == "retired-kind"
    assert len(emu.products(sid)) == 100


def test_watermark_moves_over_the_contiguous_prefix_only() -> None:
    wm = Watermark(offset=0, line=1, committed=Report())
    recs = [Record("s", i + 1, i * 10, b'{"id":"%d"}' % i) for i in range(6)]
    for r in recs:
        wm.seen(r)
    c1 = Chunk(1, recs[3:6], 30)
    assert not wm.account(Outcome(chunk=c1, status=200, accepted=3, attempts=1))
    assert wm.offset == 0
    c0 = Chunk(0, [recs[0], recs[2]], 20)
    assert wm.account(Outcome(chunk=c0, status=200, accepted=2, attempts=1))
    assert wm.offset == 1  # record 1 is not accounted yet
    assert wm.account(Rejection(recs[1], "client", "bad"))
    assert (wm.offset, wm.line) == (51, 7)
    assert wm.committed.read == 6 and wm.committed.accepted == 5


async def test_stop_mid_part_sends_what_was_read_and_gives_the_part_back(
    queue_factory: Any, emulator_factory: Any, tmp_path: Path
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("worker-drain")
    cat = write_catalog(tmp_path / "c.ndjson", 20_000)
    q = queue_factory()
    job_id = await q.submit(job(emu.url, cat, stream=sid, parts=1, max_products=100))
    worker = Worker(
        q, poll_s=0.05, environ={"BP_TEST_TOKEN": TEST_TOKEN}, allow=allowances(emu.url, tmp_path)
    )
    lease = await q.lease(worker.id)
    assert lease is not None
    task = asyncio.create_task(worker.run_part(lease))
    # Stop as soon as the first step of the reader is counted: one more step may be read.
    while (run := worker._current) is None or run.pipeline is None or not run.pipeline.report.read:
        assert not task.done()
        await asyncio.sleep(0)
    worker.stop()
    await asyncio.wait_for(task, 30)
    part = (await q.get(job_id)).parts[0]
    assert part.status == "queued" and part.start < part.offset < part.end
    sent = len(emu.products(sid))
    assert 0 < sent == part.report["accepted"] == part.report["read"] < 20_000
    assert part.line == sent + 1  # the checkpoint's line is the next one to read
    view = await run_worker(q, job_id, allow=allowances(emu.url, tmp_path))
    assert view.status == "done"
    assert len(emu.products(sid)) == 20_000
    assert set(emu.upload_counts(sid).values()) == {1}  # nothing sent twice
    report = view.report()
    assert (report["read"], report["accepted"]) == (20_000, 20_000) and report["balanced"]


async def test_a_resumed_parts_rejects_are_merged_once(
    queue_factory: Any, emulator_factory: Any, tmp_path: Path
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("worker-resumed-rejects")
    cat = write_catalog(tmp_path / "c.ndjson", 20_000, bad_every=500)
    rejects = tmp_path / "rejects.ndjson"
    q = queue_factory()
    job_id = await q.submit(
        job(emu.url, cat, stream=sid, parts=1, max_products=100, rejects=str(rejects))
    )
    worker = Worker(
        q, poll_s=0.05, environ={"BP_TEST_TOKEN": TEST_TOKEN}, allow=allowances(emu.url, tmp_path)
    )
    lease = await q.lease(worker.id)
    assert lease is not None
    task = asyncio.create_task(worker.run_part(lease))
    while (run := worker._current) is None or run.pipeline is None or not run.pipeline.report.read:
        assert not task.done()
        await asyncio.sleep(0)
    worker.stop()
    await asyncio.wait_for(task, 30)
    part = (await q.get(job_id)).parts[0]
    assert part.status == "queued" and part.line > 1
    # Each attempt's file is named by the line it started at.
    assert [f.name for f in tmp_path.glob("rejects.ndjson.part*")] == [  # noqa: ASYNC240
        "rejects.ndjson.part00000-1.line1"
    ]
    view = await run_worker(q, job_id, allow=allowances(emu.url, tmp_path))
    assert view.status == "done"
    lines = [orjson.loads(x)["line"] for x in rejects.read_bytes().splitlines()]
    assert sorted(lines) == [n + 1 for n in range(0, 20_000, 500)]  # each once
    assert view.report()["rejected"] == 40
    assert not list(tmp_path.glob("rejects.ndjson.part*"))  # noqa: ASYNC240


class LosesOneCancel:
    """A queue whose first checkpoint is slow and loses the cancellation that lands in it.

    As redis-py does on Python 3.11: it sends with ``asyncio.wait_for``, which
    returns the call's result, dropping the cancel, when both land at once.
    """

    def __init__(self, inner: JobQueue) -> None:
        self._inner = inner
        self.lost = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def checkpoint(
        self, lease: Lease, *, offset: int, line: int, report: dict[str, Any]
    ) -> LeaseState:
        if not self.lost:
            try:
                await asyncio.sleep(60)  # until the part's end cancels the keeper
            except asyncio.CancelledError:
                self.lost += 1
        return await self._inner.checkpoint(lease, offset=offset, line=line, report=report)


async def test_a_lost_cancellation_does_not_keep_a_finished_part_running(
    queue_factory: Any, emulator_factory: Any, tmp_path: Path
) -> None:
    # The flaky 1M test's failure, made certain: the part's keeper missed
    # its cancellation in a queue call and heartbeated forever, so the part
    # stayed "running" one line short of its end and the job never ended.
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("worker-lost-cancel")
    cat = write_catalog(tmp_path / "c.ndjson", 3000)
    q = LosesOneCancel(queue_factory())
    job_id = await q.submit(job(emu.url, cat, stream=sid, parts=1, max_products=100))
    view = await run_worker(q, job_id, limit=20, allow=allowances(emu.url, tmp_path))
    assert q.lost == 1
    assert view.status == "done" and view.report()["accepted"] == 3000


async def test_whole_file_parts_account_every_record(
    queue_factory: Any, emulator_factory: Any, tmp_path: Path
) -> None:
    # A CSV row the reader itself rejects, and JSON records (all at offset -1):
    # the part's committed report still counts each record once.
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("worker-whole-files")
    csv = tmp_path / "c.csv"
    csv.write_bytes(b"id,t\n1,a\n2,b,extra\n3,c\n" + b"".join(b"%d,x\n" % i for i in range(4, 500)))
    js = tmp_path / "c.json"
    js.write_bytes(orjson.dumps([{"id": f"j{i}"} for i in range(700)] + [{"no": "id"}]))
    q = queue_factory()
    job_id = await q.submit(job(emu.url, csv, js, stream=sid, max_products=100))
    view = await run_worker(q, job_id, allow=allowances(emu.url, tmp_path))
    assert view.status == "done", view.error
    report = view.report()
    assert report["read"] == report["accepted"] + report["rejected"] and report["balanced"]
    assert report["accepted"] == len(emu.products(sid))
    assert (report["read"], report["accepted"], report["rejected"]) == (1200, 1198, 2)
