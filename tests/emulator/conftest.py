"""Helpers of the emulator tests: a small HTTP client over real loopback sockets."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDict

from bulkpush.emulator import Emulator, EmulatorConfig
from tests.conftest import TEST_TOKEN, EmulatorFactory

NDJSON = "application/x-ndjson"
JSONAPI = "application/vnd.api+json"


@dataclass
class Answer:
    status: int
    headers: CIMultiDict[str]
    raw: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.raw)

    @property
    def title(self) -> str:
        return str(self.json["errors"][0]["title"])

    @property
    def upload(self) -> dict[str, Any]:
        stage: dict[str, Any] = self.json["data"]["attributes"]["stages"]["upload"]
        return stage


class Api:
    """Sends requests to one emulator with a bearer token (or none)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str | None) -> None:
        self.session = session
        self.url = url
        self.token = token

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        json: Any = None,
        ctype: str | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = "default",
    ) -> Answer:
        sent: dict[str, str] = {}
        use = self.token if token == "default" else token
        if use is not None:
            sent["Authorization"] = f"Bearer {use}"
        if json is not None:
            body = orjson.dumps(json)
            ctype = ctype or JSONAPI
        if ctype is not None:
            sent["Content-Type"] = ctype
        sent.update(headers or {})
        data: bytes | io.BytesIO | None = body
        if body is not None and len(body) > 1 << 20:
            data = io.BytesIO(body)  # aiohttp warns about large raw bytes bodies
        async with self.session.request(method, self.url + path, data=data, headers=sent) as r:
            return Answer(r.status, CIMultiDict(r.headers), await r.read())

    async def create_stream(self, name: str, stream_type: str = "chunked") -> Answer:
        return await self.call(
            "POST",
            "/streams",
            json={"data": {"type": "stream", "attributes": {"name": name, "type": stream_type}}},
        )

    async def upload(self, sid: str, body: bytes, ctype: str = NDJSON, **kwargs: Any) -> Answer:
        return await self.call("POST", f"/streams/{sid}/products", body=body, ctype=ctype, **kwargs)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


@pytest.fixture
def api(emulator: Emulator, session: aiohttp.ClientSession) -> Api:
    """A client of the ``emulator`` fixture with the accepted token."""
    return Api(session, emulator.url, TEST_TOKEN)


@pytest.fixture
async def free_emulator(emulator_factory: EmulatorFactory) -> Emulator:
    """An emulator without rate limits, for tests that send many requests quickly."""
    return await emulator_factory(
        EmulatorConfig(
            tokens=frozenset({TEST_TOKEN}), products_rate=None, batches_rate=None, other_rate=None
        )
    )


@pytest.fixture
def free_api(free_emulator: Emulator, session: aiohttp.ClientSession) -> Api:
    """A client of ``free_emulator``."""
    return Api(session, free_emulator.url, TEST_TOKEN)
