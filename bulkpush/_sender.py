"""Sending chunks: one request per chunk through the executor, answers mapped to outcomes.

:class:`ChunkSender` is the pipeline's sender for any target: it asks the
target for the request that carries a chunk's body, sends it through the one
:class:`~bulkpush._retry.Executor` (pacer, concurrency limit, retries), and
turns the target's verdict into an :class:`~bulkpush._records.Outcome`:
positions the API named become rejections of the records at those lines,
the rest of each message's occurrences are :class:`Unattributed` within the
request's source line range. A :class:`~bulkpush._retry.Split` verdict (413)
sends the chunk's halves; ``pinpoint`` finds unnamed rejections by re-sending
halves (only where the plan says products are upserts).

Requests follow the uplink (issue "Real links", :mod:`bulkpush._link`): a
chunk whose body would take longer than the target time alone at the
throughput the run measures is sent as smaller requests of about equal bytes
(never under the plan's ``min_bytes``: a referenced stream's 10 MB); when
even the smallest allowed request would take too long, the push says so
once, with the measured throughput and what to do.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from bulkpush._chunking import encode_body
from bulkpush._compression import Compressor
from bulkpush._concurrency import AdaptiveLimit
from bulkpush._http import Response
from bulkpush._link import Link
from bulkpush._quota import Pacer
from bulkpush._records import STAGE_UPLOAD, Chunk, Outcome, Record, Rejection, Unattributed
from bulkpush._retry import Delivered, Executor, Refit, Split, Tally
from bulkpush._target import Plan, Target
from bulkpush.errors import APIError, BulkpushError, ChunkFailed, Interrupted, PayloadTooLarge

__all__ = ["ChunkSender", "cut_parts", "map_delivered"]

_log = logging.getLogger("bulkpush.push")


def _where(chunk: Chunk) -> tuple[str, int, int]:
    if chunk.span is not None:
        return chunk.span.source, chunk.first_line, chunk.last_line
    first, last = chunk.first, chunk.last
    if first.source == last.source:
        return first.source, first.line, last.line
    return f"{first.source} … {last.source}", first.line, last.line


def map_delivered(
    chunk: Chunk, answer: Delivered
) -> tuple[list[Rejection], list[Unattributed], int]:
    """``(named rejections, unattributed, accepted)`` for the products of one request.

    Only the products the API names become :class:`Record` objects (a span
    chunk makes no other).

    Every record ends in exactly one of the three, whatever the API's counts
    say: more rejections counted than listed become unattributed (the API's
    own message or "rejected by the API"), more listed than products are cut.
    """
    rejections: list[Rejection] = []
    unattributed: list[Unattributed] = []
    named: set[int] = set()
    total = len(chunk)
    source, first, last = _where(chunk)
    for err in answer.errors:
        hits = 0
        pos = err.position
        if pos is not None and 1 <= pos <= total and pos not in named:
            named.add(pos)
            rejections.append(Rejection(chunk.record(pos - 1), STAGE_UPLOAD, err.message))
            hits = 1
        if err.count > hits:
            unattributed.append(
                Unattributed(err.message, err.count - hits, source, first, last, answer.batch_id)
            )
    listed = len(rejections) + sum(u.count for u in unattributed)
    if answer.refused:
        rejected = total
        default = answer.reason or (
            unattributed[0].message if unattributed else "request refused by the API"
        )
    else:
        rejected = min(total, max(answer.rejected or 0, listed))
        default = answer.reason or "rejected by the API (no message given)"
    if rejected > listed:
        unattributed.append(
            Unattributed(default, rejected - listed, source, first, last, answer.batch_id)
        )
    elif listed > total:
        # The API listed more occurrences than the request had products.
        excess = listed - total
        trimmed: list[Unattributed] = []
        for u in reversed(unattributed):
            cut = min(excess, u.count)
            excess -= cut
            if u.count > cut:
                trimmed.append(replace(u, count=u.count - cut))
        unattributed = trimmed[::-1]
    counted = len(rejections) + sum(u.count for u in unattributed)
    return rejections, unattributed, total - counted


def _product_bytes(chunk: Chunk) -> NDArray[np.int64]:
    """Each product's bytes in the body, its separator included."""
    span = chunk.span
    if span is not None:
        starts = span.starts.astype(np.int64)
        sizes: NDArray[np.int64] = starts[1:] - starts[:-1]
        return sizes
    return np.fromiter((r.size + 1 for r in chunk.records), dtype=np.int64, count=len(chunk))


