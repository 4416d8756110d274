"""A fatal answer stops new requests at once, also while many are in flight."""

from __future__ import annotations

import pytest

from bulkpush import Outcome, PushOptions, RunStopped, StreamClient, StreamDisabled
from bulkpush.emulator import Emulator, EmulatorConfig, Faults
from bulkpush.samples import iter_products

TOKEN = "fatal-token"


async def test_a_disabled_stream_gets_no_new_upload_after_its_first_403() -> None:
    # Answers take 1 s: at 29 requests/s some 30 are in flight when the stream
    # is disabled. Those were sent before anything said so; no upload may leave
    # after the client has read the first 403.
    async with Emulator(EmulatorConfig(tokens=frozenset({TOKEN}))) as emu:
        sid = emu.create_stream("disabled mid-push")
        emu.set_faults(sid, Faults(latency_s=1.0))
        products = list(iter_products(20_000, seed=2, size="small"))
        opts = PushOptions(max_products_per_request=50)
        async with StreamClient(token=TOKEN, api_url=emu.url) as client:
            pipeline = await client.open_push(products, stream=sid, options=opts)
            with pytest.raises(RunStopped) as info:
                async for event in pipeline.events():
                    if isinstance(event, Outcome) and event.status == 200:
                        emu.set_stream_status(sid, "disabled")
        assert isinstance(info.value.cause, StreamDisabled)
        report = info.value.report
        assert report.read == report.accepted + report.rejected + report.not_sent
        uploads = [r for r in emu.requests(sid) if r.method == "POST"]
        forbidden = [r for r in uploads if r.status == 403]
        assert forbidden
        # The first 403 was answered (and read) at least its latency after it arrived.
        first_answer = min(r.time + r.duration_s for r in forbidden)
        late = [r for r in uploads if r.time > first_answer + 0.2]
        assert late == [], f"{len(late)} uploads left after the first 403 was answered"
        # Nothing is counted accepted that the API did not answer 2xx.
        assert report.accepted <= len(emu.products(sid))
