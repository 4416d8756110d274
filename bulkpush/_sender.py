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
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace

from bulkpush._chunking import encode_body
from bulkpush._compression import Compressor
from bulkpush._concurrency import AdaptiveLimit
from bulkpush._http import Response
from bulkpush._quota import Pacer
from bulkpush._records import STAGE_UPLOAD, Chunk, Outcome, Record, Rejection, Unattributed
from bulkpush._retry import Delivered, Executor, Split, Tally
from bulkpush._target import Plan, Target
from bulkpush.errors import APIError, BulkpushError, ChunkFailed, Interrupted, PayloadTooLarge

__all__ = ["ChunkSender", "map_delivered"]


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
    ) -> None:
        self.executor = executor
        self.target = target
        self.plan = plan
        self.pacer = pacer
        self.limit = limit
        self.compressor = compressor
        self.pinpoint = pinpoint and plan.upserts
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

    async def _post(self, payload: bytes, tally: Tally) -> tuple[Response, Delivered | Split]:
        return await self.executor.execute(
            self.target.upload(payload, self.plan),
            self.target.classify,
            pacer=self.pacer,
            limit=self.limit,
            tally=tally,
            what=self.plan.name,
            halted=lambda: self.halted,
            halt=self._halt,
        )

    async def send(self, chunk: Chunk, payload: bytes) -> list[Outcome]:
        """Deliver one chunk; one outcome per request that carried its products.

        Raises :class:`ChunkFailed` when the run must stop (a fatal answer,
        retries or a lock past their deadline, a quota used up). After
        :meth:`halt`, a chunk not yet sent comes back ``not_sent``.
        """
        outcome = Outcome(chunk=chunk)
        try:
            resp, verdict = await self._post(payload, outcome)
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
        outcomes: list[Outcome] = []
        # The refused request spent attempts; account them on the first half.
        half = len(chunk) // 2
        for i, sub in enumerate(_halves(chunk, half)):
            sub_outcomes = await self.send(sub, await self._build(sub))
            if i == 0 and sub_outcomes:
                sub_outcomes[0].attempts += outcome.attempts
                sub_outcomes[0].bytes_sent += outcome.bytes_sent
                sub_outcomes[0].throttled += outcome.throttled
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
