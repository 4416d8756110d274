"""Uploads, validation, gzip, stream statuses and batches over real HTTP."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from bulkpush.emulator import Emulator, EmulatorConfig
from tests.conftest import TEST_TOKEN, EmulatorFactory
from tests.emulator.conftest import JSONAPI, NDJSON, Api

# The reference's tutorial "Request 3": three products, the second with a syntax error.
TUTORIAL = (
    b'{"id":"34SKJDF42DF","name":"Product 1","company":"ACME Corp.","price":100}\n'
    b'{"id":"475-SHIRT-XL","name":"Product 2","company":"ACME Corp.","price":15", "size":"XL"}\n'
    b'{"id":7824796324,"name":"Product 3","company":"ACME Corp.","price":5,"sale_price":4.5,'
    b' "size":""}\n'
)
SECOND = TUTORIAL.split(b"\n")[1].decode()


async def test_tutorial_upload_answers_202_with_the_documented_batch(
    api: Api, emulator: Emulator
) -> None:
    sid = emulator.create_stream("Getting started tutorial My first stream")
    answer = await api.upload(sid, TUTORIAL, headers={"Accept": JSONAPI})
    assert answer.status == 202
    assert answer.headers["Content-Type"] == JSONAPI
    data = answer.json["data"]
    uuid.UUID(data["id"])
    assert data["type"] == "batch"
    assert data["relationships"] == {"stream": {"data": {"type": "stream", "id": sid}}}
    attributes = data["attributes"]
    assert attributes["status"] == "uploaded"
    assert attributes["errorCount"] == 1
    assert attributes["stages"]["processing"] is None
    upload = attributes["stages"]["upload"]
    assert upload["status"] == "warning"
    assert (upload["successCount"], upload["errorCount"]) == (2, 1)
    assert upload["errors"] == [
        {
            "message": "Syntax error",
            "occurrences": 1,
            "example": {"lineNumber": 2, "value": SECOND},
        }
    ]
    assert upload["completedAt"].endswith("+00:00")
    products = emulator.products(sid)
    assert products == {
        "34SKJDF42DF": TUTORIAL.split(b"\n")[0],
        "7824796324": TUTORIAL.split(b"\n")[2],
    }

    batch = await api.call("GET", f"/streams/{sid}/batches/{data['id']}")
    assert batch.status == 200
    assert batch.json == answer.json


async def test_all_valid_is_200_success(api: Api, emulator: Emulator) -> None:
    sid = emulator.create_stream("valid")
    answer = await api.upload(sid, b'{"id":"a","n":1}\n{"id":"b","n":2}\n')
    assert answer.status == 200
    assert answer.upload["status"] == "success"
    assert answer.upload["errors"] == []
    assert answer.json["data"]["attributes"]["status"] == "uploaded"


async def test_all_invalid_is_422_with_the_failed_batch(api: Api, emulator: Emulator) -> None:
    sid = emulator.create_stream("invalid")
    answer = await api.upload(sid, b'{"name":"a"}\n{"name":"b"}\n{}\n')
    assert answer.status == 422
    data = answer.json["data"]
    assert data["attributes"]["status"] == "failed"
    upload = answer.upload
    assert upload["status"] == "failure"
    assert (upload["successCount"], upload["errorCount"]) == (0, 3)
    assert upload["errors"] == [
        {
            "message": 'Missing "id" attribute',
            "occurrences": 2,
            "example": {"lineNumber": 1, "value": '{"name":"a"}'},
        },
        {
            "message": "Empty Product Attributes",
            "occurrences": 1,
            "example": {"lineNumber": 3, "value": "{}"},
        },
    ]
    again = await api.call("GET", f"/streams/{sid}/batches/{data['id']}")
    assert again.json["data"]["attributes"]["status"] == "failed"
    assert emulator.products(sid) == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{}", "Empty Product Attributes"),
        (b" ", "Empty Payload line"),
        (b'{"name":"no id"}', 'Missing "id" attribute'),
        (b'{"id":"1","name":"' + b"x" * 2_097_152 + b'"}', "Product payload is too large"),
        (b'{"id":"1","name":"a\x02b"}', "Control character error, possibly incorrectly encoded"),
        (b'{"id":"1" "name":"b"}', "Syntax error"),
    ],
)
async def test_each_documented_line_error_is_a_422(
    api: Api, emulator: Emulator, body: bytes, message: str
) -> None:
    sid = emulator.create_stream("line errors")
    answer = await api.upload(sid, body)
    assert answer.status == 422
    [error] = answer.upload["errors"]
    assert error["message"] == message
    assert error["occurrences"] == 1
    assert error["example"]["lineNumber"] == 1


async def test_line_of_exactly_2097152_bytes_is_accepted(api: Api, emulator: Emulator) -> None:
    sid = emulator.create_stream("edge")
    head = b'{"id":"1","name":"'
    line = head + b"x" * (2_097_152 - len(head) - 2) + b'"}'
    assert len(line) == 2_097_152
    assert (await api.upload(sid, line + b"\n")).status == 200


async def test_empty_payload_is_a_422_error_document(api: Api, emulator: Emulator) -> None:
    sid = emulator.create_stream("empty")
    answer = await api.upload(sid, b"")
    assert answer.status == 422
    assert answer.json == {"errors": [{"status": "422", "title": "Empty Payload"}]}


async def test_partial_upload_aggregates_by_message(api: Api, emulator: Emulator) -> None:
    sid = emulator.create_stream("partial")
    lines = [b'{"id":"%d"}' % i for i in range(10)]
    lines[3] = b'{"nope":1}'
    lines[6] = b""
    lines[8] = b'{"nope":2}'
    answer = await api.upload(sid, b"\n".join(lines) + b"\n")
    assert answer.status == 202
    upload = answer.upload
    assert (upload["successCount"], upload["errorCount"]) == (7, 3)
    by_message = {e["message"]: e for e in upload["errors"]}
    assert by_message['Missing "id" attribute']["occurrences"] == 2
    assert by_message['Missing "id" attribute']["example"] == {
        "lineNumber": 4,
        "value": '{"nope":1}',
    }
    assert by_message["Empty Payload line"]["example"] == {"lineNumber": 7, "value": ""}
    assert sorted(emulator.products(sid)) == sorted(str(i) for i in (0, 1, 2, 4, 5, 7, 9))
    counters = emulator.counters(sid)
    assert (counters["products_accepted"], counters["products_rejected"]) == (7, 3)


async def test_uploads_are_upserts_and_counted_per_id(api: Api, emulator: Emulator) -> None:
    sid = emulator.create_stream("upsert")
    await api.upload(sid, b'{"id":"a","v":1}\n{"id":"b","v":1}\n')
    await api.upload(sid, b'{"id":"a","v":2}\n')
    assert emulator.products(sid) == {"a": b'{"id":"a","v":2}', "b": b'{"id":"b","v":1}'}
    assert emulator.upload_counts(sid) == {"a": 2, "b": 1}


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_put_and_patch_upload_like_post(api: Api, emulator: Emulator, method: str) -> None:
    sid = emulator.create_stream("methods")
    answer = await api.call(method, f"/streams/{sid}/products", body=b'{"id":"m"}', ctype=NDJSON)
    assert answer.status == 200
    assert emulator.products(sid) == {"m": b'{"id":"m"}'}


async def test_gzip_and_charset(api: Api, emulator: Emulator) -> None:
    sid = emulator.create_stream("gzip")
    body = b"".join(b'{"id":"%d","name":"product %d"}\n' % (i, i) for i in range(2000))
    packed = gzip.compress(body)
    answer = await api.upload(
        sid,
        packed,
        ctype="application/x-ndjson; charset=UTF-8",
        headers={"Content-Encoding": "gzip"},
    )
    assert answer.status == 200
    assert answer.upload["successCount"] == 2000
    assert len(emulator.products(sid)) == 2000
    [logged] = [r for r in emulator.requests(sid) if r.method == "POST"]
    assert logged.size == len(packed)
    assert logged.products == 2000


async def test_malformed_gzip_is_400(api: Api, emulator: Emulator) -> None:
    sid = emulator.create_stream("bad gzip")
    answer = await api.upload(sid, b"not gzip at all", headers={"Content-Encoding": "gzip"})
    assert answer.status == 400
    truncated = gzip.compress(b'{"id":"1"}\n' * 100)[:-10]
    answer = await api.upload(sid, truncated, headers={"Content-Encoding": "gzip"})
    assert answer.status == 400
    assert emulator.products(sid) == {}


async def test_unknown_content_encoding_is_415(api: Api, emulator: Emulator) -> None:
    sid = emulator.create_stream("brotli")
    answer = await api.upload(sid, b'{"id":"1"}', headers={"Content-Encoding": "br"})
    assert answer.status == 415


@pytest.mark.parametrize("ctype", ["application/json", JSONAPI, "text/plain", None])
async def test_chunked_streams_take_ndjson_only(
    api: Api, emulator: Emulator, ctype: str | None
) -> None:
    sid = emulator.create_stream("types")
    answer = await api.call("POST", f"/streams/{sid}/products", body=b'{"id":"1"}', ctype=ctype)
    assert answer.status == 415
    assert answer.json["errors"][0]["status"] == "415"


async def test_unknown_stream_is_404(api: Api) -> None:
    assert (await api.upload("999", b'{"id":"1"}')).status == 404


async def test_request_bodies_over_the_maximum_are_413(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(EmulatorConfig(max_request_bytes=1000))
    api = Api(session, emu.url, "t")
    sid = emu.create_stream("big")
    body = b'{"id":"1","v":"' + b"x" * 2000 + b'"}\n'
    assert (await api.upload(sid, body)).status == 413

    async def chunked() -> AsyncIterator[
        bytes
    ]:  # no Content-Length: the limit is enforced while streaming
        for _ in range(10):
            yield b'{"id":"2","v":"' + b"y" * 200 + b'"}\n'

    async with session.post(
        f"{emu.url}/streams/{sid}/products",
        data=chunked(),
        headers={"Authorization": "Bearer t", "Content-Type": NDJSON},
    ) as r:
        assert r.status == 413
    # A small gzip body that decodes beyond the maximum is refused too.
    bomb = gzip.compress(b'{"id":"3"}\n' * 1000)
    assert len(bomb) < 1000
    answer = await api.upload(sid, bomb, headers={"Content-Encoding": "gzip"})
    assert answer.status == 413
    assert emu.products(sid) == {}


# -- referenced streams ---------------------------------------------------------------


@pytest.fixture
async def small_ref(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> tuple[Emulator, Api, str]:
    emu = await emulator_factory(
        EmulatorConfig(
            tokens=frozenset({TEST_TOKEN}), referenced_min_bytes=100, referenced_max_bytes=5000
        )
    )
    return emu, Api(session, emu.url, TEST_TOKEN), emu.create_stream("ref", "referenced")


def big_array(n: int) -> bytes:
    return orjson.dumps([{"id": f"p{i}", "name": f"product {i}"} for i in range(n)])


async def test_referenced_json_array(small_ref: tuple[Emulator, Api, str]) -> None:
    emu, api, sid = small_ref
    answer = await api.upload(sid, big_array(20), ctype="application/json")
    assert answer.status == 200
    assert answer.upload["status"] == "success"
    assert answer.upload["successCount"] == 20
    assert emu.products(sid)["p3"] == b'{"id":"p3","name":"product 3"}'


async def test_referenced_ndjson_and_gzip(small_ref: tuple[Emulator, Api, str]) -> None:
    emu, api, sid = small_ref
    body = b"".join(b'{"id":"n%d","name":"ndjson product"}\n' % i for i in range(10))
    assert (await api.upload(sid, body)).status == 200
    packed = gzip.compress(big_array(100))
    assert len(packed) >= 100 and len(gzip.decompress(packed)) <= 5000
    answer = await api.upload(
        sid, packed, ctype="application/json", headers={"Content-Encoding": "gzip"}
    )
    assert answer.status == 200
    assert len(emu.products(sid)) == 110


async def test_referenced_streams_do_not_validate_products_on_upload(
    small_ref: tuple[Emulator, Api, str],
) -> None:
    _, api, sid = small_ref
    body = b'{"id":"a","name":"valid product"}\n{"name":"no id here at all"}\n' + b" " * 100
    answer = await api.upload(sid, body)
    assert answer.status == 200
    assert answer.upload["status"] == "success"
    assert answer.upload["errors"] == []


@pytest.mark.parametrize("body", [b"[{ }]", b"[]", b"[ ]", b""])
async def test_referenced_empty_payloads_are_422(
    small_ref: tuple[Emulator, Api, str], body: bytes
) -> None:
    _, api, sid = small_ref
    answer = await api.upload(sid, body, ctype="application/json")
    assert answer.status == 422
    assert answer.title == "Empty Payload"


async def test_referenced_size_bounds(small_ref: tuple[Emulator, Api, str]) -> None:
    emu, api, sid = small_ref
    small = await api.upload(sid, b'[{"id":"x"}]', ctype="application/json")
    assert small.status == 422 and small.title == "Payload too small"
    large = await api.upload(sid, big_array(1000), ctype="application/json")
    assert large.status == 413
    broken = await api.upload(sid, big_array(20)[:-1], ctype="application/json")
    assert broken.status == 422 and broken.title == "Syntax error"
    assert emu.products(sid) == {}


async def test_referenced_minimum_counts_the_decoded_body(
    small_ref: tuple[Emulator, Api, str],
) -> None:
    # Assumption 8: a gzip body under the minimum on the wire but not decoded is taken.
    emu, api, sid = small_ref
    body = b"[" + b",".join(b'{"id":"p%d","t":"%s"}' % (i, b"a" * 200) for i in range(3)) + b"]"
    packed = gzip.compress(body)
    assert len(packed) < 100 <= len(body)  # the fixture's minimum is 100 bytes
    gz = {"Content-Encoding": "gzip"}
    taken = await api.upload(sid, packed, ctype="application/json", headers=gz)
    assert taken.status == 200, taken.json
    tiny = gzip.compress(b'[{"id":"x"}]')
    refused = await api.upload(sid, tiny, ctype="application/json", headers=gz)
    assert refused.status == 422 and refused.title == "Payload too small"
    assert len(emu.products(sid)) == 3


async def test_referenced_rejects_other_media_types(small_ref: tuple[Emulator, Api, str]) -> None:
    _, api, sid = small_ref
    assert (await api.upload(sid, big_array(20), ctype=JSONAPI)).status == 415


# -- stream statuses --------------------------------------------------------------------


async def test_disabled_stream_is_403(api: Api, emulator: Emulator) -> None:
    sid = emulator.create_stream("disabled")
    emulator.set_stream_status(sid, "disabled")
    answer = await api.upload(sid, b'{"id":"1"}')
    assert answer.status == 403
    assert answer.json["errors"][0]["status"] == "403"
    assert emulator.products(sid) == {}


@pytest.mark.parametrize("status", ["locked", "locked_upload"])
async def test_locked_stream_is_423(api: Api, emulator: Emulator, status: str) -> None:
    sid = emulator.create_stream("locked")
    emulator.set_stream_status(sid, status)
    answer = await api.upload(sid, b'{"id":"1"}')
    assert answer.status == 423
    assert answer.title == "Locked"
    assert emulator.counters(sid)["locked"] == 1
    emulator.set_stream_status(sid, "active")
    assert (await api.upload(sid, b'{"id":"1"}')).status == 200


async def test_locked_processing_still_takes_uploads(api: Api, emulator: Emulator) -> None:
    sid = emulator.create_stream("locked for processing")
    emulator.set_stream_status(sid, "locked_processing")
    assert (await api.upload(sid, b'{"id":"1"}')).status == 200


def test_unknown_status_is_refused() -> None:
    emu = Emulator()
    sid = emu.create_stream("s01")
    with pytest.raises(ValueError):
        emu.set_stream_status(sid, "frozen")
    with pytest.raises(KeyError):
        emu.set_stream_status("404", "active")


# -- batches -------------------------------------------------------------------------


async def test_unknown_batch_is_404(api: Api, emulator: Emulator) -> None:
    sid = emulator.create_stream("batches")
    answer = await api.call("GET", f"/streams/{sid}/batches/{uuid.uuid4()}")
    assert answer.status == 404
    assert (await api.call("GET", f"/streams/999/batches/{uuid.uuid4()}")).status == 404


async def test_batches_belong_to_their_stream(api: Api, emulator: Emulator) -> None:
    a = emulator.create_stream("stream a")
    b = emulator.create_stream("stream b")
    batch_id = (await api.upload(a, b'{"id":"1"}')).json["data"]["id"]
    assert (await api.call("GET", f"/streams/{b}/batches/{batch_id}")).status == 404
    assert emulator.batches(a)[0]["id"] == batch_id


# -- throughput mode -------------------------------------------------------------------


async def test_throughput_mode_counts_lines_only(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(EmulatorConfig(throughput_mode=True))
    api = Api(session, emu.url, "t")
    sid = emu.create_stream("fast")
    body = b"".join(b'{"id":"%d"}\n' % i for i in range(10_000)) + b"not json, not checked"
    answer = await api.upload(sid, body)
    assert answer.status == 200
    assert answer.upload["successCount"] == 10_001
    assert emu.products(sid) == {}
    assert emu.upload_counts(sid) == {}
    assert emu.counters(sid)["products_accepted"] == 10_001
    assert (await api.upload(sid, b"")).status == 422
