"""Deletes report what the API says it deleted (``meta.deleted``), not the ids sent."""

from __future__ import annotations

import os
from pathlib import Path

from bulkpush import StreamClient
from bulkpush.emulator import Emulator, EmulatorConfig
from bulkpush.targets.productsup_stream._wire import deleted_count

from .conftest import bulkpush_cli as bulkpush

TOKEN = "delete-token"


def test_deleted_count_reads_meta_deleted() -> None:
    assert deleted_count({"meta": {"deleted": 3, "errors": []}}) == 3
    assert deleted_count({"meta": {"deleted": 0}}) == 0
    for body in (None, {}, {"meta": None}, {"meta": {"deleted": "2"}}, {"meta": {"deleted": True}}):
        assert deleted_count(body) is None


async def test_the_delete_results_carry_the_apis_count() -> None:
    async with Emulator(EmulatorConfig(tokens=frozenset({TOKEN}))) as emu:
        sid = emu.create_stream("deletes", "chunked")
        async with StreamClient(token=TOKEN, api_url=emu.url) as client:
            await client.push([{"id": f"p{i}", "t": "x"} for i in range(6)], stream=sid)
            some = await client.streams.delete_products(sid, ["p0", "p1", "none"], per_request=2)
            assert (some.requested, some.requests, some.deleted) == (3, 2, 2)
            one = await client.delete_product(sid, "zzz-none")
            assert (one.requested, one.deleted) == (1, 0)
            every = await client.delete_all_products(sid)
            assert every.deleted == 4
        assert emu.products(sid) == {}


async def test_the_cli_prints_what_the_api_deleted(tmp_path: Path) -> None:
    async with Emulator(EmulatorConfig(tokens=frozenset({TOKEN}))) as emu:
        sid = emu.create_stream("cli deletes", "chunked")
        env = {**os.environ, "BULKPUSH_TOKEN": TOKEN, "BULKPUSH_API_URL": emu.url}
        code, out, err = await bulkpush(
            "delete", "--stream", sid, "zzz-none", "another-none", env=env
        )
        assert code == 0, err
        assert out == f"the API deleted 0 of 2 product ids of stream {sid} in 1 request\n"
        async with StreamClient(token=TOKEN, api_url=emu.url) as client:
            await client.push([{"id": "a", "t": "x"}, {"id": "b", "t": "y"}], stream=sid)
        code, out, err = await bulkpush("delete", "--stream", sid, "b", env=env)
        one = f"the API deleted 1 of 1 product id of stream {sid} in 1 request\n"
        assert (code, out) == (0, one)
        code, out, err = await bulkpush("delete", "--stream", sid, "--all", "--yes", env=env)
        assert (code, out) == (0, f"the API deleted 1 product of stream {sid}\n")
