"""The JobQueue contract, run against both backends (SQLite and Redis)."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from bulkpush import Pacer, Quota, Window
from bulkpush.errors import ConfigError
from bulkpush.targets import KINDS
from bulkpush.targets.productsup_stream import DEFAULT_API_URL
from bulkpush.worker.jobs import JobOptions, JobSpec, Target
from bulkpush.worker.queue import open_queue

from .conftest import edit_stored_spec, write_catalog

pytestmark = pytest.mark.timeout(60)


def spec(*sources: Path | str, parts: int | None = None, **opts: Any) -> JobSpec:
    return JobSpec(
        sources=tuple(str(s) for s in sources),
        target=Target(stream="42", api_url="http://127.0.0.1:1"),
        options=JobOptions(**opts),
        parts=parts,
    )


async def test_submit_splits_into_line_aligned_parts(queue_factory: Any, tmp_path: Path) -> None:
    q = queue_factory()
    cat = write_catalog(tmp_path / "c.ndjson", 1000)
    job_id = await q.submit(spec(cat, parts=4))
    view = await q.get(job_id)
    assert view is not None and view.status == "queued"
    assert len(view.parts) == 4
    assert view.parts[0].start == 0 and view.parts[-1].end == cat.stat().st_size
    for a, b in zip(view.parts, view.parts[1:], strict=False):
        assert a.end == b.start
    assert view.parts[1].first_line > 1
    assert await q.depth() == 4
    assert [v.id for v in await q.list_jobs()] == [job_id]


async def test_lease_checkpoint_complete(queue_factory: Any, tmp_path: Path) -> None:
    q = queue_factory()
    cat = write_catalog(tmp_path / "c.ndjson", 100)
    job_id = await q.submit(spec(cat, parts=2))
    a = await q.lease("w1")
    b = await q.lease("w2")
    assert a is not None and b is not None
    assert {a.part.index, b.part.index} == {0, 1}
    assert await q.lease("w3") is None
    assert (await q.get(job_id)).status == "running"
    assert await q.checkpoint(a, offset=a.part.start + 10, line=3, report={"read": 2}) == "ok"
    view = await q.get(job_id)
    pa = view.parts[a.part.index]
    assert (pa.offset, pa.line, pa.report, pa.worker) == (a.part.start + 10, 3, {"read": 2}, "w1")
    assert await q.complete(a, {"read": 50, "accepted": 50}) is False
    assert await q.complete(b, {"read": 50, "accepted": 50}) is True
    view = await q.get(job_id)
    assert view.status == "done" and view.finished is not None
    assert view.report()["read"] == 100
    assert await q.depth() == 0


async def test_expired_lease_is_reclaimed_and_resumes_at_checkpoint(
    queue_factory: Any, tmp_path: Path
) -> None:
    q = queue_factory(lease_ttl=0.5)
    cat = write_catalog(tmp_path / "c.ndjson", 100)
    job_id = await q.submit(spec(cat, parts=1))
    a = await q.lease("dead")
    assert a is not None
    assert await q.checkpoint(a, offset=200, line=9, report={"read": 8}) == "ok"
    assert await q.lease("w2") is None  # still held
    await asyncio.sleep(0.7)
    b = await q.lease("w2")
    assert b is not None and b.part.index == a.part.index
    assert (b.part.offset, b.part.line, b.part.attempts) == (200, 9, 2)
    # The old holder lost it: nothing it writes lands.
    assert await q.checkpoint(a, offset=999, line=99, report={}) == "lost"
    assert await q.heartbeat(a) == "lost"
    assert await q.complete(a, {}) is False
    assert (await q.get(job_id)).parts[0].offset == 200
    # Heartbeats keep the new lease.
    for _ in range(3):
        await asyncio.sleep(0.25)
        assert await q.heartbeat(b) == "ok"
    assert await q.lease("w3") is None


async def test_release_requeues_with_checkpoint(queue_factory: Any, tmp_path: Path) -> None:
    q = queue_factory()
    cat = write_catalog(tmp_path / "c.ndjson", 10)
    job_id = await q.submit(spec(cat, parts=1))
    a = await q.lease("w1")
    await q.checkpoint(a, offset=40, line=3, report={"read": 2})
    await q.release(a)
    assert (await q.get(job_id)).parts[0].status == "queued"
    b = await q.lease("w2")
    assert b is not None and b.part.offset == 40
    assert await q.heartbeat(a) == "lost"


async def test_cancel_stops_leases_and_running_parts(queue_factory: Any, tmp_path: Path) -> None:
    q = queue_factory()
    cat = write_catalog(tmp_path / "c.ndjson", 100)
    job_id = await q.submit(spec(cat, parts=3))
    a = await q.lease("w1")
    assert await q.cancel(job_id) is True
    assert await q.cancel("nope") is False
    assert await q.heartbeat(a) == "cancelled"
    assert await q.checkpoint(a, offset=5, line=2, report={}) == "cancelled"
    assert await q.lease("w2") is None
    await q.release(a)
    view = await q.get(job_id)
    assert view.status == "cancelled"
    assert all(p.status == "cancelled" for p in view.parts)
    assert await q.depth() == 0


async def test_failed_job_does_not_block_others(queue_factory: Any, tmp_path: Path) -> None:
    q = queue_factory()
    bad = await q.submit(spec(tmp_path / "missing.ndjson"))
    cat = write_catalog(tmp_path / "c.ndjson", 10)
    good = await q.submit(spec(cat, parts=2))
    a = await q.lease("w1")
    assert a is not None and a.part.job_id == bad and a.part.end is None
    await q.fail(a, "cannot read missing.ndjson: No such file or directory")
    view = await q.get(bad)
    assert view.status == "failed" and "missing.ndjson" in (view.error or "")
    b = await q.lease("w1")
    assert b is not None and b.part.job_id == good


async def test_spec_round_trips_and_holds_no_token(tmp_path: Path) -> None:
    s = spec(tmp_path / "x.ndjson", parts=3, rate=10.0, rejects=str(tmp_path / "r.ndjson"))
    assert JobSpec.from_json(s.to_json()) == s
    with pytest.raises(ConfigError):
        Target(stream="1", token_env="not a name")
    with pytest.raises(ConfigError):
        JobSpec(sources=("-",), target=Target(stream="1"))


async def test_an_unknown_target_kind_is_refused_at_submit(
    queue_factory: Any, tmp_path: Path
) -> None:
    q = queue_factory()
    cat = write_catalog(tmp_path / "c.ndjson", 10)
    bogus = JobSpec(sources=(str(cat),), target=Target(kind="bogus", stream="42"))
    with pytest.raises(ConfigError, match="'bogus': known kinds are productsup-stream"):
        await q.submit(bogus)
    assert await q.list_jobs() == [] and await q.depth() == 0


async def test_a_spec_stored_without_a_kind_is_a_productsup_stream(
    queue_factory: Any, queue_url: str, tmp_path: Path
) -> None:
    q = queue_factory()
    job_id = await q.submit(spec(write_catalog(tmp_path / "c.ndjson", 10)))
    edit_stored_spec(queue_url, job_id, lambda doc: doc["target"].pop("kind"))
    view = await q.get(job_id)
    assert view is not None and view.spec.target.kind == "productsup-stream"
    assert view.to_json()["target"]["kind"] == "productsup-stream"
    lease = await q.lease("w1")
    assert lease is not None and lease.spec.target.kind == "productsup-stream"


def test_a_targets_api_url_defaults_by_its_kind() -> None:
    assert KINDS["productsup-stream"].default_api_url == DEFAULT_API_URL
    target = Target(stream="1")
    assert (target.kind, target.api_url) == ("productsup-stream", DEFAULT_API_URL)
    assert Target(stream="1", api_url="http://127.0.0.1:1").api_url == "http://127.0.0.1:1"
    assert JobSpec.from_json(spec("/x").to_json())
    # A kind no longer known still parses (its job fails when a worker takes it).
    assert Target(kind="retired", stream="1", api_url="http://h").kind == "retired"


async def test_unknown_queue_scheme() -> None:
    with pytest.raises(ConfigError):
        open_queue("mysql://x")


# Slots are measured here as "now + the wait the store gave", so each carries
# the noise of one round trip to the store: bounds allow NOISE.
NOISE = 0.015


async def test_shared_pacer_spaces_requests_across_queues(queue_factory: Any) -> None:
    # Two queue objects = two workers: their pacers share one schedule.
    quota = Quota("s1", (Window(30, 1.0),))
    p1 = queue_factory().shared_pacer(quota, 20.0)
    p2 = queue_factory().shared_pacer(quota, 20.0)
    slots = [time.monotonic() + p.reserve() for p in (p1, p2) * 10]
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    # Every slot, whoever took it, is 1/20 s after the previous one.
    assert all(g > 0.05 - NOISE for g in gaps), gaps
    assert slots[-1] - slots[0] > 19 * 0.05 - NOISE
    await asyncio.sleep(max(0.0, slots[-1] - time.monotonic()))
    await p1.pause_until(time.monotonic() + 0.5)
    await asyncio.sleep(0.05)
    t1 = time.monotonic()
    await p2.acquire()
    assert time.monotonic() - t1 >= 0.35


async def test_shared_pacer_keeps_every_window_across_queues(queue_factory: Any) -> None:
    # 100/s spacing, but at most 3 per 0.5 s and 5 per 2 s, whoever sends: the
    # windows' logs live in the store, so two workers together keep them.
    quota = Quota("s2", (Window(3, 0.5), Window(5, 2.0)))
    p1 = queue_factory().shared_pacer(quota, 100.0)
    p2 = queue_factory().shared_pacer(quota, 100.0)
    slots = [time.monotonic() + p.reserve() for p in (p1, p2) * 4]
    margin = Pacer.WINDOW_MARGIN_S
    for i in range(3, len(slots)):
        assert slots[i] - slots[i - 3] > 0.5 + margin - NOISE, slots
    for i in range(5, len(slots)):
        assert slots[i] - slots[i - 5] > 2.0 + margin - NOISE, slots
    # And no slower than the windows need: the 4th goes once the first 0.5 s is over.
    assert slots[3] - slots[0] < 0.5 + margin + 0.1


async def test_a_dead_workers_part_is_reclaimed_behind_many_live_ones(
    queue_factory: Any, tmp_path: Path
) -> None:
    # Redis: XAUTOCLAIM looks at ten pending entries a call; the dead worker's
    # part is the twelfth, so the reclaim must follow the cursor.
    q = queue_factory(lease_ttl=0.5)
    cat = write_catalog(tmp_path / "c.ndjson", 1200)
    await q.submit(spec(cat, parts=12))
    live = [await q.lease(f"live{i}") for i in range(11)]
    dead = await q.lease("dead")
    assert None not in live and dead is not None
    await asyncio.sleep(0.7)
    for lease in live:
        assert await q.heartbeat(lease) == "ok"
    taken = await q.lease("new")
    assert taken is not None and taken.part.index == dead.part.index
    assert await q.heartbeat(dead) == "lost"
