"""HTTP transport: session, rate pacing, adaptive concurrency, retry policy.

Everything here is target-agnostic. A target (``targets/``) decides what a
status means for its payload; this module supplies the mechanics:

- :class:`Pacer` spaces requests evenly at a rate (no bursts: a bucket that
  lets 30 go at once breaks the API's per-second window) and can be paused
  until a time the API names (``ratelimit-reset``, ``Retry-After``).
- :class:`AdaptiveLimit` keeps enough requests in flight to reach the rate
  (rate × latency), growing additively while it is the bottleneck and halving
  on back-pressure (429/423/5xx/timeouts).
- :class:`ByteBudget` caps the bytes of request bodies held in flight.
- :class:`HttpTransport` owns the ``aiohttp`` session, adds auth and
  ``User-Agent`` headers, never follows redirects (so a token is never sent to
  another host), and translates every ``aiohttp``/``OSError``/timeout into a
  :mod:`bulkpush.errors` exception.
- :class:`RetryPolicy` holds the retry numbers; :func:`backoff_delay` is
  exponential backoff with full jitter.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import logging
import math
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp
import orjson
from yarl import URL

from bulkpush._version import __version__
from bulkpush.errors import (
    APIError,
    AuthError,
    BulkpushError,
    ConfigError,
    Conflict,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    RetriesExhausted,
    ServerError,
    StreamDisabled,
    StreamLocked,
    TransportError,
)

__all__ = [
    "AdaptiveLimit",
    "ByteBudget",
    "ConcurrencyOptions",
    "HttpTransport",
    "Pacer",
    "Response",
    "RetryPolicy",
    "Secret",
    "TransportOptions",
    "backoff_delay",
    "error_for_status",
    "rate_limit_wait",
]

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
class RetryPolicy:
    """How transient failures are retried.

    ``max_attempts`` bounds requests for one payload on 5xx, network errors
    and timeouts (the first attempt included); ``deadline_s`` bounds the time
    spent on one payload across all its attempts, 429 waits included. A 423
    (stream locked) is retried with its own, slower backoff until
    ``lock_deadline_s``. Delays are exponential with full jitter:
    ``uniform(0, min(cap, base * 2**n))``.
    """

    max_attempts: int = 8
    deadline_s: float = 600.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    lock_deadline_s: float = 900.0
    lock_backoff_base_s: float = 2.0
    lock_backoff_max_s: float = 60.0
    max_rate_limit_wait_s: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ConcurrencyOptions:
    """Requests in flight: found adaptively between ``initial`` and ``maximum``,
    capped by ``inflight_bytes`` of request bodies held at once. With a rate
    limit the start is at least what keeps the rate while answers take 0.5 s
    (``ceil(rate * 0.5)``, at most ``maximum``)."""

    initial: int = 4
    maximum: int = 64
    inflight_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportOptions:
    """Connection settings. ``verify_tls=False`` is loud: it logs a warning."""

    connect_timeout_s: float = 15.0
    request_timeout_s: float = 120.0
    verify_tls: bool = True
    ca_bundle: str | None = None
    integration: str | None = None  # appended to User-Agent, as the Stream API asks


def backoff_delay(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Full-jitter exponential backoff for retry number ``attempt`` (1-based)."""
    r = rng or random
    return r.uniform(0.0, min(cap, base * (2 ** max(0, attempt - 1))))


