"""The worker's optional control API (aiohttp), behind a bearer token.

::

    POST /jobs        submit a job (the JSON of JobSpec.to_json); 201 {"id": ...}
    GET  /jobs        the newest jobs (no parts)
    GET  /jobs/{id}   one job: status, progress, report, parts (as ``jobs show --json``)
    GET  /healthz     200 {"ok": true}; with the token also "worker", "stopping", "queue"
    GET  /metrics     Prometheus text (see bulkpush.worker.metrics)

Every route but ``/healthz`` needs ``Authorization: Bearer <token>``
(compared in constant time); ``/healthz`` answers probes without it, and
says nothing about the host then. It binds 127.0.0.1 unless told otherwise.
``POST /jobs`` answers 403 (with the reasons) for a job this worker's
allowances refuse, and queues nothing: planning its parts would read its
sources.
Bad input is a 400 with a message; an unexpected error is a 500 with a
one-line message (logged with its traceback), never a traceback. A
connection that sends no whole request head for :data:`IDLE_TIMEOUT_S`
seconds (idle, or a head sent byte by byte) is closed.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

import orjson
from aiohttp import web

from bulkpush.errors import BulkpushError, ConfigError
from bulkpush.worker._urls import redact_url
from bulkpush.worker.allow import REFUSED
from bulkpush.worker.jobs import JobSpec
from bulkpush.worker.runner import Worker

__all__ = ["IDLE_TIMEOUT_S", "build_control_app", "parse_addr", "start_control"]

_WORKER = web.AppKey("worker", Worker)
_MAX_LIST = 10_000

#: Seconds a connection may go without a whole request head, before its first
#: request or between two (aiohttp's keep-alive timer covers both; its default
#: is 3,630 s). Longer than clients keep an idle pooled connection (15 s for
#: aiohttp's), so none is closed as it is reused.
IDLE_TIMEOUT_S = 75.0
log = logging.getLogger("bulkpush.worker")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def parse_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``PORT`` (host 127.0.0.1); raises ConfigError."""
    host, _, port = addr.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError as exc:
        raise ConfigError(f"--http takes HOST:PORT, not {addr!r}") from exc


def build_control_app(worker: Worker, token: str) -> web.Application:
    """The control API of ``worker``; ``token`` is the bearer token it requires."""
    expected = f"Bearer {token}".encode()

    def authorized(request: web.Request) -> bool:
        given = request.headers.get("Authorization", "").encode()
        return hmac.compare_digest(given, expected)

    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/healthz" and not authorized(request):
            return _json({"error": "a valid bearer token is required"}, 401)
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException:
            raise  # aiohttp's own answers (404 for an unknown route, 405)
        except BulkpushError as exc:
            return _json({"error": str(exc)}, 400 if isinstance(exc, ConfigError) else 503)
        except Exception:
            log.exception("control API: %s %s failed", request.method, request.path)
            return _json({"error": "internal error (see the worker's log)"}, 500)
        return response

    app = web.Application(middlewares=[auth])
    app[_WORKER] = worker

    async def submit(request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=orjson.loads)
        except ValueError:
            return _json({"error": "the body must be JSON"}, 400)
        if not isinstance(body, dict):
            return _json({"error": "the body must be a JSON object"}, 400)
        try:
            spec = JobSpec.from_json(body)
        except BulkpushError as exc:
            return _json({"error": str(exc)}, 400)
        refusal = await asyncio.to_thread(worker.allow.refusal, spec)
        if refusal:
            return _json({"error": f"{REFUSED}: {refusal}"}, 403)
        job_id = await worker.queue.submit(spec)
        return _json({"id": job_id}, 201)

    async def list_jobs(request: web.Request) -> web.Response:
        given = request.query.get("limit", "100")
        try:
            limit = int(given)
        except ValueError:
            limit = 0
        if not 1 <= limit <= _MAX_LIST:
            return _json({"error": f"limit must be an integer from 1 to {_MAX_LIST}"}, 400)
        views = await worker.queue.list_jobs(limit)
        return _json([v.to_json(with_parts=False) for v in views])

    async def get_job(request: web.Request) -> web.Response:
        view = await worker.queue.get(request.match_info["id"])
        if view is None:
            return _json({"error": "no such job"}, 404)
        return _json(view.to_json())

    async def healthz(request: web.Request) -> web.Response:
        if not authorized(request):
            return _json({"ok": True})  # for probes: nothing about the host
        return _json(
            {
                "ok": True,
                "worker": worker.id,
                "stopping": worker.stopping,
                "queue": redact_url(worker.queue.url),
            }
        )

    async def metrics(request: web.Request) -> web.Response:
        worker.metrics.set_depth(await worker.queue.depth())
        body, content_type = worker.metrics.render()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    app.router.add_post("/jobs", submit)
    app.router.add_get("/jobs", list_jobs)
    app.router.add_get("/jobs/{id}", get_job)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


async def start_control(
    addr: str, *, worker: Worker, token: str, idle_timeout_s: float = IDLE_TIMEOUT_S
) -> web.AppRunner:
    """Serve the control API on ``addr``; the caller ``await runner.cleanup()`` s it.

    ``idle_timeout_s``: see :data:`IDLE_TIMEOUT_S`.
    """
    host, port = parse_addr(addr)
    runner = web.AppRunner(
        build_control_app(worker, token), access_log=None, keepalive_timeout=idle_timeout_s
    )
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
