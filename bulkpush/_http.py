"""HTTP: one ``aiohttp`` session per API, auth headers kept secret, errors translated.

:class:`HttpTransport` sends one request and reads the answer, up to
``TransportOptions.max_response_bytes``; it never follows redirects (so a
token never reaches another host) and turns every ``aiohttp``/``OSError``/
``ssl``/timeout exception into a :mod:`bulkpush.errors` exception whose
message names the host, the port and the reason. It does not retry:
:mod:`bulkpush._retry` does, asking the target what an answer means.

Proxies come from ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` (the rules of
``aiohttp``'s ``trust_env``, read once per API origin); loopback is never
proxied, and ``~/.netrc`` is never read (the token is the only credential).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import ipaddress
import logging
import socket
import ssl
import struct
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from yarl import URL

from bulkpush._resource import AsyncResource
from bulkpush._version import __version__
from bulkpush.errors import RequestTimeout, ResponseTooLarge, TLSError, TransportError

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
    """Connection settings. ``verify_tls=False`` is loud: it logs a warning.

    ``max_response_bytes`` caps the body read from one answer, counted after
    decompression (a small gzip answer can inflate to gigabytes): past it the
    request fails with :class:`~bulkpush.errors.ResponseTooLarge`. The Stream
    API's answers are a few kilobytes; 8 MiB by default.
    """

    connect_timeout_s: float = 15.0
    request_timeout_s: float = 120.0
    verify_tls: bool = True
    ca_bundle: str | None = None
    integration: str | None = None  # appended to User-Agent, as the Stream API asks
    max_response_bytes: int = 8 * 1024 * 1024


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


_READ_PIECE = 64 * 1024


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


def _host_port(url: str) -> str:
    try:
        u = URL(url)
    except (ValueError, TypeError):
        return "the server"
    host = u.host or "the server"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{u.port}" if u.port is not None else host


def is_loopback(host: str | None) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``: traffic that never leaves the machine."""
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def env_proxy(url: URL) -> tuple[URL | None, dict[str, str]]:
    """The proxy the environment names for ``url`` and its ``Proxy-Authorization`` header.

    ``HTTPS_PROXY``/``HTTP_PROXY`` (lower case wins, as in ``urllib``) by the
    URL's scheme, unless ``NO_PROXY`` matches the host: the rules ``aiohttp``
    applies with ``trust_env=True``. A loopback host is never proxied.
    """
    if is_loopback(url.host) or (url.host and urllib.request.proxy_bypass(url.host)):
        return None, {}
    found = urllib.request.getproxies().get(url.scheme)
    if not found:
        return None, {}
    proxy = URL(found)
    headers: dict[str, str] = {}
    if proxy.user is not None:
        creds = f"{proxy.user}:{proxy.password or ''}".encode()
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(creds).decode("ascii")
        proxy = proxy.with_user(None)
    return proxy, headers


def _ssl_reason(exc: BaseException) -> str:
    err = getattr(exc, "os_error", None) or getattr(exc, "certificate_error", None) or exc
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {err.verify_message}"
    if isinstance(err, ssl.SSLError):
        reason = (err.reason or "").replace("_", " ").lower() or str(err)
        if err.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST"):
            reason += " (the server does not speak TLS on that port: is it plain http://?)"
        return reason
    return str(err) or type(err).__name__


def _os_reason(err: BaseException | None) -> str:
    code = getattr(err, "errno", None)
    if isinstance(err, ConnectionRefusedError) or code == errno.ECONNREFUSED:
        return "connection refused"
    if isinstance(err, ConnectionResetError) or code == errno.ECONNRESET:
        return "connection reset"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower() if err.strerror[:1].isupper() else err.strerror
    return type(err).__name__ if err is not None else "connection failed"


