"""Peak memory of a push does not grow with the catalog.

Pushes catalogs of small products (about 200 bytes each) of several sizes to
an emulator running in its own process (throughput mode, limits lifted, so
the server stores nothing and is never the bottleneck), each push in a fresh
Python process that reports its own peak RSS. Prints a table and writes
``benchmarks/results/memory.json``.

    .venv/bin/python -m benchmarks.memory                # 200,000 and 2,000,000
    .venv/bin/python -m benchmarks.memory --sizes 200000,2000000,10000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bulkpush.samples import write_catalog

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TOKEN = "bench-token"

CHILD = r"""
import asyncio, json, resource, sys, time
from bulkpush.client import PushOptions, StreamClient

async def main(url, path, stream):
    async with StreamClient(token="bench-token", api_url=url) as client:
        t = time.monotonic()
        report = await client.push(path, stream=stream, options=PushOptions(rate=1e9))
        return report, time.monotonic() - t

report, took = asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_rss_mb": peak_kb / 1024, "accepted": report.accepted,
                  "read": report.read, "seconds": took}))
"""


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "bulkpush", "emulator", "--port", "0", "--token", TOKEN,
            "--throughput-mode", "--no-rate-limit",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise RuntimeError("the emulator did not start")


def create_stream(url: str, name: str) -> str:
    code = (
        "import asyncio,sys\n"
        "from bulkpush.client import StreamClient\n"
        "async def m():\n"
        f"    async with StreamClient(token={TOKEN!r}, api_url={url!r}) as c:\n"
        f"        print((await c.create_stream({name!r})).id)\n"
        "asyncio.run(m())\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="200000,2000000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    emu, url = start_emulator()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in sizes:
                path = Path(tmp) / f"c{n}.ndjson"
                nbytes = write_catalog(path, n, seed=1, size="small")
                stream = create_stream(url, f"memory {n}")
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, url, str(path), stream],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                row = {"products": n, "catalog_mb": nbytes / 1e6, **json.loads(out)}
                rows.append(row)
                print(
                    f"{n:>12,} products {row['catalog_mb']:8.1f} MB  "
                    f"peak RSS {row['peak_rss_mb']:7.1f} MB  {row['seconds']:6.1f} s",
                    flush=True,
                )
                path.unlink()
    finally:
        emu.terminate()
        emu.wait(10)
    ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    print(f"largest / smallest peak RSS: {ratio:.3f} (target <= 1.2)")
    RESULTS.mkdir(exist_ok=True)
    result = {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "rows": rows,
        "ratio_largest_smallest": ratio,
    }
    (RESULTS / "memory.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
