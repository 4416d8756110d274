"""A rate budget shared by every worker pushing to one stream.

Behind one egress IP the API counts all workers of a quota key (a stream's
uploads, an API key) together, so they must share its windows.
:class:`SharedPacer` is a :class:`~bulkpush._quota.Pacer` (same
``reserve``/``acquire``/``pause_until``) whose schedule and window logs live
in a store every worker sees:

- :class:`SqliteSlots`: one row per stream in the queue's SQLite file,
  updated in a ``BEGIN IMMEDIATE`` transaction, so worker *processes* on one
  machine share it (their wall clocks are the same clock);
- :class:`RedisSlots`: a GCRA script run atomically in Redis, timed by the
  Redis server's clock, so workers on many machines share it.

The schedule is GCRA as a scheduler: the store keeps the theoretical arrival
time ``tat`` of the next free slot; taking a slot returns
``max(now, tat) - now`` seconds to wait and moves ``tat`` one interval on.
Requests are spaced evenly (no bursts), whoever sends them. Each window
(``limit`` requests per ``period``) keeps a log of its last ``limit`` slots:
a slot is never earlier than the ``limit``-th last one plus the period, so
no window of the API (50 per minute, 40,000 per month) ever gets more than
its limit. The logs persist in the store, so a long window's count survives
a worker's restart.

A store that cannot be reached (Redis restarting, the SQLite file locked
past its timeout) is an outage, not a failure: :class:`SharedPacer` retries
its store calls with jittered backoff for up to ``outage_s`` seconds
(:data:`STORE_OUTAGE_S`), and only then raises the store's retriable
:class:`~bulkpush.errors.QueueError` (the worker then gives its part back).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from bulkpush._quota import Pacer, Window
from bulkpush.errors import QueueError
from bulkpush.worker.sqlite_file import SqliteFile

__all__ = [
    "GCRA_PAUSE_LUA",
    "GCRA_TAKE_LUA",
    "SHARED_RATE_SAFETY",
    "STORE_OUTAGE_S",
    "RedisSlots",
    "SharedPacer",
    "SlotStore",
    "SqliteSlots",
]


# The share of the published rate workers aim at together by default. One
# process keeps DEFAULT_SAFETY (bulkpush._quota); workers on several machines
# reach the API over different paths, and each request's slot is taken through
# a store, so their arrivals jitter more. The API counts fixed wall-clock seconds: at 95 % a
# window still receives at most 30 while the jitter stays under
# 30 / 28.5 - 1 s, about 50 ms.
SHARED_RATE_SAFETY = 0.95

# How long a shared pacer waits for its store to come back before the
# request fails. Longer than a Redis restart (its append-only file loaded)
# or a SQLite writer holding the lock; short enough that a store gone for
# good gives the part back to the queue rather than hanging it.
STORE_OUTAGE_S = 120.0
# Backoff between store retries: jittered, doubling from the first to the cap.
_RETRY_FIRST_S = 0.05
_RETRY_CAP_S = 2.0

log = logging.getLogger("bulkpush.worker")
T = TypeVar("T")


class SlotStore(Protocol):
    """Where a shared schedule lives. Both calls are blocking (run them in a thread)."""

    def take(self, key: str, interval: float, windows: Sequence[Window] = ()) -> float:
        """Take the next slot of ``key``, ``interval`` after the last and within
        ``windows``; return the seconds to wait for it (>= 0)."""
        ...

    def pause(self, key: str, wait: float) -> None:
        """No slot of ``key`` before ``wait`` seconds from now."""
        ...


class SharedPacer(Pacer):
    """A :class:`Pacer` whose slots come from a :class:`SlotStore` shared by workers.

    ``rate`` is requests per second for the key across every worker;
    ``windows`` are kept in the store. A store call that fails with a
    retriable :class:`QueueError` is retried with jittered backoff for up to
    ``outage_s`` seconds (one warning per outage), then raised.
    ``acquire`` takes a slot (in a thread: the store does I/O) and sleeps
    until it — until the slot's time, not for the wait measured in the
    store, so the trip back from the thread does not push the request
    late; ``pause_until`` (a monotonic time, as the uploader gives it)
    pushes the shared schedule, so a 429 seen by one worker slows them all.
    """

    def __init__(
        self,
        rate: float,
        *,
        store: SlotStore,
        key: str,
        windows: Sequence[Window] = (),
        max_wait_s: float | None = None,
        outage_s: float = STORE_OUTAGE_S,
    ) -> None:
        super().__init__(rate, windows=windows, max_wait_s=max_wait_s)
        self.store = store
        self.key = key
        self.outage_s = outage_s
        self.outages = 0

    def __repr__(self) -> str:
        return f"SharedPacer(key={self.key!r}, rate={self.rate}, acquired={self.acquired})"

    def reserve(self) -> float:
        delay = self.store.take(self.key, self._interval, self.windows)
        self.acquired += 1
        return delay

    def _reserve_until(self) -> float:
        return time.monotonic() + self.reserve()

    async def _store_call(self, fn: Callable[[], T]) -> T:
        """``fn()`` in a thread, retried through a store outage of up to ``outage_s``."""
        deadline: float | None = None
        delay = _RETRY_FIRST_S
        while True:
            try:
                result = await asyncio.to_thread(fn)
            except QueueError as exc:
                if not exc.retriable:
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.outage_s
                    self.outages += 1
                    log.warning(
                        "the shared limiter's store is unavailable, retrying for up to %.0f s: %s",
                        self.outage_s,
                        exc,
                    )
                if now >= deadline:
                    raise
                await asyncio.sleep(min(random.uniform(delay / 2, delay), deadline - now))
                delay = min(delay * 2, _RETRY_CAP_S)
                continue
            if deadline is not None:
                log.warning("the shared limiter's store is back")
            return result

    async def acquire(self) -> None:
        slot = await self._store_call(self._reserve_until)
        delay = slot - time.monotonic()
        if delay > 0:
            self._check_wait(delay)
            await asyncio.sleep(delay)

    async def pause_until(self, when: float) -> None:
        # Awaited, so the next acquire runs after the pause landed and a store
        # error (past the outage budget) reaches the caller.
        if when - time.monotonic() > 0:
            await self._store_call(lambda: self._pause_left(when))

    def _pause_left(self, when: float) -> None:
        # Measured when the call runs: a retried pause must not overshoot.
        wait = when - time.monotonic()
        if wait > 0:
            self.store.pause(self.key, wait)


_SLOTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS limiter (key TEXT PRIMARY KEY, tat REAL NOT NULL);
CREATE TABLE IF NOT EXISTS quota_log (key TEXT NOT NULL, period REAL NOT NULL, slot REAL NOT NULL);
CREATE INDEX IF NOT EXISTS quota_log_slots ON quota_log (key, period, slot);
"""


