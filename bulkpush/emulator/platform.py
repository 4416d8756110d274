"""The subset of the Platform API a push needs: processes, their status, stream datasources.

Processes are simulated: a triggered process waits in its site's queue, runs for
``EmulatorConfig.process_duration_s`` and ends ``success`` (or ``failed``). An
``import`` (or ``all``) moves the ``uploaded`` batches of the site's linked
streams to ``processed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from bulkpush.emulator.config import EmulatorConfig
from bulkpush.emulator.responses import PlatformError, platform_json, request_info
from bulkpush.emulator.state import Datasource, EmulatorState, Process, Site
from bulkpush.emulator.uplink import Uplink

__all__ = ["PlatformApi"]

# "Action value explanation"
_ACTIONS = frozenset({"import", "export", "channel", "export-all", "all"})
_IMPORTING = frozenset({"import", "all"})
_DATASOURCE_STATUSES = frozenset({"active", "paused"})
_IMPORT_TYPES = frozenset({1, 2})
# "Process Identifier aka PID (format: UUID 32)". Assumption: 32 hex digits, with
# or without the dashes of the canonical UUID form.
_PID = re.compile(r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})$")
NOT_FOUND = "The requested resource could not be found."


def _positive_int(raw: object) -> int:
    if isinstance(raw, bool):
        raise PlatformError(404, NOT_FOUND)
    try:
        value = int(str(raw))
    except ValueError:
        raise PlatformError(404, NOT_FOUND) from None
    if value < 1:
        raise PlatformError(404, NOT_FOUND)
    return value


async def _body(request: web.Request, uplink: Uplink) -> dict[str, Any]:
    raw = await uplink.read_all(request)
    request_info().size = len(raw)
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise PlatformError(400, "Bad Request -- Your request was malformed") from None
    if not isinstance(body, dict):
        raise PlatformError(400, "Bad Request -- Your request was malformed")
    return body


class PlatformApi:
    """Handlers of the Platform API subset, and the simulated process runner."""

    def __init__(self, state: EmulatorState, config: EmulatorConfig, uplink: Uplink) -> None:
        self.state = state
        self.config = config
        self.uplink = uplink
        self._runners: dict[int, asyncio.Task[None]] = {}

    def add_routes(self, app: web.Application) -> None:
        """Register the Platform API's routes, and stop the runners on cleanup."""
        r = app.router
        r.add_post("/platform/v2/process/{siteId}", self.trigger)
        r.add_get("/platform/v2/sites/{siteId}/status/{pid}", self.status)
        r.add_get("/platform/v2/sites/{siteId}/streams", self.list_datasources)
        r.add_post("/platform/v2/sites/{siteId}/streams", self.create_datasource)
        r.add_put("/platform/v2/sites/{siteId}/streams/{streamId}", self.update_datasource)
        r.add_delete("/platform/v2/sites/{siteId}/streams/{streamId}", self.delete_datasource)
        app.on_cleanup.append(self._cleanup)

    async def _cleanup(self, _app: web.Application) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel the running simulated processes."""
        tasks = list(self._runners.values())
        self._runners.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _site(self, request: web.Request) -> Site:
        return self.state.site(_positive_int(request.match_info["siteId"]))

    # -- processes -----------------------------------------------------------------

    async def trigger(self, request: web.Request) -> web.Response:
        """``POST /platform/v2/process/{siteId}``: queue a process.

        One process runs per site and one more may wait; a third is refused
        with the documented 429 message.
        """
        site = self._site(request)
        body = await _body(request, self.uplink)
        action = body.get("action")
        if action not in _ACTIONS:
            # Assumption: a missing or unknown action is a 400.
            raise PlatformError(400, f"action must be one of {sorted(_ACTIONS)}")
        if action in ("export", "channel") and "id" not in body:
            raise PlatformError(400, f"an id is required for the action {action}")
        now = time.monotonic()
        # Assumption: "1 request per site per 5 minutes" is off by default (it would
        # stall every test and demo); process_interval_s=300 turns it on.
        interval = self.config.process_interval_s
        last = site.last_trigger
        if interval is not None and last is not None and now - last < interval:
            # "1 request per site per 5 minutes" (Platform API "Rate limiting").
            raise PlatformError(429, "Too many attempts.")
        limits = 1 + 1  # "Only a single Process can run per site, ... queue up to 1 additional"
        if len(site.pending) >= limits:
            raise PlatformError(
                429, "Cannot trigger a new process, a process is already in the current queue."
            )
        site.last_trigger = now
        process = Process(pid=uuid.uuid4().hex, site_id=site.id, action=str(action))
        site.processes[process.pid] = process
        site.pending.append(process)
        if site.id not in self._runners:
            task = asyncio.get_running_loop().create_task(self._run(site))
            self._runners[site.id] = task
        return platform_json(
            {
                "success": True,
                "process_id": process.pid,
                "estimated_duration": self.config.process_duration_s,
                "message": "A new process has been triggered successfully!",
            }
        )

    async def _run(self, site: Site) -> None:
        try:
            while site.pending:
                process = site.pending[0]
                process.status = "running"
                await asyncio.sleep(self.config.process_duration_s)
                ok = True
                if process.action in _IMPORTING:
                    ok = self.state.import_site(site)
                process.status = "success" if ok else "failed"
                site.pending.popleft()
        finally:
            self._runners.pop(site.id, None)

    async def status(self, request: web.Request) -> web.Response:
        """``GET /platform/v2/sites/{siteId}/status/{pid}``.

        A well-formed pid the site does not know stays ``queued`` ("the platform
        validates only the PID format"); assumption: a malformed pid is a 400.
        """
        site = self._site(request)
        pid = request.match_info["pid"]
        # Assumption: "validates only the PID format" read as: a malformed pid is a
        # 400; a well-formed unknown one stays "queued" forever (documented).
        if not _PID.match(pid):
            raise PlatformError(400, "Bad Request -- the pid is not a valid process identifier")
        process = site.processes.get(pid.replace("-", "").lower())
        status = process.status if process is not None else "queued"
        base = f"{request.scheme}://{request.host}/platform/v2/sites/{site.id}"
        links: list[dict[str, str]] = []
        if status == "failed":
            links.append({"errors": f"{base}/errors?pid={pid}"})
        links.append({"self": f"{base}/status/{pid}"})
        return platform_json({"success": True, "status": status, "links": links})

    # -- stream datasources --------------------------------------------------------

    async def list_datasources(self, request: web.Request) -> web.Response:
        """``GET /platform/v2/sites/{siteId}/streams`` with cursor pagination."""
        site = self._site(request)

        def param(name: str, default: int) -> int:
            try:
                return int(request.query.get(name, default))
            except ValueError:
                raise PlatformError(400, f"{name} must be an integer") from None

        limit, cursor, previous = param("limit", 50), param("cursor", 0), param("previous", 0)
        sources = sorted(site.datasources.values(), key=lambda d: d.id)
        page = [d for d in sources if d.id > cursor][: max(limit, 0)]
        return platform_json(
            {
                "success": True,
                "Sources": [d.to_json() for d in page],
                "meta": {
                    "cursor": {
                        "current": cursor,
                        "prev": previous,
                        "next": page[-1].id if page else 0,
                        "count": len(page),
                    }
                },
            }
        )

    @staticmethod
    def _fields(body: dict[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if "import_type" in body:
            if body["import_type"] not in _IMPORT_TYPES or isinstance(body["import_type"], bool):
                raise PlatformError(400, "import_type must be 1 or 2")
            fields["import_type"] = body["import_type"]
        if "status" in body:
            if body["status"] not in _DATASOURCE_STATUSES:
                raise PlatformError(400, "status must be active or paused")
            fields["status"] = body["status"]
        if "description" in body:
            fields["description"] = str(body["description"])
        return fields

    async def create_datasource(self, request: web.Request) -> web.Response:
        """``POST /platform/v2/sites/{siteId}/streams``: link a stream (201)."""
        site = self._site(request)
        body = await _body(request, self.uplink)
        if "stream_id" not in body:
            raise PlatformError(400, "stream_id is required")
        stream_id = _positive_int(body["stream_id"])
        ds = self.state.add_datasource(site.id, stream_id, **self._fields(body))
        return platform_json({"success": True, "Sources": [ds.to_json()]}, 201)

    async def update_datasource(self, request: web.Request) -> web.Response:
        """``PUT /platform/v2/sites/{siteId}/streams/{streamId}``."""
        site = self._site(request)
        stream_id = _positive_int(request.match_info["streamId"])
        fields = self._fields(await _body(request, self.uplink))
        ds = self._linked(site, stream_id)
        for name, value in fields.items():
            setattr(ds, name, value)
        return platform_json({"success": True, "Sources": [ds.to_json()]})

    async def delete_datasource(self, request: web.Request) -> web.Response:
        """``DELETE /platform/v2/sites/{siteId}/streams/{streamId}``."""
        site = self._site(request)
        stream_id = _positive_int(request.match_info["streamId"])
        self._linked(site, stream_id)
        del site.datasources[stream_id]
        return platform_json({"success": True, "message": "Resource was deleted successfully!"})

    def _linked(self, site: Site, stream_id: int) -> Datasource:
        if str(stream_id) not in self.state.streams:
            raise PlatformError(404, NOT_FOUND)
        ds = site.datasources.get(stream_id)
        if ds is None:
            raise PlatformError(422, "The stream datasource for the site doesn't exist.")
        return ds
