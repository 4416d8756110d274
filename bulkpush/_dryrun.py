"""The dry run's sender: every request is built, none is sent.

:class:`DryRunSender` takes :class:`~bulkpush._sender.ChunkSender`'s place in
the pipeline of a dry run (``Engine.open_push(..., dry_run=True)``,
``bulkpush push --dry-run``): the catalog is read, validated, cut into
chunks, encoded and compressed as for a real push, and the target builds
each chunk's request; no request leaves. Every product of a chunk comes back
``not_sent`` (the report still balances: ``read == accepted + rejected +
not_sent``, with 0 accepted) and is counted in the report's ``would_send``,
with the requests and the body bytes (as sent: compressed) it would have
taken.
"""

from __future__ import annotations

from bulkpush._records import Chunk, Outcome
from bulkpush._target import Plan, Target
from bulkpush.report import Report

__all__ = ["DryRunSender"]


class DryRunSender:
    """A pipeline sender (:class:`~bulkpush._pipeline.Sender`) that sends nothing.

    ``target`` builds each chunk's request per ``plan`` (so a request it could
    not build fails the dry run as it would fail the push); ``report`` counts
    what would have been sent. After :meth:`halt` (an interrupted run) a chunk
    is not counted as one that would be sent.
    """

    def __init__(self, target: Target, plan: Plan, report: Report) -> None:
        self.target = target
        self.plan = plan
        self.report = report
        self.halted = False

    def __repr__(self) -> str:
        return (
            f"DryRunSender({self.plan.name!r}, would_send={self.report.would_send}, "
            f"requests={self.report.would_send_requests})"
        )

    def halt(self) -> None:
        """Count no further chunk as one that would be sent."""
        self.halted = True

    async def send(self, chunk: Chunk, payload: bytes) -> list[Outcome]:
        """The chunk's products, ``not_sent``; counted as would-be-sent unless halted."""
        if not self.halted:
            request = self.target.upload(payload, self.plan)
            size = len(request.body) if request.body is not None else 0
            self.report.add_would_send(len(chunk), nbytes=size)
        return [Outcome(chunk=chunk, not_sent=len(chunk))]