def _piece(chunk: Chunk, a: int, b: int, nbytes: int) -> Chunk:
    span = chunk.span
    if span is not None:
        return Chunk(chunk.seq, span=span.slice(a, b), nbytes=nbytes)
    return Chunk(chunk.seq, chunk.records[a:b], nbytes)


def cut_parts(chunk: Chunk, parts: int, min_bytes: int = 0) -> list[Chunk]:
    """``chunk`` as about ``parts`` runs of products of about equal bytes, in order.

    No run is under ``min_bytes`` of body (a short one joins its neighbour);
    fewer runs come back when the products do not divide finer.
    """
    sizes = _product_bytes(chunk)
    n = len(sizes)
    parts = max(1, min(parts, n))
    ends = np.cumsum(sizes)
    per = float(ends[-1]) / parts
    # Run k ends after the first product whose running total reaches k * per.
    cuts = np.searchsorted(ends, per * np.arange(1, parts), side="left") + 1
    bounds = [0, *sorted({int(c) for c in cuts if 0 < c < n}), n]
    runs: list[tuple[int, int]] = []  # (first product, bytes)
    for a, b in itertools.pairwise(bounds):
        size = int(ends[b - 1] - (ends[a - 1] if a else 0))
        if runs and runs[-1][1] < min_bytes:
            start, held = runs.pop()
            runs.append((start, held + size))
        else:
            runs.append((a, size))
    if len(runs) > 1 and runs[-1][1] < min_bytes:
        _, last = runs.pop()
        start, held = runs.pop()
        runs.append((start, held + last))
    out: list[Chunk] = []
    for i, (a, size) in enumerate(runs):
        b = runs[i + 1][0] if i + 1 < len(runs) else n
        out.append(_piece(chunk, a, b, size))
    return out


def _halves(chunk: Chunk, half: int) -> tuple[Chunk, Chunk]:
    """The chunk's products before and after ``half``, as chunks (sizes unset)."""
    span = chunk.span
    if span is not None:
        return (
            Chunk(chunk.seq, span=span.slice(0, half)),
            Chunk(chunk.seq, span=span.slice(half, len(span))),
        )
    records = chunk.records
    return Chunk(chunk.seq, records[:half]), Chunk(chunk.seq, records[half:])


