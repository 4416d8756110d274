"""The one retry executor every request goes through, and the verdicts it acts on.

A target reads an answer and gives a :data:`Verdict` (as Vector's
``RetryLogic`` does): :class:`Delivered` (final: accepted, partly or wholly
rejected), :class:`Retry` (``throttled``: wait for the API's reset, not
counted as a failed attempt; ``transient``: exponential backoff with full
jitter, bounded attempts and deadline; ``busy``: slower backoff until its
own deadline), :class:`Split` (the payload is too large: the caller halves
it) or :class:`Fatal` (stop). :class:`Executor` owns the loop: concurrency
slot, then rate slot, send, read the ``ratelimit-*`` headers, ask the
classifier, wait, resend. A request that got no answer at all (reset,
timeout) is ``transient``; a non-idempotent request is then not resent, nor
is any request whose :class:`~bulkpush.errors.TransportError` is not
``retriable`` (a failed TLS handshake, an answer over the size cap).

A request's first transient failure logs one warning on the
``bulkpush.retry`` logger (what failed, where, and that it is retried);
the later attempts are silent until the request succeeds or gives up.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal, Protocol

from bulkpush._concurrency import AdaptiveLimit
from bulkpush._http import HttpTransport, Request, Response, path_of
from bulkpush._link import Attempt, Link
from bulkpush._quota import Pacer
from bulkpush.errors import (
    APIError,
    AuthError,
    BulkpushError,
    Conflict,
    Interrupted,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RetriesExhausted,
    ServerError,
    TransportError,
)

__all__ = [
    "Classifier",
    "Delivered",
    "Executor",
    "Fatal",
    "ItemError",
    "Refit",
    "Retry",
    "RetryPolicy",
    "Split",
    "Tally",
    "Verdict",
    "backoff_delay",
    "classify_status",
    "error_for_status",
    "error_titles",
    "rate_limit_wait",
]

log = logging.getLogger("bulkpush.retry")


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


def backoff_delay(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Full-jitter exponential backoff for retry number ``attempt`` (1-based)."""
    r = rng or random
    return r.uniform(0.0, min(cap, base * (2 ** max(0, attempt - 1))))


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
    429: RateLimited,
}


# Reason phrases that differ from ``http.HTTPStatus`` (renamed by RFC 9110).
_PHRASES: dict[int, tuple[str, ...]] = {
    413: ("payload too large", "content too large", "request entity too large"),
    422: ("unprocessable entity", "unprocessable content"),
}


_STATUS_PHRASES = {s.value: s.phrase.lower() for s in HTTPStatus}


def _repeats_status(title: str, status: int | None) -> bool:
    if status is None:
        return False
    phrases = {*_PHRASES.get(status, ()), _STATUS_PHRASES.get(status, "")}
    return title.strip().lower() in phrases


def _error_text(obj: dict[str, Any], status: int | None) -> str:
    title = str(obj.get("title") or "").strip()
    detail = str(obj.get("detail") or obj.get("message") or "").strip()
    if status is None:
        try:
            status = int(obj.get("status") or "")
        except (TypeError, ValueError):
            status = None
    if title and detail and title != detail:
        return detail if _repeats_status(title, status) else f"{title}: {detail}"
    return title or detail


def error_titles(body: Any, *, status: int | None = None) -> tuple[list[dict[str, Any]], str]:
    """The API's error objects and what they say, joined, from a JSON:API or ``message`` body.

    Each JSON:API error reads ``title: detail``, or the ``detail`` alone when
    the title only repeats the reason phrase of ``status`` (or of the
    object's own ``status``): ``Conflict`` + ``a stream named 'x' already
    exists`` reads ``a stream named 'x' already exists``.
    """
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list):
            objs = [e for e in errors if isinstance(e, dict)]
            titles = [_error_text(e, status) for e in objs]
            return objs, "; ".join(t for t in titles if t)[:500]
        message = body.get("message")
        if isinstance(message, str):
            return [{"message": message}], message[:500]
    return [], ""


def error_for_status(resp: Response, cls: type[APIError] | None = None) -> APIError:
    """The :class:`APIError` for an error answer, with the API's own titles.

    ``cls`` overrides the generic HTTP meaning of the status (a target's own
    reading, e.g. the Stream API's 403 on upload is :class:`StreamDisabled`).
    """
    body = resp.json()
    errors, titles = error_titles(body, status=resp.status)
    if cls is None:
        cls = ServerError if resp.status >= 500 else _STATUS_ERRORS.get(resp.status, APIError)
    what = f"{resp.method} {path_of(resp.url)}".strip()
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