class Pacer:
    """Even spacing of requests at ``rate`` per second, pausable.

    A GCRA-style scheduler: each ``acquire`` takes the next slot, ``1/rate``
    after the previous one, and sleeps until it. ``pause_until`` pushes the
    next slot to a monotonic time the API named. Written here rather than
    taken from aiolimiter because the leaky bucket there cannot be paused by
    the API's ``ratelimit-reset`` / ``Retry-After``; the worker's Redis
    limiter implements the same two calls. ``window_limit``: the API's
    requests per one-second window; no more than that leave in any second
    (see :meth:`acquire`).
    """

    # After a 429 despite the pacing (jitter bunched two requests into one of
    # the API's windows) the rate drops by SLOW_DOWN, to at most FLOOR of the
    # rate asked for; each answered request wins back RECOVER of it, about 1 %
    # per 1,000 requests, so a single 429 costs little and a noisy network
    # settles where its jitter fits.
    SLOW_DOWN = 0.99
    FLOOR = 0.90
    RECOVER = 0.00001
    # With ``window_limit``: the jitter the API's clock may add (see acquire).
    WINDOW_MARGIN_S = 0.02

    def __init__(
        self,
        rate: float | None,
        *,
        window_limit: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ConfigError(f"rate must be positive, got {rate}")
        if window_limit is not None and window_limit < 1:
            raise ConfigError(f"window_limit must be at least 1, got {window_limit}")
        self.rate = rate
        self.target_rate = rate
        self.window_limit = window_limit
        self._interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        # When the last ``window_limit`` requests were let go.
        self._window: collections.deque[float] | None = (
            collections.deque(maxlen=window_limit) if window_limit else None
        )
        self._clock = clock
        self.acquired = 0

    def __repr__(self) -> str:
        return f"Pacer(rate={self.rate}, acquired={self.acquired})"

    def reserve(self) -> float:
        """Take the next slot; return how long to wait for it (seconds)."""
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + self._interval
        self.acquired += 1
        return slot - now

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)
        window = self._window
        if window is None:
            return
        # After a late wake-up (an event loop busy for some ms) every request
        # whose slot passed meanwhile goes out at once: measured, 1 % of uploads
        # left 0.3 ms after another, and the API's fixed one-second windows
        # caught a 31st. So no more than ``window_limit`` requests leave in any
        # span of a second plus WINDOW_MARGIN_S (the jitter the API's clock may
        # add). Catching up after a lag stays as fast as that allows.
        span = 1.0 + self.WINDOW_MARGIN_S
        while True:
            wait = window[0] + span - self._clock() if len(window) == window.maxlen else 0.0
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        window.append(self._clock())

    def pause_until(self, when: float) -> None:
        """No slot before monotonic time ``when``."""
        self._next = max(self._next, when)

    def _set_rate(self, rate: float) -> None:
        self.rate = rate
        self._interval = 1.0 / rate

    def throttled(self) -> None:
        """A request was answered 429 although paced: run a little slower."""
        if self.rate is not None and self.target_rate is not None:
            self._set_rate(max(self.rate * self.SLOW_DOWN, self.target_rate * self.FLOOR))

    def answered(self) -> None:
        """A request was answered (not 429): win back a little of any slow-down."""
        rate, target = self.rate, self.target_rate
        if rate is not None and target is not None and rate < target:
            self._set_rate(min(target, rate + target * self.RECOVER))