class ChunkSender:
    """Delivers chunks of one run to ``target`` (see the module docstring).

    Shared by every chunk of the run: one pacer (per quota key), one
    adaptive concurrency limit. ``compressor`` compresses the bodies of
    split and pinpoint requests (the pipeline compresses the rest).
    """

    def __init__(
        self,
        executor: Executor,
        target: Target,
        plan: Plan,
        *,
        pacer: Pacer,
        limit: AdaptiveLimit,
        compressor: Compressor,
        pinpoint: bool = False,
        link: Link | None = None,
        request_time_s: float = 5.0,
    ) -> None:
        self.executor = executor
        self.target = target
        self.plan = plan
        self.pacer = pacer
        self.limit = limit
        self.compressor = compressor
        self.pinpoint = pinpoint and plan.upserts
        self.link = link
        self.request_time_s = request_time_s
        self._said_too_slow = False
        self.halted = False
        self._halt = asyncio.Event()  # wakes the requests waiting for their slots

    def __repr__(self) -> str:
        return f"ChunkSender({self.plan.name!r}, {self.pacer!r}, {self.limit!r})"

    def halt(self) -> None:
        """Send no new request (the run was interrupted); see :meth:`send`."""
        self.halted = True
        self._halt.set()

    async def _build(self, chunk: Chunk) -> bytes:
        return await self.compressor.compress(encode_body(chunk, self.plan.body_format))

    async def _post(
        self, payload: bytes, tally: Tally, refit: Callable[[], bool] | None = None
    ) -> tuple[Response, Delivered | Split]:
        return await self.executor.execute(
            self.target.upload(payload, self.plan),
            self.target.classify,
            pacer=self.pacer,
            limit=self.limit,
            tally=tally,
            what=self.plan.name,
            halted=lambda: self.halted,
            halt=self._halt,
            link=self.link,
            target_s=self.request_time_s,
            refit=refit,
        )

    async def send(self, chunk: Chunk, payload: bytes) -> list[Outcome]:
        """Deliver one chunk; one outcome per request that carried its products.

        Raises :class:`ChunkFailed` when the run must stop (a fatal answer,
        retries or a lock past their deadline, a quota used up). After
        :meth:`halt`, a chunk not yet sent comes back ``not_sent``. A chunk
        too large for the uplink goes as smaller requests (see the module
        docstring), one outcome each.
        """
        pieces = self._fit(chunk, payload)
        if pieces is not None:
            outcomes: list[Outcome] = []
            for piece in pieces:
                outcomes.extend(await self.send(piece, await self._build(piece)))
            return outcomes
        outcome = Outcome(chunk=chunk)
        cut: list[list[Chunk]] = []

        def refit() -> bool:
            # A timeout taught the link how slow it is: cut the chunk now?
            pieces = self._fit(chunk, payload)
            if pieces is not None:
                cut.append(pieces)
            return pieces is not None

        try:
            resp, verdict = await self._post(payload, outcome, refit)
        except Refit:
            return await self._send_pieces(cut[-1], outcome)
        except Interrupted as exc:
            outcome.not_sent = len(chunk)
            outcome.error = str(exc)
            return [outcome]
        except BulkpushError as exc:
            if isinstance(exc, APIError):
                outcome.status = exc.status
            outcome.not_sent = len(chunk)
            outcome.error = str(exc)
            raise ChunkFailed(str(exc), outcome=outcome, cause=exc) from exc
        outcome.status = resp.status
        if isinstance(verdict, Split):
            return await self._split(chunk, outcome)
        outcome.rejections, outcome.unattributed, outcome.accepted = map_delivered(chunk, verdict)
        outcome.batch_id = verdict.batch_id
        if self.pinpoint and outcome.unattributed:
            await self._pinpoint(outcome)
        return [outcome]

    def _fit(self, chunk: Chunk, payload: bytes) -> list[Chunk] | None:
        """The smaller requests to send ``chunk`` as, when its body would not
        go out in time alone; None to send it as it is."""
        link = self.link
        if link is None or self.halted:
            return None
        alone = link.seconds_for(len(payload))
        target = self.request_time_s
        if alone is None or alone <= target:
            return None
        body = chunk.nbytes or int(_product_bytes(chunk).sum())
        least = self.plan.min_bytes
        # Pieces of half the target alone: two share the link in the target
        # time, and one goes out while the other waits for its answer.
        want = math.ceil(2 * alone / target)
        if least:
            want = min(want, body // least)
        pieces = cut_parts(chunk, want, least) if want >= 2 and len(chunk) >= 2 else [chunk]
        # Bodies compress about alike: a piece takes its share of the whole's time.
        slowest = alone * max(p.nbytes for p in pieces) / max(body, 1)
        if slowest > target:
            self._too_slow(pieces, body, slowest)
        return pieces if len(pieces) > 1 else None

    def _too_slow(self, pieces: list[Chunk], body: int, seconds: float) -> None:
        """Say once that a request cannot be made small enough for the uplink."""
        if self._said_too_slow or self.link is None:
            return
        self._said_too_slow = True
        rate = self.link.throughput() or 0.0
        least = self.plan.min_bytes
        size = max(p.nbytes for p in pieces)
        if least:
            what = (
                f"a request of {size / 1e6:.1f} MB takes about {seconds:.0f} s alone "
                f"(its requests cannot be smaller than {least / 1e6:g} MB)"
            )
            advice = "use a chunked stream"
            if self.compressor.options.codec == "none":
                advice += ", or gzip the requests (--compression gzip)"
        else:
            what = f"a request of one product takes about {seconds:.0f} s alone"
            advice = "a faster uplink is needed for products this large"
        _log.warning(
            "%s: the uplink carries %.2f MB/s: %s, more than the %g s a request should "
            "take (the API ends requests that take over %g s): %s",
            self.plan.name,
            rate / 1e6,
            what,
            self.request_time_s,
            self.link.server_timeout_s,
            advice,
        )

    async def _split(self, chunk: Chunk, outcome: Outcome) -> list[Outcome]:
        if len(chunk) < 2:
            outcome.not_sent = len(chunk)
            err = PayloadTooLarge(
                f"one product of {chunk.nbytes} bytes is over the request size limit "
                f"({outcome.status})",
                status=outcome.status,
            )
            outcome.error = str(err)
            raise ChunkFailed(str(err), outcome=outcome, cause=err)
        return await self._send_pieces(_halves(chunk, len(chunk) // 2), outcome)

    async def _send_pieces(self, pieces: Sequence[Chunk], outcome: Outcome) -> list[Outcome]:
        """Send ``pieces`` of ``outcome``'s chunk; the attempts the whole one
        spent are accounted on the first piece."""
        outcomes: list[Outcome] = []
        for i, sub in enumerate(pieces):
            sub_outcomes = await self.send(sub, await self._build(sub))
            if i == 0 and sub_outcomes:
                first = sub_outcomes[0]
                first.attempts += outcome.attempts
                first.bytes_sent += outcome.bytes_sent
                first.throttled += outcome.throttled
                first.timed_out += outcome.timed_out
            outcomes.extend(sub_outcomes)
        return outcomes

    async def _pinpoint(self, outcome: Outcome) -> None:
        """Find every rejected product of ``outcome`` by re-sending halves.

        Products are upserts (the plan says so), so re-sending one the API
        accepted is harmless. Each subset's answer names one product per
        message; a subset with more errors than names is split again. The
        requests and bytes spent are counted in the outcome's ``pinpoint_requests``
        and ``pinpoint_bytes``.
        """
        named = {id(r.record) for r in outcome.rejections}
        pending: list[list[Record]] = [[r for r in outcome.chunk.records if id(r) not in named]]
        found: list[Rejection] = []
        while pending:
            subset = pending.pop()
            if not subset:
                continue
            probe = Outcome(chunk=Chunk(seq=outcome.chunk.seq, records=subset, nbytes=0))
            payload = await self._build(probe.chunk)
            try:
                _, verdict = await self._post(payload, probe)
            except BulkpushError:
                break  # pinpointing is best effort: what stays unknown stays unattributed
            finally:
                outcome.pinpoint_requests += probe.attempts
                outcome.pinpoint_bytes += probe.bytes_sent
            if isinstance(verdict, Split):
                half = len(subset) // 2
                pending.extend([subset[:half], subset[half:]])
                continue
            rej, unatt, _ = map_delivered(probe.chunk, verdict)
            found.extend(rej)
            left = sum(u.count for u in unatt)
            if left == 0:
                continue
            hits = {id(x.record) for x in rej}
            rest = [r for r in subset if id(r) not in hits]
            messages = {u.message for u in unatt}
            if len(rest) == left and len(messages) == 1:
                message = next(iter(messages))
                found.extend(Rejection(r, STAGE_UPLOAD, message) for r in rest)
                continue
            if len(rest) <= 1:
                if rest and len(messages) == 1:
                    found.append(Rejection(rest[0], STAGE_UPLOAD, next(iter(messages))))
                continue
            half = len(rest) // 2
            pending.extend([rest[:half], rest[half:]])
        # Keep the accounting whole: a found product replaces one unattributed
        # occurrence of its message, never more than the API counted.
        remaining: Counter[str] = Counter()
        for u in outcome.unattributed:
            remaining[u.message] += u.count
        known = {id(r.record) for r in outcome.rejections}
        for hit in found:
            if id(hit.record) not in known and remaining[hit.message] > 0:
                known.add(id(hit.record))
                remaining[hit.message] -= 1
                outcome.rejections.append(hit)
        template = {u.message: u for u in outcome.unattributed}
        outcome.unattributed = [
            replace(template[m], count=c) for m, c in remaining.items() if c > 0
        ]
        outcome.rejections.sort(key=lambda r: (r.record.source, r.record.line))
