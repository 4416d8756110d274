"""The preflight (GET /streams/{id}) follows the push's own retry policy."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bulkpush import PushOptions, RetriesExhausted, RetryPolicy, StreamClient


@pytest.fixture
async def down() -> AsyncIterator[tuple[str, list[str]]]:
    """A server whose every answer is 503."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        return web.json_response({"errors": [{"title": "down"}]}, status=503)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()


async def test_the_preflight_gives_up_after_the_pushs_attempts(
    down: tuple[str, list[str]],
) -> None:
    url, seen = down
    retry = RetryPolicy(max_attempts=3, backoff_base_s=0.001, backoff_max_s=0.002)
    async with StreamClient(token="t", api_url=url) as client:
        with pytest.raises(RetriesExhausted) as info:
            await client.push([{"id": "1"}], stream="7", options=PushOptions(retry=retry))
    assert info.value.attempts == 3
    assert seen == ["GET /streams/7"] * 3
