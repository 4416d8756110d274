"""The engine's property tests, run on every target: the Stream API (against the
emulator) and a small per-item JSON API (``items_api``), over loopback.

For each: every product read ends in exactly one bucket and the server holds
exactly the accepted ones (whatever transient faults were injected: retries);
every product the API rejected is named with the API's reason; and a server
enforcing the target's quota windows never answers 429 (quotas).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkpush import (
    AuthError,
    Engine,
    HttpTransport,
    PushOptions,
    Report,
    RetryPolicy,
    Secret,
    Target,
    ValidationOptions,
    Window,
)
from bulkpush.emulator import Emulator, EmulatorConfig, Faults
from bulkpush.targets.productsup_stream import StreamTarget

from .items_api import ItemsServer, ItemsTarget

FAST = RetryPolicy(backoff_base_s=0.005, backoff_max_s=0.02, max_attempts=12, deadline_s=60.0)


class World(Protocol):
    """One target and its server, seen the same way by the tests."""

    engine: Engine
    target: Target

    def line(self, key: str, good: bool) -> bytes: ...
    def stored(self) -> set[str]: ...
    def inject(self, faults: int, rng: random.Random) -> None: ...
    def throttled(self) -> int: ...


@dataclass
class StreamWorld:
    engine: Engine
    target: Target
    emu: Emulator
    sid: str

    def line(self, key: str, good: bool) -> bytes:
        if good:
            return orjson.dumps({"id": key, "title": f"product {key}"})
        return b'{"id":"%s","title":"x","price":15", "size":"XL"}' % key.encode()

    def stored(self) -> set[str]:
        return set(self.emu.products(self.sid))

    def inject(self, faults: int, rng: random.Random) -> None:
        if faults:
            self.emu.set_faults(self.sid, Faults(error_rate=0.25, drop_rate=0.1))

    def throttled(self) -> int:
        return sum(1 for r in self.emu.requests(self.sid) if r.status == 429)


@dataclass
class ItemsWorld:
    engine: Engine
    target: Target
    server: ItemsServer

    def line(self, key: str, good: bool) -> bytes:
        return orjson.dumps({"id": key, "name": f"item {key}" if good else ""})

    def stored(self) -> set[str]:
        return set(self.server.stored)

    def inject(self, faults: int, rng: random.Random) -> None:
        self.server.fail_next.extend(rng.choice(["503", "drop"]) for _ in range(faults))

    def throttled(self) -> int:
        return self.server.throttled


# Scaled-down windows (the published ones are 5/s and 50/min): two windows,
# the longer one tighter than the shorter one's rate, as Product-Live's.
ITEMS_WINDOWS = (Window(5, 0.25), Window(8, 1.0))


@asynccontextmanager
async def world(kind: str) -> AsyncIterator[World]:
    if kind == "stream":
        async with Emulator(EmulatorConfig(tokens=frozenset({"tok"}))) as emu:
            sid = emu.create_stream("engine-test", "chunked")
            transport = HttpTransport(emu.url, auth_headers={"Authorization": Secret("Bearer tok")})
            async with Engine(transport, retry=FAST) as engine:
                yield StreamWorld(engine, StreamTarget(sid), emu, sid)
    else:
        async with ItemsServer(windows=ITEMS_WINDOWS) as server:
            transport = HttpTransport(server.url, auth_headers={"X-Api-Key": Secret("key-1")})
            async with Engine(transport, retry=FAST) as engine:
                yield ItemsWorld(engine, ItemsTarget("key-1", windows=ITEMS_WINDOWS), server)


def options(kind: str, per_request: int) -> PushOptions:
    return PushOptions(
        # Light: the client leaves the products the API refuses to the API.
        validation=ValidationOptions(level="light"),
        max_products_per_request=per_request,
        retry=FAST,
        # The Stream API names one product per message: find the others.
        pinpoint_rejects=kind == "stream",
    )


async def push_catalog(
    kind: str, goods: list[bool], per_request: int, faults: int, seed: int
) -> tuple[Report, set[str], int]:
    async with world(kind) as w:
        w.inject(faults, random.Random(seed))
        lines = [w.line(f"p{i}", good) for i, good in enumerate(goods)]
        report = await w.engine.push(w.target, lines, options=options(kind, per_request))
        return report, w.stored(), w.throttled()


@pytest.mark.parametrize("kind", ["stream", "items"])
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    goods=st.lists(st.booleans(), min_size=1, max_size=40),
    per_request=st.integers(1, 9),
    faults=st.integers(0, 4),
    seed=st.integers(0, 1000),
)
def test_every_product_ends_in_one_bucket_and_the_server_holds_the_accepted(
    kind: str, goods: list[bool], per_request: int, faults: int, seed: int
) -> None:
    report, stored, _ = asyncio.run(push_catalog(kind, goods, per_request, faults, seed))
    good_ids = {f"p{i}" for i, good in enumerate(goods) if good}
    assert report.read == len(goods)
    assert report.read == report.accepted + report.rejected + report.not_sent
    assert report.not_sent == 0
    assert report.accepted == len(good_ids) and stored == good_ids
    # Every refused product is named, with its line and the API's reason.
    d = report.to_dict()
    named = {ex["line"] for e in d["errors"] for ex in e["examples"]}
    bad_lines = {i + 1 for i, good in enumerate(goods) if not good}
    assert report.rejected == len(bad_lines)
    assert not d.get("unattributed")
    if len(bad_lines) <= 5:  # the report keeps 5 examples per message
        assert named == bad_lines


@pytest.mark.parametrize("kind", ["stream", "items"])
async def test_a_server_enforcing_the_quota_never_throttles(kind: str) -> None:
    # 20 requests: more than the items quota's longer window (8 per second)
    # and, on the stream, spaced at the published 30 per second.
    report, stored, throttled = await push_catalog(kind, [True] * 40, 2, 0, 0)
    assert report.accepted == 40 and len(stored) == 40
    assert report.requests >= 20
    assert throttled == 0 and report.throttled == 0


@pytest.mark.parametrize("kind", ["stream", "items"])
async def test_a_refused_key_fails_before_reading(kind: str) -> None:
    read: list[Any] = []

    def catalog() -> Any:
        read.append(1)
        yield {"id": "1", "name": "x"}

    async with world(kind) as w:
        bad = HttpTransport(
            w.engine.transport.base_url,
            auth_headers={"Authorization": Secret("Bearer nope"), "X-Api-Key": Secret("nope")},
        )
        async with Engine(bad, retry=FAST) as engine:
            with pytest.raises(AuthError):
                await engine.push(w.target, catalog(), options=options(kind, 5))
    assert read == []
