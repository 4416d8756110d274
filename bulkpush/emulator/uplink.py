"""The client's uplink: one bandwidth shared by every request body the emulator reads.

On loopback a body arrives as fast as the machine copies memory; a user's
uplink carries a few MB/s, shared by every request in flight. With a bandwidth
set (``EmulatorConfig.uplink_bytes_per_s``, ``bulkpush emulator --uplink-mbps``,
``Emulator.set_uplink``), every Stream and Platform API request body is read
through one :class:`Uplink`: in small pieces, each taken only when the link has
had the time to carry it. Concurrent bodies take turns piece by piece, so each
gets a share of the bandwidth, and a body the server reads slowly fills the
socket buffers, so the client's writes slow down too (TCP back-pressure).

The link is a pacer: it is free again at ``free_at``; a piece of ``n`` bytes
starts when it is free (or now, if it has been idle: at most ``_BURST_S`` of
idle time is credited) and occupies it ``n / bytes_per_s`` seconds; the reader
waits until its piece has been carried.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import StreamReader, web

__all__ = ["JSON_BODY_MAX", "Uplink"]

#: The largest body of a JSON endpoint (stream management, Platform API), read
#: whole; uploads are streamed and limited by the config, not by this.
JSON_BODY_MAX = 1 << 20

# Assumption: the link models bandwidth only (no round-trip time, no loss); request
# bodies share it, request heads and answers do not use it, nor does /_emulator/.
# A piece is what the link carries in about this long (so turns are short and a
# change of bandwidth takes effect quickly), within the bounds below.
_PIECE_S = 0.02
_MIN_PIECE = 1024
_MAX_PIECE = 64 * 1024
# Assumption: idle time credited to the next piece (a token bucket this many seconds deep).
_BURST_S = 0.05


def _check_rate(bytes_per_s: float | None) -> None:
    if bytes_per_s is not None and not bytes_per_s > 0:
        raise ValueError(f"the uplink bandwidth must be positive or None, not {bytes_per_s!r}")


class Uplink:
    """A bandwidth (bytes per second, ``None``: unlimited) shared by every body read through it.

    Attributes:
        carried: body bytes read through the link since start (also when unlimited).
    """

    def __init__(self, bytes_per_s: float | None = None) -> None:
        _check_rate(bytes_per_s)
        self._rate = bytes_per_s
        self._free_at = 0.0  # monotonic time when the link has carried every piece taken so far
        self.carried = 0

    @property
    def bytes_per_s(self) -> float | None:
        """The bandwidth now; ``None`` is unlimited."""
        return self._rate

    def set_rate(self, bytes_per_s: float | None) -> None:
        """Change the bandwidth now (``None``: unlimited); pieces already taken keep their time.

        What the link still has to carry of the pieces already taken is rescaled
        to the new bandwidth, so a slower link delays the next pieces of every
        body and a faster one lets them go sooner.
        """
        _check_rate(bytes_per_s)
        old, self._rate = self._rate, bytes_per_s
        if bytes_per_s is None or old is None:
            self._free_at = 0.0
            return
        now = time.monotonic()
        backlog = self._free_at - now
        if backlog > 0:
            self._free_at = now + backlog * old / bytes_per_s

    def to_json(self) -> dict[str, float | int | None]:
        """``{"bytes_per_s": ..., "carried": ...}`` for the inspection endpoint."""
        return {"bytes_per_s": self._rate, "carried": self.carried}

    async def read(self, content: StreamReader) -> bytes:
        """The next piece of a body, once the link has carried it; ``b""`` at its end."""
        rate = self._rate
        if rate is None:
            chunk = await content.readany()
            self.carried += len(chunk)
            return chunk
        piece = max(_MIN_PIECE, min(_MAX_PIECE, int(rate * _PIECE_S)))
        chunk = await content.read(piece)
        if chunk:
            self.carried += len(chunk)
            await self._carry(len(chunk), rate)
        return chunk

    async def _carry(self, size: int, rate: float) -> None:
        now = time.monotonic()
        start = max(self._free_at, now - _BURST_S)
        self._free_at = start + size / rate
        delay = self._free_at - now
        if delay > 0:
            await asyncio.sleep(delay)

    async def read_all(self, request: web.Request, max_size: int = JSON_BODY_MAX) -> bytes:
        """The whole body, read through the link; 413 over ``max_size``.

        What ``request.read()`` does with the app's ``client_max_size``
        (``HTTPRequestEntityTooLarge``), at the link's speed.
        """
        parts: list[bytes] = []
        size = 0
        while chunk := await self.read(request.content):
            size += len(chunk)
            if size > max_size:
                raise web.HTTPRequestEntityTooLarge(max_size=max_size, actual_size=size)
            parts.append(chunk)
        return b"".join(parts)
