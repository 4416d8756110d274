"""Stream management and authentication over real HTTP."""

from __future__ import annotations

import aiohttp
import pytest

from bulkpush.emulator import Emulator, EmulatorConfig
from tests.conftest import EmulatorFactory
from tests.emulator.conftest import JSONAPI, Api


async def test_create_answers_201_with_the_documented_resource(api: Api) -> None:
    answer = await api.create_stream("Getting started tutorial My first stream")
    assert answer.status == 201
    assert answer.headers["Content-Type"] == JSONAPI
    data = answer.json["data"]
    assert answer.headers["Content-Location"] == f"/streams/{data['id']}"
    assert data["type"] == "stream"
    assert int(data["id"]) > 0
    assert data["attributes"]["name"] == "Getting started tutorial My first stream"
    assert data["attributes"]["type"] == "chunked"
    assert data["attributes"]["createdAt"].endswith("+00:00")
    assert data["relationships"]["account"]["data"]["type"] == "account"


@pytest.mark.parametrize("name", ["ab", "x" * 256, 42, None])
async def test_names_must_have_3_to_255_characters(api: Api, name: object) -> None:
    answer = await api.call(
        "POST",
        "/streams",
        json={"data": {"type": "stream", "attributes": {"name": name, "type": "chunked"}}},
    )
    assert answer.status == 422
    assert answer.json["errors"][0]["status"] == "422"


async def test_names_of_3_and_255_characters_are_fine(api: Api) -> None:
    assert (await api.create_stream("abc")).status == 201
    assert (await api.create_stream("é" * 255)).status == 201


async def test_duplicate_name_is_409(api: Api) -> None:
    assert (await api.create_stream("same")).status == 201
    answer = await api.create_stream("same")
    assert answer.status == 409
    assert answer.json == {
        "errors": [
            {"status": "409", "title": "Conflict", "detail": "a stream named 'same' already exists"}
        ]
    }


async def test_type_must_be_chunked_or_referenced(api: Api) -> None:
    assert (await api.create_stream("bad type", "streamed")).status == 422
    assert (await api.create_stream("referenced one", "referenced")).status == 201


async def test_malformed_documents(api: Api) -> None:
    assert (await api.call("POST", "/streams", body=b"{", ctype=JSONAPI)).status == 400
    assert (await api.call("POST", "/streams", json={"nodata": 1})).status == 400
    bad_type = {"data": {"type": "batch", "attributes": {"name": "abc", "type": "chunked"}}}
    assert (await api.call("POST", "/streams", json=bad_type)).status == 409
    answer = await api.call("POST", "/streams", body=b"{}", ctype="text/plain")
    assert answer.status == 415


