"""4. Memory: peak RSS does not grow with the catalog.

Catalogs of small products (about 125 bytes each) of several sizes are pushed
to the server with every limit lifted, in throughput mode (it stores nothing,
so it is never the bottleneck), each push in a fresh process that reports its
own peak RSS (``VmHWM``: the whole process, interpreter and threads
included). bulkpush runs with its defaults, told the server has no rate limit.
"""

from __future__ import annotations

from typing import Any

from benchmarks.catalogs import catalog, describe
from benchmarks.common import LIFTED_RATE, Context, Scenario, Target, median, run_child, spread
from benchmarks.server import BenchServer, ServerConfig

MAX_RATIO = 1.2
MAX_PEAK_MB = 250.0
SIZES_QUICK = (200_000, 2_000_000)
SIZES_FULL = (200_000, 2_000_000, 10_000_000)
SINGLE_RUN_FROM = 10_000_000  # one run of the largest catalog keeps the full suite in budget


def run(ctx: Context) -> Scenario:
    sizes = SIZES_QUICK if ctx.quick else SIZES_FULL
    config = ServerConfig(rate=None, latency_s=0.0, throughput_mode=True)
    scenario = Scenario(
        title="Memory",
        settings={
            "server": config.describe(),
            "products": list(sizes),
            "product_kind": "small (about 125 bytes)",
            "runs": ctx.runs,
            "client": "bulkpush defaults (10,000 products per request, gzip), rate lifted",
        },
        notes=[
            "Peak RSS is VmHWM of the client process (the interpreter, every thread).",
            f"The {SINGLE_RUN_FROM:,}-product catalog is pushed once (full mode only).",
        ],
    )
    rows: list[dict[str, Any]] = []
    with BenchServer(config) as server:
        for n in sizes:
            path = catalog(n, "small")
            runs = []
            for r in range(1 if n >= SINGLE_RUN_FROM else ctx.runs):
                sid = server.create_stream(f"memory {n} {r}")
                res = run_child(
                    [
                        "-m", "benchmarks.bulkpush_run", "--url", server.url,
                        "--catalog", str(path), "--stream", sid, "--rate", str(LIFTED_RATE),
                    ]
                )  # fmt: skip
                runs.append(res)
                ctx.progress(
                    f"  memory: {n:,} products, run {r + 1}: peak RSS "
                    f"{res['peak_rss_mb']:.1f} MB, {res['seconds']:.1f} s"
                )
            peaks = [x["peak_rss_mb"] for x in runs]
            rows.append(
                {
                    "products": n,
                    "catalog": describe(path),
                    "peak_rss_mb": median(peaks),
                    "peak_rss_spread": spread(peaks),
                    "seconds": median([x["seconds"] for x in runs]),
                    "products_per_s": median([x["products_per_s"] for x in runs]),
                    "accepted": runs[0]["products"],
                    "runs": runs,
                }
            )
    smallest, largest = rows[0], rows[-1]
    ratio = largest["peak_rss_mb"] / smallest["peak_rss_mb"]
    highest = max(r["peak_rss_mb"] for r in rows)
    scenario.figures = {"rows": rows, "ratio_largest_smallest": ratio, "highest_peak_mb": highest}
    scenario.targets.append(
        Target(
            id="memory_flat",
            description=f"peak RSS, {largest['products']:,} vs {smallest['products']:,} products",
            target=f"<= {MAX_RATIO:g}x",
            value=ratio,
            met=ratio <= MAX_RATIO,
            measured=f"{largest['peak_rss_mb']:.1f} vs {smallest['peak_rss_mb']:.1f} MB "
            f"= {ratio:.3f}x",
            note=""
            if ratio <= MAX_RATIO
            else f"Peak RSS grows {ratio:.2f}x from the smallest to the largest catalog"
            + (
                f" ({rows[-1]['peak_rss_mb'] / rows[-2]['peak_rss_mb']:.2f}x from "
                f"{rows[-2]['products']:,} to {rows[-1]['products']:,})"
                if len(rows) > 2
                else ""
            )
            + f": something grows with the number of products or requests (report, "
            f"allocator fragmentation), and the {smallest['products']:,}-product push lasts "
            f"{smallest['seconds']:.1f} s, which may end before the pipeline's queues and "
            "in-flight budget are at their fullest.",
        )
    )
    scenario.targets.append(
        Target(
            id="memory_under_250",
            description="highest peak RSS",
            target=f"< {MAX_PEAK_MB:g} MB",
            value=highest,
            met=highest < MAX_PEAK_MB,
            measured=f"{highest:.1f} MB",
            note=""
            if highest < MAX_PEAK_MB
            else f"{highest - MAX_PEAK_MB:.0f} MB over: the in-flight budget and queues hold "
            "more chunks than needed.",
        )
    )
    return scenario
