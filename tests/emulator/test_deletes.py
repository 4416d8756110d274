"""Deleting products: NDJSON ids, ``?all=true``, and one id in the URL."""

from __future__ import annotations

from bulkpush.emulator import Emulator
from tests.emulator.conftest import NDJSON, Api


async def seeded(api: Api, emulator: Emulator, name: str) -> str:
    sid = emulator.create_stream(name)
    body = b'{"id":"34SKJDF42DF","n":1}\n{"id":"475-SHIRT-XL","n":2}\n{"id":7824796324,"n":3}\n'
    body += b'{"id":"a/b c","n":4}\n{"id":"keep","n":5}\n'
    assert (await api.upload(sid, body)).status == 200
    return sid


async def test_delete_ids_from_the_body(api: Api, emulator: Emulator) -> None:
    sid = await seeded(api, emulator, "delete body")
    body = b'{"id":"34SKJDF42DF"}\n{"id":"475-SHIRT-XL"}\n{"id":7824796324}\n{"id":"absent"}\n'
    answer = await api.call("DELETE", f"/streams/{sid}/products", body=body, ctype=NDJSON)
    assert answer.status == 200
    assert answer.json == {"meta": {"deleted": 3, "errors": []}}
    assert sorted(emulator.products(sid)) == ["a/b c", "keep"]
    assert emulator.counters(sid)["products_deleted"] == 3


async def test_invalid_delete_lines_are_reported(api: Api, emulator: Emulator) -> None:
    sid = await seeded(api, emulator, "delete invalid")
    # The reference's own example, {"id":34SKJDF42DF}, is not JSON: it is a syntax error.
    body = b'{"id":34SKJDF42DF}\n{"id":"keep"}\n'
    answer = await api.call("DELETE", f"/streams/{sid}/products", body=body, ctype=NDJSON)
    assert answer.status == 200
    assert answer.json["meta"]["deleted"] == 1
    [error] = answer.json["meta"]["errors"]
    assert error["message"] == "Syntax error"
    assert error["example"]["lineNumber"] == 1
    only_bad = await api.call("DELETE", f"/streams/{sid}/products", body=b'{"x":1}\n', ctype=NDJSON)
    assert only_bad.status == 422
    assert only_bad.json["errors"][0]["title"] == 'Missing "id" attribute'
    empty = await api.call("DELETE", f"/streams/{sid}/products", body=b"", ctype=NDJSON)
    assert empty.status == 422 and empty.title == "Empty Payload"


async def test_delete_all(api: Api, emulator: Emulator) -> None:
    sid = await seeded(api, emulator, "delete all")
    answer = await api.call("DELETE", f"/streams/{sid}/products?all=true")
    assert answer.status == 200
    assert answer.json["meta"]["deleted"] == 5
    assert emulator.products(sid) == {}


async def test_delete_one_by_url_encoded_id(api: Api, emulator: Emulator) -> None:
    sid = await seeded(api, emulator, "delete url")
    answer = await api.call("DELETE", f"/streams/{sid}/products/475-SHIRT-XL")
    assert answer.status == 200 and answer.json["meta"]["deleted"] == 1
    answer = await api.call("DELETE", f"/streams/{sid}/products/a%2Fb%20c/")
    assert answer.status == 200 and answer.json["meta"]["deleted"] == 1
    again = await api.call("DELETE", f"/streams/{sid}/products/475-SHIRT-XL")
    assert again.status == 200 and again.json["meta"]["deleted"] == 0
    assert sorted(emulator.products(sid)) == ["34SKJDF42DF", "7824796324", "keep"]


async def test_deletes_on_a_locked_stream_are_423(api: Api, emulator: Emulator) -> None:
    sid = await seeded(api, emulator, "delete locked")
    emulator.set_stream_status(sid, "locked")
    assert (await api.call("DELETE", f"/streams/{sid}/products?all=true")).status == 423
    assert (await api.call("DELETE", f"/streams/{sid}/products/keep")).status == 423
    assert len(emulator.products(sid)) == 5


async def test_deletes_need_auth_and_a_stream(api: Api) -> None:
    assert (await api.call("DELETE", "/streams/999/products?all=true")).status == 404
    assert (await api.call("DELETE", "/streams/999/products?all=true", token=None)).status == 401
