"""Small products at the limit: how much of the Stream API's 300,000 products/s bulkpush fills.

The server enforces the exact published limit (fixed one-second windows of
30 uploads per stream) and answers every upload after 150 ms, in throughput
mode (it counts lines; the API's own CPU is not the client's). bulkpush
pushes a catalog of small products (about 200 bytes: ``small200`` in
:mod:`benchmarks.catalogs`) with its defaults:
10,000 products per request, its own pacing (97.5% of the limit), validation
full, gzip. At 30 requests/s x 10,000 products the stream takes 300,000
products/s, about 60 MB/s of NDJSON; the question is whether the client's
CPU keeps up on this machine's 2 cores (shared with the server). The plain
threaded uploader (:mod:`benchmarks.plain_client`) runs beside it, paced at
the same 97.5%, before or after bulkpush in turn.

Figures: products/s over the whole push (start-up of the pipeline included)
and as the server logged the uploads after their first second (the steady
state), each as a share of 300,000; 429s; client CPU seconds per million
products (the process's whole life, and the push alone); cores of client and
server; peak RSS.
"""

from __future__ import annotations

from typing import Any

from benchmarks.catalogs import catalog, describe
from benchmarks.common import (
    API_CEILING_PRODUCTS_PER_S,
    PUBLISHED_RATE,
    ChildFailed,
    Context,
    Scenario,
    cpu_figures,
    median,
    process_cpu_s,
    run_child,
    spread,
)
from benchmarks.scenarios.rate import CLIENT_RATE, analyse
from benchmarks.server import BenchServer, ServerConfig
from bulkpush.limits import STREAM_API

LATENCY_S = 0.15
PRODUCTS_FULL = 2_000_000  # about 7 s at the limit
PRODUCTS_QUICK = 1_000_000
CHUNK = STREAM_API.max_products_per_request
CLIENTS = ("bulkpush", "plain_threaded")


def _run(client: str, server: BenchServer, path: str, r: int) -> dict[str, Any]:
    sid = server.create_stream(f"at limit {client} {r}")
    if client == "bulkpush":
        args = [
            "-m", "benchmarks.bulkpush_run", "--url", server.url, "--catalog", path,
            "--stream", sid,
        ]  # fmt: skip
    else:
        args = [
            "-m", "benchmarks.peers", client, "--url", server.url, "--catalog", path,
            "--index-or-stream", sid, "--chunk-size", str(CHUNK), "--compression", "gzip",
            "--token", server.config.token, "--rate", str(CLIENT_RATE),
        ]  # fmt: skip
    cpu0 = process_cpu_s(server.pid)
    result = run_child(args)
    cpu1 = process_cpu_s(server.pid)
    result["server_cpu_s"] = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    result["server_view"] = analyse(server.uploads(sid))
    return result


def _summary(runs: list[dict[str, Any]], products: int) -> dict[str, Any]:
    pps = [x["products_per_s"] for x in runs]
    steady = [x["server_view"]["rate"] * CHUNK for x in runs]
    server_cpu = [x["server_cpu_s"] / x["seconds"] for x in runs if x.get("server_cpu_s")]
    return {
        "products_per_s": median(pps),
        "spread": spread(pps),
        "share_of_api": median(pps) / API_CEILING_PRODUCTS_PER_S,
        "steady_products_per_s": median(steady),
        "steady_share_of_api": median(steady) / API_CEILING_PRODUCTS_PER_S,
        "req_per_s_after_1s": median([x["server_view"]["rate"] for x in runs]),
        "status_429": sum(x["server_view"]["status_429"] for x in runs),
        "mb_per_s": median([x["mb_per_s"] for x in runs]),
        **cpu_figures(runs),
        "server_cores": median(server_cpu),
        "peak_rss_mb": median([x["peak_rss_mb"] for x in runs]),
        "incomplete": sum(1 for x in runs if x["products"] < products),
        "runs": runs,
    }


def run(ctx: Context) -> Scenario:
    products = PRODUCTS_QUICK if ctx.quick else PRODUCTS_FULL
    path = catalog(products, "small200")
    config = ServerConfig(rate=PUBLISHED_RATE, latency_s=LATENCY_S)
    scenario = Scenario(
        title="Small products at the limit",
        settings={
            "server": config.describe(),
            "catalog": describe(path),
            "chunk_products": CHUNK,
            "api_ceiling": f"{PUBLISHED_RATE:g} req/s x {CHUNK:,} = "
            f"{API_CEILING_PRODUCTS_PER_S:,} products/s",
            "client_pacing": f"{CLIENT_RATE:.2f} req/s (97.5% of the limit) for both clients",
            "bulkpush": "defaults (validation full, gzip, its own pacing)",
            "plain threaded uploader": "benchmarks/plain_client.py, 8 threads, gzip level 1",
            "runs": ctx.runs,
        },
        notes=[
            "Both clients pace at 97.5% of the limit, so 97.5% of 300,000 (292,500 "
            "products/s) is the most either can show.",
            "Whole push: products accepted over the client's own wall time, from its first "
            "read to its last answer. Steady: the server's log of upload arrivals from one "
            "second after the first (see Rate saturation) times 10,000 products.",
            "CPU s / M products: the client process's whole life (start-up and imports "
            "included); 'push alone' is what the client measured over the push.",
            "The order of the two clients alternates from run to run.",
        ],
    )
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in CLIENTS}
    errors: dict[str, str] = {}
    with BenchServer(config) as server:
        for r in range(ctx.runs):
            for client in CLIENTS if r % 2 == 0 else CLIENTS[::-1]:
                if client in errors:
                    continue
                try:
                    res = _run(client, server, str(path), r)
                except ChildFailed as exc:
                    errors[client] = str(exc)[-600:]
                    ctx.progress(f"  at limit: {client} failed: {str(exc)[:200]}")
                    continue
                results[client].append(res)
                ctx.progress(
                    f"  at limit, run {r + 1}/{ctx.runs}: {client} "
                    f"{res['products_per_s']:,.0f} products/s "
                    f"({res['products_per_s'] / API_CEILING_PRODUCTS_PER_S:.1%} of 300,000), "
                    f"steady {res['server_view']['rate']:.2f} req/s, "
                    f"429s {res['server_view']['status_429']}"
                )
    clients = {
        c: _summary(runs, products) if runs else {"error": errors.get(c, "no run")}
        for c, runs in results.items()
    }
    own = clients["bulkpush"].get("products_per_s")
    plain = clients["plain_threaded"].get("products_per_s")
    scenario.figures = {
        "clients": clients,
        "bulkpush_vs_plain": own / plain if own and plain else None,
    }
    if "bulkpush" in errors:
        scenario.status = "error"
        scenario.reason = f"bulkpush failed: {errors['bulkpush'][:300]}"
    return scenario