async def test_at_most_max_streams_per_account(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(EmulatorConfig(max_streams=3, other_rate=None))
    api = Api(session, emu.url, "any")
    for i in range(3):
        assert (await api.create_stream(f"stream {i}")).status == 201
    answer = await api.create_stream("one too many")
    assert answer.status == 422
    assert answer.title == "Stream limit reached"


async def test_the_default_limit_is_100(emulator: Emulator) -> None:
    for i in range(100):
        emulator.create_stream(f"s{i:03d}")
    with pytest.raises(ValueError, match="limit"):
        emulator.create_stream("s100")


async def test_get_rename_and_delete(free_api: Api, free_emulator: Emulator) -> None:
    api, emulator = free_api, free_emulator
    sid = emulator.create_stream("original", "referenced")
    got = await api.call("GET", f"/streams/{sid}")
    assert got.status == 200 and got.json["data"]["attributes"]["name"] == "original"
    rename = {"data": {"id": sid, "type": "stream", "attributes": {"name": "renamed"}}}
    answer = await api.call("PATCH", f"/streams/{sid}", json=rename)
    assert answer.status == 200
    assert answer.json["data"]["attributes"] == {
        **got.json["data"]["attributes"],
        "name": "renamed",
        "updatedAt": answer.json["data"]["attributes"]["updatedAt"],
    }
    retype = {"data": {"id": sid, "type": "stream", "attributes": {"type": "chunked"}}}
    answer = await api.call("PATCH", f"/streams/{sid}", json=retype)
    assert answer.status == 422 and "type" in answer.json["errors"][0]["detail"]
    same = {"data": {"id": sid, "type": "stream", "attributes": {"type": "referenced"}}}
    assert (await api.call("PATCH", f"/streams/{sid}", json=same)).status == 200
    wrong_id = {"data": {"id": "1", "type": "stream", "attributes": {"name": "zzz"}}}
    assert (await api.call("PATCH", f"/streams/{sid}", json=wrong_id)).status == 409
    emulator.create_stream("taken")
    taken = {"data": {"id": sid, "type": "stream", "attributes": {"name": "taken"}}}
    assert (await api.call("PATCH", f"/streams/{sid}", json=taken)).status == 409
    deleted = await api.call("DELETE", f"/streams/{sid}")
    assert deleted.status == 204 and deleted.raw == b""
    assert (await api.call("GET", f"/streams/{sid}")).status == 404
    assert (await api.call("DELETE", f"/streams/{sid}")).status == 404
    assert (await api.call("GET", "/streams/nonsense")).status == 404


async def test_a_deleted_streams_name_stays_reserved(api: Api, emulator: Emulator) -> None:
    sid = emulator.create_stream("reserved name")
    assert (await api.call("DELETE", f"/streams/{sid}")).status == 204
    answer = await api.create_stream("reserved name")
    assert answer.status == 409
    assert "reserved" in answer.json["errors"][0]["detail"]


async def test_reservation_ends(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(EmulatorConfig(name_reservation_s=0.0))
    api = Api(session, emu.url, "t")
    sid = emu.create_stream("short lived")
    await api.call("DELETE", f"/streams/{sid}")
    assert (await api.create_stream("short lived")).status == 201


async def test_pagination_links_and_bounds(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(EmulatorConfig(other_rate=None))
    api = Api(session, emu.url, "t")
    ids = [emu.create_stream(f"stream {i:02d}") for i in range(23)]

    first = await api.call("GET", "/streams")
    assert first.status == 200
    assert [s["id"] for s in first.json["data"]] == ids[:10]
    links = first.json["links"]
    assert links["self"].endswith("/streams?page[offset]=0&page[limit]=10")
    assert links["next"].endswith("page[offset]=10&page[limit]=10")
    assert links["last"].endswith("page[offset]=20&page[limit]=10")
    assert "prev" not in links
    assert first.json["meta"] == {"total": 23}

    page = await api.call("GET", "/streams?page[offset]=10&page[limit]=10")
    assert [s["id"] for s in page.json["data"]] == ids[10:20]
    assert page.json["links"]["prev"].endswith("page[offset]=0&page[limit]=10")

    last = await api.call("GET", "/streams?page%5Boffset%5D=20&page%5Blimit%5D=10")
    assert [s["id"] for s in last.json["data"]] == ids[20:]
    assert "next" not in last.json["links"]

    # Following "next" links visits every stream once.
    seen: list[str] = []
    url: str | None = f"{emu.url}/streams?page[limit]=3"
    while url:
        async with session.get(url, headers={"Authorization": "Bearer t"}) as r:
            doc = await r.json(content_type=None)
        seen += [s["id"] for s in doc["data"]]
        url = doc["links"].get("next")
    assert seen == ids

    one = await api.call("GET", "/streams?page[limit]=1")
    assert len(one.json["data"]) == 1
    for bad in ("page[limit]=0", "page[limit]=11", "page[offset]=-1", "page[limit]=x"):
        answer = await api.call("GET", f"/streams?{bad}")
        assert answer.status == 400, bad
    beyond = await api.call("GET", "/streams?page[offset]=100")
    assert beyond.status == 200 and beyond.json["data"] == []


async def test_every_request_needs_a_bearer_token(api: Api, emulator: Emulator) -> None:
    sid = emulator.create_stream("auth")
    for method, path in [
        ("GET", "/streams"),
        ("GET", f"/streams/{sid}"),
        ("POST", f"/streams/{sid}/products"),
        ("GET", f"/streams/{sid}/batches/x"),
    ]:
        missing = await api.call(method, path, token=None)
        assert missing.status == 401, path
        assert missing.json == {"errors": [{"status": "401", "title": "Unauthorized"}]}
        assert "ratelimit-limit" in missing.headers
        assert (await api.call(method, path, token="wrong")).status == 401
    basic = await api.call("GET", "/streams", token=None, headers={"Authorization": "Basic dA=="})
    assert basic.status == 401
    assert emulator.counters()["unauthorized"] >= 9


async def test_without_tokens_any_non_empty_token_is_accepted(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(EmulatorConfig())
    api = Api(session, emu.url, "whatever-you-like")
    assert (await api.call("GET", "/streams")).status == 200
    assert (await api.call("GET", "/streams", token="")).status == 401
    assert (await api.call("GET", "/streams", token=None)).status == 401


async def test_several_tokens(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(EmulatorConfig(tokens=frozenset({"a", "b"})))
    api = Api(session, emu.url, "a")
    assert (await api.call("GET", "/streams")).status == 200
    assert (await api.call("GET", "/streams", token="b")).status == 200
    assert (await api.call("GET", "/streams", token="c")).status == 401


def test_config_repr_hides_tokens() -> None:
    text = repr(EmulatorConfig(tokens=frozenset({"secret-token"})))
    assert "secret-token" not in text
    assert "tokens=<1 hidden>" in text
