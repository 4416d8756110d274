"""The HTTP layer and the Stream API target under hostile or broken networks.

Every test runs over real loopback servers: the emulator, a scripted aiohttp
app, or a TLS server with a throwaway CA (``trustme``). Each proves one
hardening rule: anomalous 2xx answers are never counted accepted, TLS
failures are fatal, failures say what and where once, the API's own words
reach the message, answers are read up to a cap, proxies come from the
environment and a clear-text token is warned about, and a lost create is
recovered without creating twice.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import orjson
import pytest
import trustme
from aiohttp import web
from yarl import URL

from bulkpush import RetryPolicy
from bulkpush._http import HttpTransport, Request, Secret, TransportOptions, env_proxy, translate
from bulkpush._retry import Executor
from bulkpush._validation import ValidationOptions
from bulkpush.client import PushOptions, StreamClient
from bulkpush.emulator import Emulator
from bulkpush.errors import (
    APIError,
    Conflict,
    RequestTimeout,
    ResponseTooLarge,
    RetriesExhausted,
    RunStopped,
    StreamDisabled,
    TLSError,
    TransportError,
)
from bulkpush.samples import iter_products
from bulkpush.targets.productsup_stream import StreamManager

pytestmark = pytest.mark.timeout(60)

TOKEN = "tok-hardening-S3CR3T"
FAST = RetryPolicy(max_attempts=3, backoff_base_s=0.001, backoff_max_s=0.002)
# Backoffs long enough that a second attempt would blow the time bound of a test.
SLOW = RetryPolicy(max_attempts=8, backoff_base_s=5.0, backoff_max_s=5.0)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Start a loopback aiohttp app answering every path with ``handler``; returns its URL."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler, *, ssl_context: ssl.SSLContext | None = None) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = runner.addresses[0][1]
        return f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed: nothing listens there now


def stream_doc(sid: str, name: str = "main catalog", type: str = "chunked") -> dict[str, Any]:
    return {"id": sid, "type": "stream", "attributes": {"name": name, "type": type}}


# --- 1. a 2xx that is not the batch document ------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("text/html", b"<html>Welcome to the captive portal</html>"), (None, b'{"ok": true}')],
)
async def test_upload_2xx_without_a_batch_document_is_never_counted_accepted(
    serve: Callable[..., Awaitable[str]], content_type: str | None, body: bytes
) -> None:
    uploads: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        if request.method == "GET" and request.path == "/streams/1":
            return web.json_response({"data": stream_doc("1")})
        uploads.append(1)
        if content_type is None:
            return web.json_response(orjson.loads(body), status=202)
        return web.Response(status=202, body=body, content_type=content_type)

    url = await serve(handler)
    products = list(iter_products(50, seed=1, size="small"))
    async with StreamClient(token=TOKEN, api_url=url, retry=FAST) as client:
        with pytest.raises(RunStopped) as info:
            await client.push(products, stream="1", options=PushOptions(retry=FAST))
    report = info.value.report
    assert report.accepted == 0 and report.not_sent == 50
    assert len(uploads) == 3  # retried as transient, then stopped
    assert isinstance(info.value.cause, RetriesExhausted)
    assert (
        "POST /streams/1/products answered 202 with a body that is not the Stream API's "
        "batch document" in str(info.value.cause)
    )
    assert "batch document" in (report.stopped or "")


async def test_the_emulators_upload_answers_still_count_accepted_and_rejected(
    emulator: Emulator,
) -> None:
    sid = emulator.create_stream("real answers", "chunked")
    products = list(iter_products(40, seed=2, size="small"))
    products[3] = {"title": "no id"}  # the API rejects it: a 202 with the reason
    opts = PushOptions(max_products_per_request=20, validation=ValidationOptions(level="light"))
    async with StreamClient(token="test-token", api_url=emulator.url, retry=FAST) as client:
        report = await client.push(products, stream=sid, options=opts)
    assert report.accepted == 39 and report.rejected == 1 and report.not_sent == 0


# --- 2. TLS failures are fatal ------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_an_untrusted_certificate_fails_once_and_fast(
    serve: Callable[..., Awaitable[str]], ca: trustme.CA, tmp_path: Path
) -> None:
    hits: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        hits.append(1)
        return web.json_response({"data": {}})

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    url = await serve(handler, ssl_context=server_ctx)
    port = URL(url).port
    get = Request(method="GET", path="/streams")
    started = time.monotonic()
    async with HttpTransport(url) as t:
        with pytest.raises(TLSError) as info:
            await Executor(t, policy=SLOW).execute(get)
        assert t.requests == 1  # not resent
    assert time.monotonic() - started < 3
    assert not info.value.retriable and hits == []
    assert str(info.value).startswith(
        f"GET /streams: TLS handshake with 127.0.0.1:{port} failed: certificate verify failed"
    )
    # The same server with its CA trusted answers: the failure was the certificate.
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    async with HttpTransport(url, options=TransportOptions(ca_bundle=str(bundle))) as t:
        resp, _ = await Executor(t, policy=SLOW).execute(get)
    assert resp.status == 200 and hits == [1]


async def test_https_on_a_plain_http_port_fails_once_and_says_so(
    serve: Callable[..., Awaitable[str]],
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({})

    url = await serve(handler)
    port = URL(url).port
    started = time.monotonic()
    async with HttpTransport(url.replace("http://", "https://")) as t:
        with pytest.raises(TLSError) as info:
            await Executor(t, policy=SLOW).execute(Request(method="GET", path="/streams"))
        assert t.requests == 1
    assert time.monotonic() - started < 3
    message = str(info.value)
    assert message.startswith(f"GET /streams: TLS handshake with 127.0.0.1:{port} failed: ")
    assert "plain http" in message


# --- 3. what failed, where, once --------------------------------------------------------


async def test_connection_refused_names_the_host_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    upload = Request(method="POST", path="/streams/1/products", body=b"{}\n")
    caplog.set_level(logging.WARNING, logger="bulkpush.retry")
    async with HttpTransport(f"http://127.0.0.1:{port}") as t:
        with pytest.raises(RetriesExhausted) as info:
            await Executor(t, policy=FAST).execute(upload)
    assert info.value.attempts == 3
    message = str(info.value)
    assert message == (
        f"POST /streams/1/products: gave up after 3 attempts: "
        f"connection refused by 127.0.0.1:{port}"
    )
    warnings = [r.getMessage() for r in caplog.records if r.name == "bulkpush.retry"]
    assert warnings == [
        f"POST /streams/1/products: connection refused by 127.0.0.1:{port}; "
        "retrying (attempt 1 of 3)"
    ]


async def test_a_reset_and_a_timeout_name_the_host_and_the_reason(
    serve: Callable[..., Awaitable[str]],
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        if request.path == "/drop":
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError
        await asyncio.sleep(5)
        return web.json_response({})

    url = await serve(handler)
    where = f"127.0.0.1:{URL(url).port}"
    async with HttpTransport(url) as t:
        with pytest.raises(TransportError) as dropped:
            await t.request("POST", "/drop", body=b"x")
        with pytest.raises(RequestTimeout) as slow:
            await t.request("GET", "/slow", timeout_s=0.2)
    assert dropped.value.retriable
    assert str(dropped.value) in (
        f"POST /drop: connection reset by {where}",
        f"POST /drop: connection closed by {where} before it answered",
    )
    assert str(slow.value) == f"GET /slow: no answer from {where}: timed out after 0.2 s"


def test_an_unresolved_name_says_so() -> None:
    # No DNS query leaves the machine in tests: the connector's error is built here.
    key = SimpleNamespace(host="api.example.invalid", port=443, ssl=True)
    exc = aiohttp.ClientConnectorError(key, socket.gaierror(-2, "Name or service not known"))  # type: ignore[arg-type]
    err = translate(exc, method="GET", url="https://api.example.invalid/streams", timeout_s=1)
    assert str(err) == (
        "GET /streams: name not resolved: api.example.invalid (name or service not known)"
    )
    assert err.retriable


def test_a_connect_timeout_names_the_host_and_the_time() -> None:
    # A loopback connect never hangs: the connector's error is built here.
    exc = aiohttp.ConnectionTimeoutError("Connection timeout to host")
    err = translate(
        exc,
        method="GET",
        url="https://api.example.test/streams",
        timeout_s=120,
        connect_timeout_s=15,
    )
    assert isinstance(err, RequestTimeout) and err.retriable
    assert str(err) == "GET /streams: connecting to api.example.test:443 timed out after 15 s"


# --- 4. the API's own words -------------------------------------------------------------


async def test_the_apis_detail_reaches_the_message(emulator: Emulator) -> None:
    emulator.create_stream("main catalog", "chunked")
    sid = emulator.create_stream("off", "chunked")
    emulator.set_stream_status(sid, "disabled")
    async with StreamClient(token="test-token", api_url=emulator.url, retry=FAST) as client:
        with pytest.raises(Conflict) as conflict:
            await client.create_stream("main catalog")
        with pytest.raises(APIError) as invalid:
            await client.rename_stream(sid, "ab")
        with pytest.raises(RunStopped) as stopped:
            await client.push([{"id": "1", "title": "x"}], stream=sid)
    assert str(conflict.value) == (
        "POST /streams answered 409: a stream named 'main catalog' already exists"
    )
    assert str(invalid.value).endswith(
        "answered 422: Invalid attribute: name must be from 3 to 255 characters long"
    )
    assert isinstance(stopped.value.cause, StreamDisabled)
    assert str(stopped.value.cause).endswith(
        "answered 403: the stream is disabled and rejects uploads"
    )


# --- 5. the response size cap -----------------------------------------------------------


async def test_a_gzip_bomb_stops_at_the_cap(serve: Callable[..., Awaitable[str]]) -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    small = gzip.compress(b'{"data": {}}')

    async def handler(request: web.Request) -> web.StreamResponse:
        body = small if request.path == "/small" else bomb
        return web.Response(
            body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    url = await serve(handler)
    assert len(bomb) < 100_000
    opts = TransportOptions(max_response_bytes=1024 * 1024)
    async with HttpTransport(url, options=opts) as t:
        resp = await t.request("GET", "/small")
        assert resp.json() == {"data": {}}
        with pytest.raises(ResponseTooLarge) as info:
            await Executor(t, policy=SLOW).execute(Request(method="GET", path="/bomb"))
        assert t.requests == 2  # not resent
    assert not info.value.retriable and info.value.limit == 1024 * 1024
    assert str(info.value) == (
        f"GET /bomb: the answer from 127.0.0.1:{URL(url).port} is over 1,048,576 bytes "
        "(TransportOptions.max_response_bytes); not read further"
    )
    assert TransportOptions().max_response_bytes == 8 * 1024 * 1024


# --- 6. proxies and clear-text tokens ---------------------------------------------------


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


async def test_http_proxy_from_the_environment_is_used(
    serve: Callable[..., Awaitable[str]], no_proxy_env: pytest.MonkeyPatch
) -> None:
    via_proxy: list[tuple[str, str]] = []
    direct: list[str] = []

    async def proxy(request: web.Request) -> web.StreamResponse:
        via_proxy.append((request.host, request.path))
        return web.json_response({"via": "proxy"})

    async def origin(request: web.Request) -> web.StreamResponse:
        direct.append(request.path)
        return web.json_response({"via": "direct"})

    proxy_url = await serve(proxy)
    origin_url = await serve(origin)
    no_proxy_env.setenv("HTTP_PROXY", proxy_url)
    async with HttpTransport("http://api.example.test") as t:
        resp = await t.request("GET", "/streams")
    assert resp.json() == {"via": "proxy"} and via_proxy == [("api.example.test", "/streams")]
    # Loopback is never proxied: a proxy cannot reach this machine's own ports.
    async with HttpTransport(origin_url) as t:
        resp = await t.request("GET", "/streams")
    assert resp.json() == {"via": "direct"} and direct == ["/streams"]
    assert len(via_proxy) == 1
    # NO_PROXY names hosts that are reached directly; HTTPS_PROXY serves https URLs.
    no_proxy_env.setenv("NO_PROXY", "api.example.test")
    assert env_proxy(URL("http://api.example.test/x")) == (None, {})
    assert env_proxy(URL("http://other.example.test/x"))[0] == URL(proxy_url)
    no_proxy_env.setenv("HTTPS_PROXY", "http://user:pw@proxy.example.test:3128")
    found, headers = env_proxy(URL("https://other.example.test/x"))
    assert found == URL("http://proxy.example.test:3128")
    assert headers == {"Proxy-Authorization": "Basic dXNlcjpwdw=="}  # user:pw


@pytest.mark.parametrize(
    ("url", "token", "warned"),
    [
        ("http://api.example.test", True, True),
        ("http://127.0.0.1:8080", True, False),
        ("http://127.3.4.5:8080", True, False),
        ("http://[::1]:8080", True, False),
        ("http://localhost:8080", True, False),
        ("https://api.example.test", True, False),
        ("http://api.example.test", False, False),
    ],
)
async def test_a_clear_text_token_to_another_host_is_warned_about(
    caplog: pytest.LogCaptureFixture, url: str, token: bool, warned: bool
) -> None:
    caplog.set_level(logging.WARNING, logger="bulkpush.transport")
    auth = {"Authorization": Secret(f"Bearer {TOKEN}")} if token else None
    async with HttpTransport(url, auth_headers=auth):
        pass
    messages = [r.getMessage() for r in caplog.records if r.name == "bulkpush.transport"]
    if warned:
        assert messages == [
            "http://api.example.test is plain http: the token goes in clear text to "
            "api.example.test; use https://"
        ]
    else:
        assert messages == []
    assert all(TOKEN not in m for m in messages)


# --- 7. a create whose answer was lost --------------------------------------------------


class FakeStreamsApi:
    """``/streams`` with a script for the creates: what each POST does before answering.

    ``"drop"`` creates the stream and closes the connection unanswered;
    ``"drop-hidden"`` does the same, but the list shows it only after the
    next create; ``"503"`` fails without creating; ``"create"`` answers 201.
    """

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.streams: list[dict[str, Any]] = []
        self.hidden: list[dict[str, Any]] = []
        self.posts = 0
        self.lists = 0

    def _new(self, name: str, type: str) -> dict[str, Any]:
        return stream_doc(str(100 + self.posts), name, type)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            self.lists += 1
            return web.json_response({"data": self.streams, "links": {}})
        body = orjson.loads(await request.read())
        attrs = body["data"]["attributes"]
        self.posts += 1
        step = self.script.pop(0)
        if any(s["attributes"]["name"] == attrs["name"] for s in self.streams + self.hidden):
            self.streams.extend(self.hidden)
            self.hidden.clear()
            return web.json_response(
                {"errors": [{"status": "409", "title": "Conflict", "detail": "name taken"}]},
                status=409,
            )
        if step == "503":
            return web.json_response({"errors": [{"title": "down"}]}, status=503)
        doc = self._new(attrs["name"], attrs["type"])
        if step.startswith("drop"):
            (self.hidden if step == "drop-hidden" else self.streams).append(doc)
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError
        self.streams.append(doc)
        return web.json_response({"data": doc}, status=201)


async def create(url: str, name: str = "main catalog") -> Any:
    async with HttpTransport(url) as t:
        return await StreamManager(Executor(t, policy=FAST)).create_stream(name)


async def test_a_create_whose_answer_was_lost_is_found_not_made_twice(
    serve: Callable[..., Awaitable[str]],
) -> None:
    api = FakeStreamsApi(["drop"])
    stream = await create(await serve(api.handle))
    assert (stream.id, stream.name, stream.type) == ("101", "main catalog", "chunked")
    assert api.posts == 1 and api.lists == 1 and len(api.streams) == 1


async def test_a_create_that_failed_with_a_5xx_is_sent_once_more(
    serve: Callable[..., Awaitable[str]],
) -> None:
    api = FakeStreamsApi(["503", "create"])
    stream = await create(await serve(api.handle))
    assert stream.id == "102" and api.posts == 2 and api.lists == 1
    assert len(api.streams) == 1


async def test_a_409_after_a_lost_create_returns_the_stream_now_present(
    serve: Callable[..., Awaitable[str]],
) -> None:
    api = FakeStreamsApi(["drop-hidden", "create"])
    stream = await create(await serve(api.handle))
    assert stream.id == "101" and api.posts == 2 and api.lists == 2


async def test_a_name_taken_before_the_call_is_still_a_conflict(
    serve: Callable[..., Awaitable[str]],
) -> None:
    api = FakeStreamsApi(["create", "create"])
    url = await serve(api.handle)
    await create(url)
    with pytest.raises(Conflict) as info:
        await create(url)
    assert str(info.value) == "POST /streams answered 409: name taken"
    assert api.lists == 0  # a plain 409 is not a lost answer: no lookup