def translate(
    exc: BaseException,
    *,
    method: str,
    url: str,
    timeout_s: float,
    connect_timeout_s: float | None = None,
) -> TransportError:
    """The :mod:`bulkpush.errors` exception for a failed request: what failed, where, why.

    ``timeout_s`` is the request's total timeout and ``connect_timeout_s``
    its connect timeout, named when they ran out.
    """
    what = f"{method} {path_of(url)}"
    where = _host_port(url)
    host = getattr(exc, "host", None)
    if isinstance(host, str) and host:
        port = getattr(exc, "port", None)
        where = f"{host}:{port}" if port is not None else host
    kw: dict[str, str] = {"method": method, "url": url}
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError) or isinstance(
        getattr(exc, "os_error", None), ssl.SSLError
    ):
        return TLSError(f"{what}: TLS handshake with {where} failed: {_ssl_reason(exc)}", **kw)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        after = f" after {connect_timeout_s:g} s" if connect_timeout_s is not None else ""
        return RequestTimeout(f"{what}: connecting to {where} timed out{after}", **kw)
    if isinstance(exc, TimeoutError):
        return RequestTimeout(
            f"{what}: no answer from {where}: timed out after {timeout_s:g} s", **kw
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, socket.gaierror):
            reason = (os_error.strerror or "unknown name").lower()
            return TransportError(f"{what}: name not resolved: {exc.host} ({reason})", **kw)
        if isinstance(os_error, ConnectionRefusedError):
            return TransportError(f"{what}: connection refused by {where}", **kw)
        return TransportError(f"{what}: cannot connect to {where}: {_os_reason(os_error)}", **kw)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return TransportError(f"{what}: connection closed by {where} before it answered", **kw)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransportError(f"{what}: the answer from {where} was cut off or malformed", **kw)
    if isinstance(exc, aiohttp.ClientOSError | OSError):
        err: BaseException = exc
        if isinstance(exc, aiohttp.ClientOSError) and isinstance(exc.__cause__, OSError):
            err = exc.__cause__
        reason = _os_reason(err)
        if reason == "connection reset":
            return TransportError(f"{what}: connection reset by {where}", **kw)
        return TransportError(f"{what}: {reason} ({where})", **kw)
    return TransportError(f"{what}: {type(exc).__name__} talking to {where}", **kw)


def _abandon(transport: asyncio.Transport | None) -> None:
    """Reset the connection of an error answered while the body may still be going out.

    An error can come before the whole body went out (the server's 10 s
    limit, a 429). aiohttp goes on writing the rest, and the kernel sends
    what it holds even after a plain close (megabytes of socket buffers):
    seconds of a slow uplink taken from the other requests. A reset drops it
    all; the next request opens another connection.
    """
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # A close with a zero linger time resets the connection: the kernel
        # drops what it still holds to send (a plain close would send it all).
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


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
        self._proxies: dict[str, tuple[URL | None, dict[str, str]]] = {}
        base = URL(self.base_url)
        if base.scheme == "http" and self._auth and not is_loopback(base.host):
            log.warning(
                "%s is plain http: the token goes in clear text to %s; use https://",
                self.base_url,
                base.host,
            )

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

        Raises :class:`TransportError` when no answer came (its message names
        the host, the port and the reason): :class:`RequestTimeout` when the
        time ran out, :class:`TLSError` when the TLS handshake failed, and
        :class:`ResponseTooLarge` past ``max_response_bytes``; any HTTP
        status, error or not, is returned.
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
        proxy, proxy_headers = self._proxy_for(url)
        if proxy is not None:
            extra["proxy"] = proxy
            if proxy_headers:
                extra["proxy_headers"] = proxy_headers
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
                # (aiohttp hands a connection back to its pool as soon as the
                # answer is read, while the kernel may still hold body bytes:
                # its protocol still knows the socket.)
                protocol = getattr(resp, "_protocol", None) if data is not None else None
                sending = getattr(protocol, "transport", None)
                content = await self._read(resp, method, url)
                if resp.status >= 400:
                    _abandon(sending)
                return Response(
                    status=resp.status,
                    headers=resp.headers,
                    body=content,
                    method=method,
                    url=str(resp.url),
                    elapsed_s=time.monotonic() - started,
                )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise translate(
                exc,
                method=method,
                url=url,
                timeout_s=timeout_s or self.options.request_timeout_s,
                connect_timeout_s=self.options.connect_timeout_s,
            ) from exc

    async def _read(self, resp: aiohttp.ClientResponse, method: str, url: str) -> bytes:
        # Read in pieces and stop past the cap: ``resp.read()`` would hold
        # whatever a decompressed answer inflates to.
        limit = self.options.max_response_bytes
        pieces: list[bytes] = []
        size = 0
        while piece := await resp.content.read(_READ_PIECE):
            size += len(piece)
            if size > limit:
                resp.close()
                raise ResponseTooLarge(
                    f"{method} {path_of(url)}: the answer from {_host_port(url)} is over "
                    f"{limit:,} bytes (TransportOptions.max_response_bytes); not read further",
                    method=method,
                    url=url,
                    limit=limit,
                )
            pieces.append(piece)
        return b"".join(pieces)

    def _proxy_for(self, url: str) -> tuple[URL | None, dict[str, str]]:
        u = URL(url)
        key = f"{u.scheme}://{u.host}:{u.port}"
        found = self._proxies.get(key)
        if found is None:
            found = self._proxies[key] = env_proxy(u)
        return found

    async def send(self, req: Request) -> Response:
        """:meth:`request` for a :class:`Request`."""
        return await self.request(
            req.method, req.path, params=req.params, body=req.body, headers=req.headers
        )
