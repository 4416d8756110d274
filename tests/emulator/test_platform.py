"""The Platform API subset: stream datasources, processes, status, and the import flow."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from bulkpush.emulator import Emulator, EmulatorConfig
from tests.conftest import TEST_TOKEN, EmulatorFactory
from tests.emulator.conftest import Answer, Api
from tests.emulator.test_uploads import TUTORIAL

AUTH = {"X-Auth-Token": "1234:simsalabim"}


@pytest.fixture
async def platform(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> tuple[Emulator, Api]:
    emu = await emulator_factory(
        EmulatorConfig(
            tokens=frozenset({TEST_TOKEN, "1234:simsalabim"}),
            other_rate=None,
            process_duration_s=0.05,
        )
    )
    return emu, Api(session, emu.url, TEST_TOKEN)


async def call(api: Api, method: str, path: str, body: object = None) -> Answer:
    return await api.call(
        method, path, json=body, ctype="application/json", headers=AUTH, token=None
    )


async def wait_for(api: Api, site: int, pid: str, want: str) -> Answer:
    async with asyncio.timeout(5):
        while True:
            answer = await call(api, "GET", f"/platform/v2/sites/{site}/status/{pid}")
            if answer.json["status"] == want:
                return answer
            await asyncio.sleep(0.01)


async def test_datasource_crud(platform: tuple[Emulator, Api]) -> None:
    emu, api = platform
    sid = emu.create_stream("datasource")
    created = await call(
        api,
        "POST",
        "/platform/v2/sites/1/streams",
        {"import_type": 1, "description": "stream api", "stream_id": int(sid), "status": "active"},
    )
    assert created.status == 201
    assert created.json == {
        "success": True,
        "Sources": [
            {
                "id": 1,
                "site_id": 1,
                "description": "stream api",
                "source": "",
                "import_type": 1,
                "import_id": 331,
                "status": "active",
                "settings": [f"stream : {sid}"],
            }
        ],
    }
    again = await call(api, "POST", "/platform/v2/sites/1/streams", {"stream_id": int(sid)})
    assert again.status == 422
    assert again.json == {
        "success": False,
        "message": "The stream datasource for the site already exists.",
    }
    listed = await call(api, "GET", "/platform/v2/sites/1/streams")
    assert listed.status == 200
    assert listed.json["Sources"] == created.json["Sources"]
    assert listed.json["meta"] == {"cursor": {"current": 0, "prev": 0, "next": 1, "count": 1}}
    updated = await call(
        api, "PUT", f"/platform/v2/sites/1/streams/{sid}", {"status": "paused", "import_type": 2}
    )
    assert updated.status == 200
    assert updated.json["Sources"][0]["status"] == "paused"
    assert updated.json["Sources"][0]["import_type"] == 2
    deleted = await call(api, "DELETE", f"/platform/v2/sites/1/streams/{sid}")
    assert deleted.json == {"success": True, "message": "Resource was deleted successfully!"}
    gone = await call(api, "DELETE", f"/platform/v2/sites/1/streams/{sid}")
    assert gone.status == 422
    assert gone.json["message"] == "The stream datasource for the site doesn't exist."
    assert (await call(api, "PUT", f"/platform/v2/sites/1/streams/{sid}", {})).status == 422
    missing = await call(api, "POST", "/platform/v2/sites/1/streams", {"stream_id": 999})
    assert missing.status == 404
    assert (await call(api, "PUT", "/platform/v2/sites/1/streams/999", {})).status == 404
    assert (await call(api, "GET", "/platform/v2/sites/abc/streams")).status == 404
    bad = await call(api, "POST", "/platform/v2/sites/1/streams", {"stream_id": sid, "status": "x"})
    assert bad.status == 400


async def test_platform_auth(platform: tuple[Emulator, Api]) -> None:
    _, api = platform
    refused = await api.call("GET", "/platform/v2/sites/1/streams", token=None)
    assert refused.status == 401
    assert refused.json == {
        "success": False,
        "message": "Forbidden, your auth token seems to be invalid",
    }
    wrong = await api.call(
        "GET", "/platform/v2/sites/1/streams", token=None, headers={"X-Auth-Token": "1:bad"}
    )
    assert wrong.status == 401
    # The unified datasource endpoints also take the Stream API's bearer token.
    assert (await api.call("GET", "/platform/v2/sites/1/streams")).status == 200


async def test_one_running_one_queued_then_429(platform: tuple[Emulator, Api]) -> None:
    _, api = platform
    first = await call(api, "POST", "/platform/v2/process/5", {"action": "export-all"})
    assert first.status == 200
    assert first.json["success"] is True
    assert first.json["message"] == "A new process has been triggered successfully!"
    pid = first.json["process_id"]
    assert len(pid) == 32 and uuid.UUID(pid)
    second = await call(api, "POST", "/platform/v2/process/5", {"action": "import"})
    assert second.status == 200
    third = await call(api, "POST", "/platform/v2/process/5", {"action": "import"})
    assert third.status == 429
    assert third.json == {
        "success": False,
        "message": "Cannot trigger a new process, a process is already in the current queue.",
    }
    # Another site has its own queue.
    assert (await call(api, "POST", "/platform/v2/process/6", {"action": "all"})).status == 200
    running = await call(api, "GET", f"/platform/v2/sites/5/status/{pid}")
    assert running.json["status"] in ("running", "success")
    queued = await call(api, "GET", f"/platform/v2/sites/5/status/{second.json['process_id']}")
    assert queued.json["status"] in ("queued", "running", "success")
    await wait_for(api, 5, second.json["process_id"], "success")
    assert (await call(api, "POST", "/platform/v2/process/5", {"action": "import"})).status == 200


async def test_status_of_unknown_and_malformed_pids(platform: tuple[Emulator, Api]) -> None:
    _, api = platform
    unknown = uuid.uuid4().hex
    answer = await call(api, "GET", f"/platform/v2/sites/5/status/{unknown}")
    assert answer.status == 200
    assert answer.json["status"] == "queued"
    assert answer.json["links"] == [{"self": f"{api.url}/platform/v2/sites/5/status/{unknown}"}]
    dashed = await call(api, "GET", f"/platform/v2/sites/5/status/{uuid.uuid4()}")
    assert dashed.json["status"] == "queued"
    malformed = await call(api, "GET", "/platform/v2/sites/5/status/not-a-pid")
    assert malformed.status == 400 and malformed.json["success"] is False


async def test_bad_process_requests(platform: tuple[Emulator, Api]) -> None:
    _, api = platform
    assert (await call(api, "POST", "/platform/v2/process/5", {"action": "dance"})).status == 400
    assert (await call(api, "POST", "/platform/v2/process/5", {"action": "export"})).status == 400
    assert (await call(api, "POST", "/platform/v2/process/x", {"action": "import"})).status == 404
    answer = await api.call(
        "POST",
        "/platform/v2/process/5",
        body=b"{",
        ctype="application/json",
        headers=AUTH,
        token=None,
    )
    assert answer.status == 400


async def test_import_moves_uploaded_batches_to_processed(platform: tuple[Emulator, Api]) -> None:
    emu, api = platform
    sid = emu.create_stream("import me")
    other = emu.create_stream("not linked")
    batch_id = (await api.upload(sid, TUTORIAL)).json["data"]["id"]
    failed_id = (await api.upload(sid, b"{}")).json["data"]["id"]
    other_batch = (await api.upload(other, b'{"id":"1"}')).json["data"]["id"]
    assert (
        await call(api, "POST", "/platform/v2/sites/42/streams", {"stream_id": int(sid)})
    ).status == 201
    pid = (await call(api, "POST", "/platform/v2/process/42", {"action": "import"})).json[
        "process_id"
    ]
    await wait_for(api, 42, pid, "success")
    batch = (await api.call("GET", f"/streams/{sid}/batches/{batch_id}")).json["data"]
    assert batch["attributes"]["status"] == "processed"
    assert batch["attributes"]["errorCount"] == 1
    processing = batch["attributes"]["stages"]["processing"]
    assert processing["status"] == "success"
    assert (processing["successCount"], processing["errorCount"], processing["errors"]) == (
        2,
        0,
        [],
    )
    assert processing["completedAt"].endswith("+00:00")
    failed = (await api.call("GET", f"/streams/{sid}/batches/{failed_id}")).json["data"]
    assert failed["attributes"]["status"] == "failed"
    assert failed["attributes"]["stages"]["processing"] is None
    untouched = (await api.call("GET", f"/streams/{other}/batches/{other_batch}")).json["data"]
    assert untouched["attributes"]["status"] == "uploaded"


async def test_referenced_errors_surface_in_processing(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(
        EmulatorConfig(other_rate=None, referenced_min_bytes=0, process_duration_s=0.0)
    )
    api = Api(session, emu.url, "t")
    sid = emu.create_stream("referenced import", "referenced")
    body = b'[{"id":"a"},{"name":"no id"},{"id":"b"}]'
    answer = await api.upload(sid, body, ctype="application/json")
    assert answer.status == 200 and answer.upload["successCount"] == 3
    emu.link_stream(7, sid)
    pid = (await call(api, "POST", "/platform/v2/process/7", {"action": "all"})).json["process_id"]
    await wait_for(api, 7, pid, "success")
    batch = emu.batches(sid)[0]
    attributes = batch["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["status"] == "processed"
    assert attributes["errorCount"] == 1
    processing = attributes["stages"]["processing"]
    assert processing["status"] == "warning"
    assert processing["successCount"] == 2
    assert processing["errors"] == [
        {
            "message": 'Missing "id" attribute',
            "occurrences": 1,
            "example": {"lineNumber": 2, "value": '{"name":"no id"}'},
        }
    ]


async def test_locked_streams_fail_the_import_and_disabled_ones_are_skipped(
    platform: tuple[Emulator, Api],
) -> None:
    emu, api = platform
    sid = emu.create_stream("locked import")
    batch_id = (await api.upload(sid, b'{"id":"1"}')).json["data"]["id"]
    emu.link_stream(9, sid)
    emu.set_stream_status(sid, "locked_processing")
    pid = (await call(api, "POST", "/platform/v2/process/9", {"action": "import"})).json[
        "process_id"
    ]
    failed = await wait_for(api, 9, pid, "failed")
    assert failed.json["links"][0] == {"errors": f"{api.url}/platform/v2/sites/9/errors?pid={pid}"}
    emu.set_stream_status(sid, "disabled")
    pid = (await call(api, "POST", "/platform/v2/process/9", {"action": "import"})).json[
        "process_id"
    ]
    await wait_for(api, 9, pid, "success")
    batch = (await api.call("GET", f"/streams/{sid}/batches/{batch_id}")).json["data"]
    assert batch["attributes"]["status"] == "uploaded"
    emu.set_stream_status(sid, "active")
    pid = (await call(api, "POST", "/platform/v2/process/9", {"action": "import"})).json[
        "process_id"
    ]
    await wait_for(api, 9, pid, "success")
    batch = (await api.call("GET", f"/streams/{sid}/batches/{batch_id}")).json["data"]
    assert batch["attributes"]["status"] == "processed"


async def test_platform_rate_limits(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(
        EmulatorConfig(clock=lambda: 1_700_000_000.5, process_interval_s=300.0)
    )
    api = Api(session, emu.url, "t")
    answers = [await call(api, "GET", "/platform/v2/sites/1/streams") for _ in range(6)]
    assert [a.status for a in answers] == [200] * 5 + [429]
    assert answers[-1].json == {"success": False, "message": "Too many attempts."}
    assert answers[0].headers["X-RateLimit-Limit"] == "5"
    assert answers[0].headers["X-Ratelimit-Remaining"] == "4"
    assert answers[0].headers["X-Ratelimit-Retry-After"] == "1700000001"
    first = await call(api, "POST", "/platform/v2/process/3", {"action": "import"})
    assert first.status == 200
    soon = await call(api, "POST", "/platform/v2/process/3", {"action": "import"})
    assert soon.status == 429
    assert soon.json == {"success": False, "message": "Too many attempts."}
