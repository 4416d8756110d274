"""``bulkpush demo``: the main job, end to end, on the embedded emulator.

Generates a realistic catalog with a few deliberately broken products,
starts the Stream API emulator in-process (exact published limits), pushes
the catalog through the full pipeline with the progress display, then prints
the report and where the rejects file and JSON report are.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from bulkpush._progress import make_progress
from bulkpush.client import PushOptions, StreamClient
from bulkpush.emulator import Emulator, EmulatorConfig
from bulkpush.errors import RunStopped
from bulkpush.samples import BROKEN_KINDS, write_catalog

__all__ = ["run_demo"]

DEMO_TOKEN = "demo-token"


async def run_demo(
    *, products: int = 200_000, out_dir: str = "demo-output", quiet: bool = False
) -> int:
    """Run the demo; return 0 when exactly the deliberately broken products were
    rejected and everything else arrived, else 1 (3 if the run stopped)."""
    out = Path(out_dir)
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    catalog = out / "catalog.ndjson"
    broken = 2 * len(BROKEN_KINDS)

    def say(msg: str) -> None:
        if not quiet:
            print(msg, flush=True)

    started = time.monotonic()
    size = await asyncio.to_thread(write_catalog, catalog, products, seed=42, broken=broken)
    say(
        f"generated {catalog}: {products:,} products, {size / 1e6:,.1f} MB, "
        f"{broken} deliberately broken ({', '.join(BROKEN_KINDS)}) "
        f"in {time.monotonic() - started:.1f} s"
    )
    config = EmulatorConfig(tokens=frozenset({DEMO_TOKEN}))
    async with Emulator(config) as emu:
        stream_id = emu.create_stream("bulkpush demo stream", "chunked")
        say(f"emulator: {emu.url} (published limits: 30 requests/s per stream); stream {stream_id}")
        rejects = out / "rejects.ndjson"
        report_path = out / "report.json"
        options = PushOptions(rejects_path=str(rejects))
        async with StreamClient(token=DEMO_TOKEN, api_url=emu.url) as client:
            try:
                report = await client.push(
                    str(catalog),
                    stream=stream_id,
                    options=options,
                    progress=make_progress(enabled=not quiet),
                )
            except RunStopped as exc:
                report = exc.report
                await asyncio.to_thread(report.write_json, report_path)
                print(report.summary(), file=sys.stderr)
                return 3
        stored = len(emu.products(stream_id))
    await asyncio.to_thread(report.write_json, report_path)
    say("")
    say(report.summary())
    say("")
    say(f"the emulator stored {stored:,} products; accepted by the report: {report.accepted:,}")
    say(f"JSON report: {report_path}")
    ok = report.rejected == broken and report.not_sent == 0 and stored == report.accepted
    return 0 if ok else 1
