"""The control API: bearer token, jobs, health, Prometheus metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bulkpush.worker.allow import Allowances
from bulkpush.worker.control import start_control
from bulkpush.worker.jobs import JobOptions, JobSpec, Target
from bulkpush.worker.runner import Worker

from .conftest import free_port

pytestmark = pytest.mark.timeout(60)


async def test_control_api(queue_factory: Any, tmp_path: Path) -> None:
    q = queue_factory()
    worker = Worker(
        q, environ={}, allow=Allowances(api_urls=("http://127.0.0.1:1",), dirs=(str(tmp_path),))
    )
    port = free_port()
    runner = await start_control(f"127.0.0.1:{port}", worker=worker, token="s3cret")
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer s3cret"}
    spec = JobSpec(
        sources=(str(tmp_path / "c.ndjson"),),
        target=Target(stream="7", api_url="http://127.0.0.1:1"),
        options=JobOptions(rate=5.0),
    )
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200 and (await r.json())["ok"] is True
            async with http.get(f"{base}/jobs") as r:
                assert r.status == 401
            async with http.get(f"{base}/jobs", headers={"Authorization": "Bearer no"}) as r:
                assert r.status == 401
            async with http.post(f"{base}/jobs", json=spec.to_json(), headers=auth) as r:
                assert r.status == 201
                job_id = (await r.json())["id"]
            async with http.post(f"{base}/jobs", json={"sources": []}, headers=auth) as r:
                assert r.status == 400
            bogus = spec.to_json()
            bogus["target"]["kind"] = "bogus"
            async with http.post(f"{base}/jobs", json=bogus, headers=auth) as r:
                assert r.status == 400
                assert "known kinds are productsup-stream" in (await r.json())["error"]
            async with http.get(f"{base}/jobs", headers=auth) as r:
                assert [j["id"] for j in await r.json()] == [job_id]
            async with http.get(f"{base}/jobs/{job_id}", headers=auth) as r:
                doc = await r.json()
                assert doc["status"] == "queued" and doc["report"]["read"] == 0
            async with http.get(f"{base}/jobs/nope", headers=auth) as r:
                assert r.status == 404
            async with http.get(f"{base}/metrics", headers=auth) as r:
                text = await r.text()
                assert "bulkpush_queue_depth 1.0" in text
                assert "s3cret" not in text
    finally:
        await runner.cleanup()


async def test_bad_input_is_a_400_and_healthz_says_little_without_the_token(
    queue_factory: Any,
) -> None:
    worker = Worker(queue_factory(), environ={})
    port = free_port()
    runner = await start_control(f"127.0.0.1:{port}", worker=worker, token="s3cret")
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer s3cret"}
    try:
        async with aiohttp.ClientSession() as http:
            for bad in ("abc", "0", "-1", "1e9", "99999999999999999999"):
                async with http.get(f"{base}/jobs?limit={bad}", headers=auth) as r:
                    assert r.status == 400, bad
                    body = await r.json()
                    assert body == {"error": "limit must be an integer from 1 to 10000"}
            async with http.get(f"{base}/jobs?limit=5", headers=auth) as r:
                assert r.status == 200 and await r.json() == []
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200 and await r.json() == {"ok": True}
            async with http.get(f"{base}/healthz", headers={"Authorization": "Bearer no"}) as r:
                assert await r.json() == {"ok": True}
            async with http.get(f"{base}/healthz", headers=auth) as r:
                doc = await r.json()
                assert doc["ok"] is True and doc["worker"] == worker.id
                assert doc["stopping"] is False and "queue" in doc
    finally:
        await runner.cleanup()