class SqliteSlots:
    """GCRA slots in a table of a SQLite file, shared by processes on one machine."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = SqliteFile(path, schema=_SLOTS_SCHEMA, what="the shared limiter in")

    def __repr__(self) -> str:
        return f"SqliteSlots({self.path!r})"

    def _update(self, key: str, fn: Any) -> float:
        def tx(db: sqlite3.Connection) -> float:
            row = db.execute("SELECT tat FROM limiter WHERE key = ?", (key,)).fetchone()
            new_tat, result = fn(time.time(), float(row[0]) if row else 0.0)
            db.execute(
                "INSERT INTO limiter (key, tat) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET tat = excluded.tat",
                (key, new_tat),
            )
            return float(result)

        return self._file.transaction(tx)

    def take(self, key: str, interval: float, windows: Sequence[Window] = ()) -> float:
        margin = Pacer.WINDOW_MARGIN_S

        def tx(db: sqlite3.Connection) -> float:
            now = time.time()
            row = db.execute("SELECT tat FROM limiter WHERE key = ?", (key,)).fetchone()
            slot = max(now, float(row[0]) if row else 0.0)
            for w in windows:
                # The limit-th last slot of this window: the new one goes a period after it.
                nth = db.execute(
                    "SELECT slot FROM quota_log WHERE key = ? AND period = ? "
                    "ORDER BY slot DESC LIMIT 1 OFFSET ?",
                    (key, w.period_s, w.limit - 1),
                ).fetchone()
                if nth is not None:
                    slot = max(slot, float(nth[0]) + w.period_s + margin)
            for w in windows:
                db.execute(
                    "INSERT INTO quota_log (key, period, slot) VALUES (?, ?, ?)",
                    (key, w.period_s, slot),
                )
                db.execute(
                    "DELETE FROM quota_log WHERE key = ? AND period = ? AND slot < ?",
                    (key, w.period_s, slot - w.period_s - margin),
                )
            db.execute(
                "INSERT INTO limiter (key, tat) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET tat = excluded.tat",
                (key, slot + interval),
            )
            return slot - now

        return self._file.transaction(tx)

    def pause(self, key: str, wait: float) -> None:
        self._update(key, lambda now, tat: (max(tat, now + wait), 0.0))

    def close(self) -> None:
        self._file.close()


# KEYS[1] the key's schedule, KEYS[2..] one list per window (newest slot first);
# ARGV[1] the interval in seconds, ARGV[2] the window margin, then per window
# its limit and period. Returns the wait in seconds as a string (Lua numbers
# would be truncated to integers).
GCRA_TAKE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local interval = tonumber(ARGV[1])
local margin = tonumber(ARGV[2])
local slot = math.max(now, tat)
for i = 2, #KEYS do
  local limit = tonumber(ARGV[2 * i - 1])
  local period = tonumber(ARGV[2 * i])
  local nth = redis.call('LINDEX', KEYS[i], limit - 1)
  if nth then slot = math.max(slot, tonumber(nth) + period + margin) end
end
for i = 2, #KEYS do
  local limit = tonumber(ARGV[2 * i - 1])
  local period = tonumber(ARGV[2 * i])
  redis.call('LPUSH', KEYS[i], string.format('%.6f', slot))
  redis.call('LTRIM', KEYS[i], 0, limit - 1)
  redis.call('PEXPIRE', KEYS[i], math.ceil((slot - now + period) * 1000) + 60000)
end
local nxt = slot + interval
redis.call('SET', KEYS[1], string.format('%.6f', nxt), 'PX', math.ceil((nxt - now) * 1000) + 60000)
return string.format('%.6f', slot - now)
"""

