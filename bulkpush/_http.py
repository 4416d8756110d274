"""HTTP: one ``aiohttp`` session per API, auth headers kept secret, errors translated.

:class:`HttpTransport` sends one request and reads the whole answer; it never
follows redirects (so a token never reaches another host) and turns every
``aiohttp``/``OSError``/timeout into a :mod:`bulkpush.errors` exception. It
does not retry: :mod:`bulkpush._retry` does, asking the target what an
answer means.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from yarl import URL

from bulkpush._resource import AsyncResource
from bulkpush._version import __version__
from bulkpush.errors import RequestTimeout, TransportError

__all__ = ["HttpTransport", "Request", "Response", "Secret", "TransportOptions", "path_of"]

log = logging.getLogger("bulkpush.transport")


class Secret:
    """A string that never shows itself in ``repr``, ``str`` or formatting.

    The value is read only through :meth:`reveal`, at the one place a header
    is built.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportOptions:
    """Connection settings. ``verify_tls=False`` is loud: it logs a warning."""

    connect_timeout_s: float = 15.0
    request_timeout_s: float = 120.0
    verify_tls: bool = True
    ca_bundle: str | None = None
    integration: str | None = None  # appended to User-Agent, as the Stream API asks


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One HTTP request as a target builds it; the executor sends (and resends) it.

    ``idempotent`` False means sending it twice may do something twice (a
    create): the executor then retries it only where no answer can have been
    acted on (a 429).
    """

    method: str
    path: str
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] | None = None
    idempotent: bool = True

    def __repr__(self) -> str:
        size = len(self.body) if self.body is not None else 0
        return f"Request({self.method} {path_of(self.path) or self.path}, {size} bytes)"


@dataclass(slots=True)
class Response:
    """A complete HTTP answer: status, headers and body, already read."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    method: str = ""
    url: str = ""
    elapsed_s: float = 0.0
    _json: Any = field(default=None, repr=False)

    def json(self) -> Any:
        """The body parsed as JSON, or None when it is empty or not JSON."""
        if self._json is None and self.body:
            try:
                self._json = orjson.loads(self.body)
            except orjson.JSONDecodeError:
                self._json = None
        return self._json


def path_of(url: str) -> str:
    # Messages show the path only: query strings could carry anything.
    try:
        return URL(url).path
    except (ValueError, TypeError):
        return ""


class HttpTransport(AsyncResource):
    """One ``aiohttp`` session to one API, with auth and error translation.

    ``auth_headers`` maps header names to :class:`Secret` values (e.g.
    ``{"Authorization": Secret("Bearer ...")}``); they are added to every
    request and appear nowhere else. Use as ``async with``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth_headers: Mapping[str, Secret] | None = None,
        options: TransportOptions | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.options = options or TransportOptions()
        self._auth = dict(auth_headers or {})
        self._session: aiohttp.ClientSession | None = None
        ua = f"bulkpush/{__version__}"
        if self.options.integration:
            ua += f" ({self.options.integration})"
        self.user_agent = ua
        self.requests = 0

    def __repr__(self) -> str:
        state = "open" if self._session and not self._session.closed else "closed"
        return f"HttpTransport({self.base_url!r}, {state}, requests={self.requests})"

    async def __aenter__(self) -> HttpTransport:
        self._open()
        return self

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            ssl_ctx: ssl.SSLContext | bool = True
            if self.options.ca_bundle:
                ssl_ctx = ssl.create_default_context(cafile=self.options.ca_bundle)
            elif not self.options.verify_tls:
                log.warning(
                    "TLS certificate verification is OFF for %s: anyone on the path can read "
                    "your token and catalog",
                    self.base_url,
                )
                ssl_ctx = False
            connector = aiohttp.TCPConnector(limit=0, ssl=ssl_ctx)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=self.options.request_timeout_s,
                    connect=self.options.connect_timeout_s,
                ),
                headers={"User-Agent": self.user_agent},
                auto_decompress=True,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Response:
        """Send one request and read the whole answer. No retries here.

        Raises :class:`TransportError` (or :class:`RequestTimeout`) when no
        answer came; any HTTP status, error or not, is returned.
        """
        session = self._open()
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        hdrs: dict[str, str] = {k: v.reveal() for k, v in self._auth.items()}
        if headers:
            hdrs.update(headers)
        data = body
        if json is not None:
            data = orjson.dumps(json)
            hdrs.setdefault("Content-Type", "application/json")
        extra: dict[str, Any] = {}
        if timeout_s:
            extra["timeout"] = aiohttp.ClientTimeout(total=timeout_s)
        self.requests += 1
        started = time.monotonic()
        try:
            async with session.request(
                method,
                url,
                params=params,
                data=data,
                headers=hdrs,
                allow_redirects=False,
                **extra,
            ) as resp:
                content = await resp.read()
                return Response(
                    status=resp.status,
                    headers=resp.headers,
                    body=content,
                    method=method,
                    url=str(resp.url),
                    elapsed_s=time.monotonic() - started,
                )
        except TimeoutError as exc:
            raise RequestTimeout(
                f"{method} {path_of(url)}: no answer within the timeout", method=method, url=url
            ) from exc
        except aiohttp.ClientError as exc:
            raise TransportError(
                f"{method} {path_of(url)}: {type(exc).__name__}", method=method, url=url
            ) from exc
        except OSError as exc:
            raise TransportError(
                f"{method} {path_of(url)}: {exc.strerror or type(exc).__name__}",
                method=method,
                url=url,
            ) from exc

    async def send(self, req: Request) -> Response:
        """:meth:`request` for a :class:`Request`."""
        return await self.request(
            req.method, req.path, params=req.params, body=req.body, headers=req.headers
        )