@dataclass(frozen=True, slots=True)
class ItemError:
    """``count`` products of one request rejected with ``message``.

    ``position`` (1-based line or item of the request body), when the API
    names one, is one of them; the others are not named (the Stream API gives
    one example per message). The engine maps positions back to source lines.
    """

    message: str
    position: int | None = None
    count: int = 1


@dataclass(frozen=True, slots=True)
class Delivered:
    """A final answer: every product accepted but those in ``errors``.

    ``rejected`` is the API's own count of rejected products when it is
    larger than ``errors`` account for; ``refused`` means the whole request
    was refused (every product rejected, with ``errors`` giving the reasons).
    ``reason`` is the message for rejected products no error names (a
    refusal's title). ``batch_id``: the API's id for this upload, if any.
    """

    status: int
    errors: tuple[ItemError, ...] = ()
    rejected: int | None = None
    refused: bool = False
    reason: str | None = None
    batch_id: str | None = None


RetryKind = Literal["throttled", "transient", "busy"]


@dataclass(frozen=True, slots=True)
class Retry:
    """Send again: ``throttled`` after ``after`` seconds (the API's reset), ``transient``
    with backoff, ``busy`` (the destination is locked for a while) with slow backoff."""

    kind: RetryKind
    error: BulkpushError
    after: float | None = None


@dataclass(frozen=True, slots=True)
class Split:
    """The payload is too large: send its products in smaller requests."""

    error: APIError


@dataclass(frozen=True, slots=True)
class Fatal:
    """Stop: the same request can never succeed (and likely no other will)."""

    error: BulkpushError


Verdict = Delivered | Retry | Split | Fatal
Classifier = Callable[[Response], Verdict]


class Tally(Protocol):
    """Where the executor counts what a payload cost (an :class:`~bulkpush.Outcome` is one).

    ``timed_out``: attempts the server ended for taking too long (a 504, or
    another server error or a lost connection after most of the server's
    time limit), counted when the request went through a :class:`Link`.
    """

    attempts: int
    throttled: int
    bytes_sent: int
    timed_out: int


def classify_status(resp: Response, *, ok: tuple[int, ...] = (200, 201, 202, 204)) -> Verdict:
    """The generic reading of an answer: ``ok`` statuses delivered, 429 throttled,
    5xx and 408 transient, anything else fatal with the API's own words."""
    status = resp.status
    if status in ok:
        return Delivered(status)
    err = error_for_status(resp)
    if status == 429:
        return Retry("throttled", err, after=err.retry_after)
    if status >= 500 or status == 408:
        return Retry("transient", err)
    return Fatal(err)


@dataclass(slots=True)
class _Count:
    attempts: int = 0
    throttled: int = 0
    bytes_sent: int = 0
    timed_out: int = 0


class Refit(BulkpushError):
    """The request timed out and its caller can send its body as smaller requests."""


# A server error (or a lost connection) this far into the server's time limit
# is taken for the server ending the request for taking too long.
_TIMED_OUT_SHARE = 0.9


@dataclass(frozen=True, slots=True)
class _LinkSlot:
    """A request body's place on the uplink: its size and its target time."""

    link: Link
    nbytes: int
    target_s: float
    refit: Callable[[], bool] | None = None