# KEYS[1] the stream's schedule; ARGV[1] seconds from now before which no slot is given.
GCRA_PAUSE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local nxt = math.max(tat, now + tonumber(ARGV[1]))
redis.call('SET', KEYS[1], string.format('%.6f', nxt), 'PX', math.ceil((nxt - now) * 1000) + 60000)
return 1
"""


class RedisSlots:
    """GCRA slots in Redis, timed by the Redis server's clock; shared across machines.

    ``client`` is a synchronous ``redis.Redis`` (thread-safe connection pool).
    """

    def __init__(self, client: Any, *, prefix: str = "bulkpush:") -> None:
        self._client = client
        self._prefix = prefix
        self._take = client.register_script(GCRA_TAKE_LUA)
        self._pause = client.register_script(GCRA_PAUSE_LUA)

    def __repr__(self) -> str:
        return f"RedisSlots(prefix={self._prefix!r})"

    def take(self, key: str, interval: float, windows: Sequence[Window] = ()) -> float:
        keys = [f"{self._prefix}gcra:{key}"]
        args = [f"{interval:.9f}", f"{Pacer.WINDOW_MARGIN_S:.6f}"]
        for w in windows:
            keys.append(f"{self._prefix}quota:{key}:{w.period_s:g}")
            args += [str(w.limit), f"{w.period_s:.6f}"]
        try:
            return float(self._take(keys=keys, args=args))
        except Exception as exc:  # redis.RedisError and connection errors
            raise _store_error(exc) from exc

    def pause(self, key: str, wait: float) -> None:
        try:
            self._pause(keys=[f"{self._prefix}gcra:{key}"], args=[f"{wait:.6f}"])
        except Exception as exc:
            raise _store_error(exc) from exc


def _store_error(exc: Exception) -> QueueError:
    """A Redis error as a :class:`QueueError`, retriable when the server was out of reach.

    Connection loss, a timeout and a server still loading its data
    (``BusyLoadingError`` is a ``ConnectionError``) pass; an error the
    server answered (a script error) would answer the same again.
    """
    import redis  # noqa: PLC0415 - only RedisSlots gets here, and it needs redis

    out_of_reach = isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError)
    return QueueError(
        f"the shared limiter failed: {type(exc).__name__}: {exc}", retriable=out_of_reach
    )
