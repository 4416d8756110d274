"""A second target, for the engine's tests: a JSON API that answers per item.

``ItemsTarget`` is what a maintainer adding a target writes: a preflight, a
plan, the upload request, and how to read answers. ``ItemsServer`` is the
fake API it talks to over loopback: ``POST /items`` takes a JSON array of
at most ``MAX_ITEMS`` objects and answers ``{"results": [{"ok": bool,
"error": str}]}`` per item (an item needs a non-empty string ``name``);
requests are counted per API key (``X-Api-Key``) in fixed windows, like
Product-Live's 5 per second and 50 per minute, and answered 429 with
``Retry-After`` past them; ``fail_next`` scripts 503s and dropped connections.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from bulkpush import (
    AuthError,
    CompressionOptions,
    Delivered,
    Executor,
    Fatal,
    ItemError,
    Plan,
    PushOptions,
    Quota,
    Request,
    Response,
    Retry,
    Verdict,
    Window,
)
from bulkpush._retry import error_for_status

MAX_ITEMS = 25
PUBLISHED = (Window(5, 1.0), Window(50, 60.0))


class ItemsTarget:
    """Create-or-update items at ``/items`` under one API key."""

    kind = "items-test"

    def __init__(self, api_key: str, *, windows: tuple[Window, ...] = PUBLISHED) -> None:
        self.api_key = api_key
        self.windows = windows

    async def prepare(
        self, executor: Executor, *, options: PushOptions, total_bytes: int | None
    ) -> Plan:
        # The preflight: the key is valid (401 fails the push before reading).
        await executor.execute(Request(method="GET", path="/me"))
        return Plan(
            destination="items",
            label="the items API",
            quota=Quota(f"items:{self.api_key}", self.windows),
            max_count=min(options.max_products_per_request or MAX_ITEMS, MAX_ITEMS),
            max_bytes=1_000_000,
            max_record_bytes=10_000,
            body_format="json",
            compression=CompressionOptions(codec="none"),
        )

    def upload(self, body: bytes, plan: Plan) -> Request:
        return Request(
            method="POST", path="/items", body=body, headers={"Content-Type": "application/json"}
        )

    def classify(self, resp: Response) -> Verdict:
        body = resp.json()
        if resp.status == 200 and isinstance(body, dict) and isinstance(body.get("results"), list):
            errors = tuple(
                ItemError(str(r.get("error") or "rejected"), position=i)
                for i, r in enumerate(body["results"], 1)
                if isinstance(r, dict) and not r.get("ok")
            )
            return Delivered(200, errors)
        if resp.status == 429:
            err = error_for_status(resp)
            return Retry("throttled", err, after=err.retry_after)
        if resp.status >= 500:
            return Retry("transient", error_for_status(resp))
        if resp.status == 401:
            return Fatal(error_for_status(resp, AuthError))
        return Fatal(error_for_status(resp))


@dataclass
class ItemsServer:
    """The fake items API (see the module docstring). ``stored`` maps ids to items."""

    keys: frozenset[str] = frozenset({"key-1"})
    windows: tuple[Window, ...] = PUBLISHED
    stored: dict[str, Any] = field(default_factory=dict)
    requests: int = 0
    throttled: int = 0
    fail_next: list[str] = field(default_factory=list)  # "503" or "drop", in order
    counts: dict[tuple[str, float, int], int] = field(default_factory=dict)
    url: str = ""
    _runner: web.AppRunner | None = None

    def _over_quota(self, key: str) -> float | None:
        now = time.time()
        for w in self.windows:
            slot = (key, w.period_s, math.floor(now / w.period_s))
            if self.counts.get(slot, 0) >= w.limit:
                return (slot[2] + 1) * w.period_s - now
        for w in self.windows:
            slot = (key, w.period_s, math.floor(now / w.period_s))
            self.counts[slot] = self.counts.get(slot, 0) + 1
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        key = request.headers.get("X-Api-Key", "")
        if key not in self.keys:
            return web.json_response({"errors": [{"title": "Unknown API key"}]}, status=401)
        if request.path == "/me":
            return web.json_response({"key": "ok"})
        self.requests += 1
        wait = self._over_quota(key)
        if wait is not None:
            self.throttled += 1
            return web.Response(status=429, headers={"Retry-After": f"{wait:.3f}"})
        body = await request.read()
        if self.fail_next:
            fault = self.fail_next.pop(0)
            if fault == "drop":
                assert request.transport is not None
                request.transport.close()
                await asyncio.sleep(0)
                raise ConnectionResetError
            return web.json_response({"errors": [{"title": "try later"}]}, status=503)
        items = orjson.loads(body)
        if not isinstance(items, list) or len(items) > MAX_ITEMS:
            return web.json_response({"errors": [{"title": "bad batch"}]}, status=400)
        results = []
        for item in items:
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and name:
                self.stored[str(item["id"])] = item
                results.append({"ok": True})
            else:
                results.append({"ok": False, "error": "an item needs a name"})
        return web.json_response({"results": results})

    async def __aenter__(self) -> ItemsServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