class Executor:
    """Sends requests with the retry rules of :class:`RetryPolicy`; see the module docstring.

    One executor serves every request of a client: uploads (with a pacer and
    a concurrency limit), management calls, deletes.
    """

    def __init__(
        self,
        transport: HttpTransport,
        *,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.policy = policy or RetryPolicy()
        self._clock = clock

    def __repr__(self) -> str:
        return f"Executor({self.transport!r})"

    async def _paced(
        self, pacer: Pacer | None, limit: AdaptiveLimit | None, link: _LinkSlot | None = None
    ) -> None:
        # Room on the link first (it can take seconds on a slow uplink, and
        # holds nothing else meanwhile), then a concurrency slot, then the
        # rate slot: a request that took its rate slot and then waited for a
        # free connection would go out late, together with the next one (a
        # burst the API counts).
        if link is not None:
            await link.link.acquire(link.nbytes, link.target_s)
            if link.refit is not None and link.refit():
                link.link.release(link.nbytes)
                raise Refit("too large for the uplink now; sent as smaller requests")
        try:
            if limit is not None:
                await limit.acquire()
                limit.parked += 1
            try:
                if pacer is not None:
                    await pacer.acquire()
            except BaseException:
                if limit is not None:
                    await limit.release(ok=False)
                raise
            finally:
                if limit is not None:
                    limit.parked -= 1
        except BaseException:
            if link is not None:
                link.link.release(link.nbytes)
            raise

    async def _paced_unless(
        self,
        pacer: Pacer | None,
        limit: AdaptiveLimit | None,
        halt: asyncio.Event,
        link: _LinkSlot | None = None,
    ) -> bool:
        """:meth:`_paced`, unless ``halt`` is set first: then False, no slot held."""
        if halt.is_set():
            return False
        paced = asyncio.ensure_future(self._paced(pacer, limit, link))
        stop = asyncio.ensure_future(halt.wait())
        try:
            await asyncio.wait({paced, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not paced.done():
                paced.cancel()  # (_paced gives its slots back)
        with contextlib.suppress(asyncio.CancelledError):
            await paced
        if paced.cancelled():
            return False
        paced.result()  # (its own error, if any)
        if halt.is_set():
            await self._unpace(limit, link)
            return False
        return True

    @staticmethod
    async def _unpace(limit: AdaptiveLimit | None, link: _LinkSlot | None) -> None:
        """Give back the slots of a request that is not sent after all."""
        if link is not None:
            link.link.release(link.nbytes)
        if limit is not None:
            await limit.release(ok=False)

    def _timed(
        self, slot: _LinkSlot, began: Attempt, sent_at: float, status: int | None, count: Tally
    ) -> bool:
        """Tell the link how the attempt ended (``status`` None: no answer); True when
        the server ended it for taking too long (then counted in ``count``)."""
        late = self._clock() - sent_at >= _TIMED_OUT_SHARE * slot.link.server_timeout_s
        timed_out = status == 504 or (late and (status is None or status >= 500))
        delivered = status is not None and 200 <= status < 300
        slot.link.end(began, delivered=delivered, timed_out=timed_out)
        if timed_out:
            count.timed_out += 1
        return timed_out

    async def _observe(self, resp: Response, pacer: Pacer | None) -> None:
        # The ratelimit-* headers correct the pacer: nothing left in this
        # window means no request before it resets (capped: clocks differ).
        if pacer is not None and resp.headers.get("ratelimit-remaining") == "0":
            wait = rate_limit_wait({"ratelimit-reset": resp.headers.get("ratelimit-reset", "")})
            if wait:
                await pacer.pause_until(self._clock() + min(wait, pacer.shortest_period_s))

    async def execute(
        self,
        request: Request,
        classify: Classifier = classify_status,
        *,
        pacer: Pacer | None = None,
        limit: AdaptiveLimit | None = None,
        tally: Tally | None = None,
        what: str | None = None,
        halted: Callable[[], bool] | None = None,
        halt: asyncio.Event | None = None,
        link: Link | None = None,
        target_s: float = 5.0,
        refit: Callable[[], bool] | None = None,
    ) -> tuple[Response, Delivered | Split]:
        """Send ``request`` until the answer is final; return it with its verdict.

        Raises the :class:`Fatal` verdict's error, the ``busy`` error once
        ``lock_deadline_s`` has passed, :class:`RetriesExhausted` when the
        attempts or the deadline ran out, or the transport's error for a
        non-idempotent request that got no answer. ``what`` names the request
        in messages (default: method and path). ``halted``, when it says so
        once the request's slots are taken, stops it before it is sent
        (:class:`~bulkpush.errors.Interrupted`); ``halt``, once set, stops it
        while it waits for its slots too (an interrupted run does not wait out
        the rate slots of the requests queued behind the ones in flight).
        ``link``: the body goes out only while the bytes in flight fit what
        the uplink moves in ``target_s``, and each attempt is timed on it
        (:mod:`bulkpush._link`); an attempt the server ended for taking too
        long is counted in the tally's ``timed_out``. ``refit`` is asked once
        the body has room on the link, before each attempt: when it says the
        body should go as smaller requests now (what the link measured
        meanwhile, a timeout among it, says it would not end in time),
        :class:`Refit` is raised for the caller to cut it.
        """
        policy = self.policy
        count: Tally = tally if tally is not None else _Count()
        name = what or f"{request.method} {path_of(request.path) or request.path}"
        body_size = len(request.body) if request.body is not None else 0
        deadline = self._clock() + policy.deadline_s
        busy_deadline: float | None = None
        failures = busy_waits = 0
        last: BulkpushError | None = None
        slot = (
            _LinkSlot(link, body_size, target_s, refit) if link is not None and body_size else None
        )
        while True:
            if halt is None:
                await self._paced(pacer, limit, slot)
            elif not await self._paced_unless(pacer, limit, halt, slot):
                raise Interrupted(f"{name}: not sent, the run was interrupted")
            if halted is not None and halted():
                await self._unpace(limit, slot)
                raise Interrupted(f"{name}: not sent, the run was interrupted")
            ok = backpressure = False
            # What follows this attempt: resend at once (the pacer waits), after
            # ``delay``, or after a backoff counted against the attempts.
            action: Literal["now", "sleep", "backoff"] = "backoff"
            delay = 0.0
            began = slot.link.begin(slot.nbytes) if slot is not None else None
            sent_at = self._clock()
            try:
                count.attempts += 1
                count.bytes_sent += body_size
                resp = await self.transport.send(request)
            except TransportError as exc:
                if slot is not None and began is not None:
                    self._timed(slot, began, sent_at, None, count)
                backpressure = True
                if not (request.idempotent and exc.retriable):
                    raise
                failures += 1
                last = exc
            else:
                if slot is not None and began is not None:
                    self._timed(slot, began, sent_at, resp.status, count)
                await self._observe(resp, pacer)
                if pacer is not None and resp.status != 429:
                    pacer.answered()
                verdict = classify(resp)
                if isinstance(verdict, Delivered | Split):
                    ok = isinstance(verdict, Delivered)
                    return resp, verdict
                if isinstance(verdict, Fatal):
                    raise verdict.error
                backpressure = True
                if verdict.kind == "throttled":
                    count.throttled += 1
                    wait = min(
                        verdict.after if verdict.after is not None else 1.0,
                        policy.max_rate_limit_wait_s,
                    )
                    if self._clock() + wait > deadline:
                        raise RetriesExhausted(
                            f"{name}: still throttled after {policy.deadline_s:.0f} s",
                            last=verdict.error,
                            attempts=count.attempts,
                        ) from verdict.error
                    if pacer is not None:
                        pacer.throttled()
                        await pacer.pause_until(self._clock() + wait)
                        action = "now"
                    else:
                        action, delay = "sleep", wait
                elif verdict.kind == "busy":
                    now = self._clock()
                    if busy_deadline is None:
                        busy_deadline = now + policy.lock_deadline_s
                    if now >= busy_deadline:
                        err = verdict.error
                        err.args = (f"{err} for {policy.lock_deadline_s:.0f} s",)
                        raise err
                    busy_waits += 1
                    action = "sleep"
                    delay = max(
                        backoff_delay(
                            busy_waits,
                            base=policy.lock_backoff_base_s,
                            cap=policy.lock_backoff_max_s,
                        ),
                        policy.lock_backoff_base_s / 2,
                    )
                    last = verdict.error
                elif not request.idempotent:
                    raise verdict.error
                else:
                    failures += 1
                    last = verdict.error
            finally:
                if slot is not None:
                    slot.link.release(body_size)
                if limit is not None:
                    await limit.release(ok=ok, backpressure=backpressure)
            if action == "now":
                continue
            if action == "sleep":
                await asyncio.sleep(delay)
                continue
            if failures >= policy.max_attempts or self._clock() >= deadline:
                reason = str(last).removeprefix(f"{name}: ")
                raise RetriesExhausted(
                    f"{name}: gave up after {count.attempts} attempts: {reason}",
                    last=last,
                    attempts=count.attempts,
                ) from last
            if failures == 1:
                log.warning("%s; retrying (attempt %d of %d)", last, failures, policy.max_attempts)
            await asyncio.sleep(
                backoff_delay(failures, base=policy.backoff_base_s, cap=policy.backoff_max_s)
            )