class AdaptiveLimit:
    """An AIMD concurrency limit.

    ``acquire``/``release`` bracket a request. After a success, when every
    slot was busy (the limit, not the rate, held requests back), the limit
    grows by one; on back-pressure it halves (never below 1, at most once per
    ``cooldown_s`` so one burst of failures does not collapse it to 1).
    ``parked`` counts slots held by requests waiting for their rate slot
    (the caller keeps it): while any is, the rate holds requests back, not
    the limit, so the limit does not grow.
    """

    # With a rate to keep, start with enough requests in flight to keep it while
    # answers take this long (the API's answers take 100s of ms; AIMD finds more
    # if needed): ramping up from ``initial`` costs seconds of a short push.
    START_LATENCY_S = 0.5

    def __init__(
        self,
        options: ConcurrencyOptions,
        *,
        rate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        start = max(1, options.initial)
        if rate is not None and rate <= 1000:
            start = max(start, min(options.maximum, math.ceil(rate * self.START_LATENCY_S)))
        self.limit = start
        self.maximum = max(self.limit, options.maximum)
        self.in_flight = 0
        self.waiting = 0
        self.parked = 0
        self._cond = asyncio.Condition()
        self._clock = clock
        self._last_decrease = -1e9
        self.cooldown_s = 1.0

    def __repr__(self) -> str:
        return f"AdaptiveLimit(limit={self.limit}, in_flight={self.in_flight})"

    async def acquire(self) -> None:
        async with self._cond:
            self.waiting += 1
            try:
                await self._cond.wait_for(lambda: self.in_flight < self.limit)
            finally:
                self.waiting -= 1
            self.in_flight += 1

    async def release(self, *, ok: bool, backpressure: bool = False) -> None:
        async with self._cond:
            saturated = self.in_flight >= self.limit and self.waiting > 0 and not self.parked
            self.in_flight -= 1
            if backpressure:
                now = self._clock()
                if now - self._last_decrease >= self.cooldown_s:
                    self.limit = max(1, self.limit // 2)
                    self._last_decrease = now
            elif ok and saturated and self.limit < self.maximum:
                self.limit += 1
            self._cond.notify_all()


class ByteBudget:
    """At most ``capacity`` bytes of request bodies in flight, granted in FIFO order.

    A single body larger than the capacity is let through alone, so a large
    request can never deadlock the pipeline. ``release`` is synchronous so it
    can run in a ``finally`` of a cancelled task.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    def __repr__(self) -> str:
        return f"ByteBudget(used={self.used}, capacity={self.capacity})"

    def _fits(self, n: int) -> bool:
        return self.used == 0 or self.used + n <= self.capacity

    async def acquire(self, n: int) -> None:
        if not self._waiters and self._fits(n):
            self.used += n
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((n, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(n)  # granted just as we were cancelled: give it back
            raise

    def release(self, n: int) -> None:
        self.used -= n
        while self._waiters:
            want, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            if not self._fits(want):
                break
            self._waiters.popleft()
            self.used += want
            fut.set_result(None)


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


def rate_limit_wait(headers: Mapping[str, str], *, now_unix: float | None = None) -> float | None:
    """Seconds to wait before the next request, from the answer's headers.

    ``Retry-After`` (seconds or an HTTP date) wins; else ``ratelimit-reset`` /
    ``X-Ratelimit-Retry-After`` (a Unix time) when ``ratelimit-remaining`` is 0
    (or on any 429). None when the headers say nothing.
    """
    now = time.time() if now_unix is None else now_unix
    retry_after = headers.get("Retry-After")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(retry_after)
                return max(0.0, when.timestamp() - now)
            except (TypeError, ValueError):
                pass
    reset = headers.get("ratelimit-reset") or headers.get("X-Ratelimit-Retry-After")
    if reset:
        try:
            reset_at = float(reset)
        except ValueError:
            return None
        # A small value is a delta in seconds (RFC draft style), a large one a Unix time.
        return max(0.0, reset_at if reset_at < 1e9 else reset_at - now)
    return None


_STATUS_ERRORS: dict[int, type[APIError]] = {
    400: InvalidRequest,
    401: AuthError,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,
    423: StreamLocked,
    429: RateLimited,
}


def _error_titles(body: Any) -> tuple[list[dict[str, Any]], str]:
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list):
            objs = [e for e in errors if isinstance(e, dict)]
            titles = [
                str(e.get("title") or e.get("detail") or e.get("message") or "") for e in objs
            ]
            return objs, "; ".join(t for t in titles if t)[:500]
        message = body.get("message")
        if isinstance(message, str):
            return [{"message": message}], message[:500]
    return [], ""


def error_for_status(resp: Response, *, upload: bool = False) -> APIError:
    """The :class:`APIError` subclass for an error answer, with the API's own titles.

    ``upload`` makes a 403 a :class:`StreamDisabled` (the Stream API answers
    403 to uploads on a disabled stream).
    """
    body = resp.json()
    errors, titles = _error_titles(body)
    if resp.status == 403 and upload:
        cls: type[APIError] = StreamDisabled
    elif resp.status >= 500:
        cls = ServerError
    else:
        cls = _STATUS_ERRORS.get(resp.status, APIError)
    what = f"{resp.method} {_path_of(resp.url)}".strip()
    message = f"{what} answered {resp.status}" + (f": {titles}" if titles else "")
    return cls(
        message,
        status=resp.status,
        method=resp.method,
        url=resp.url,
        errors=errors,
        body=body,
        retry_after=rate_limit_wait(resp.headers) if resp.status == 429 else None,
    )


def _path_of(url: str) -> str:
    # Messages show the path only: query strings could carry anything.
    try:
        return URL(url).path
    except (ValueError, TypeError):
        return ""


class HttpTransport:
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

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

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
                f"{method} {_path_of(url)}: no answer within the timeout", method=method, url=url
            ) from exc
        except aiohttp.ClientError as exc:
            raise TransportError(
                f"{method} {_path_of(url)}: {type(exc).__name__}", method=method, url=url
            ) from exc
        except OSError as exc:
            raise TransportError(
                f"{method} {_path_of(url)}: {exc.strerror or type(exc).__name__}",
                method=method,
                url=url,
            ) from exc

    async def call(
        self,
        method: str,
        path: str,
        *,
        pacer: Pacer | None = None,
        policy: RetryPolicy | None = None,
        ok: tuple[int, ...] = (200, 201, 202, 204),
        **kwargs: Any,
    ) -> Response:
        """A request with the retry table applied, for management calls.

        Retries 429 (waiting for the API's reset), 5xx, network errors and
        timeouts with full-jitter backoff; returns the answer when its status
        is in ``ok``; raises the matching :class:`APIError` otherwise, or
        :class:`RetriesExhausted` when the attempts or the deadline ran out.
        """
        policy = policy or RetryPolicy()
        deadline = time.monotonic() + policy.deadline_s
        attempt = 0
        last: BulkpushError | None = None
        while True:
            attempt += 1
            if pacer is not None:
                await pacer.acquire()
            try:
                resp = await self.request(method, path, **kwargs)
            except TransportError as exc:
                last = exc
            else:
                if resp.status in ok:
                    return resp
                err = error_for_status(resp)
                if resp.status == 429:
                    wait = min(
                        err.retry_after if err.retry_after is not None else 1.0,
                        policy.max_rate_limit_wait_s,
                    )
                    if pacer is not None:
                        pacer.pause_until(time.monotonic() + wait)
                    else:
                        await asyncio.sleep(wait)
                    if time.monotonic() + wait > deadline:
                        raise RetriesExhausted(
                            f"{method} {path}: still throttled at the deadline",
                            last=err,
                            attempts=attempt,
                        ) from err
                    attempt -= 1  # a 429 is not a failed attempt: it is paced, not counted
                    continue
                if not err.retriable:
                    raise err
                last = err
            if attempt >= policy.max_attempts or time.monotonic() >= deadline:
                raise RetriesExhausted(
                    f"{method} {path}: gave up after {attempt} attempts: {last}",
                    last=last,
                    attempts=attempt,
                ) from last
            await asyncio.sleep(
                backoff_delay(attempt, base=policy.backoff_base_s, cap=policy.backoff_max_s)
            )
