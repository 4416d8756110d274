"""3. Peers in the same run: bulkpush against what a user would otherwise use.

Same catalog, same chunk size (1,000 products per request) and compression
(gzip) for every client, each with its own defaults otherwise; each run in a
fresh process (``python -m benchmarks.peers NAME ...``, written with the
peers' own code, and ``python -m benchmarks.bulkpush_run``). The
Elasticsearch helpers send to the benchmark server's ``_bulk`` endpoint
(:mod:`benchmarks.bulk_endpoint`), which has the same limits and latency as
the emulator's ``/products``; bulkpush, the naive uploader and the plain
threaded one (:mod:`benchmarks.plain_client`) send to the emulator. The plain
threaded uploader paces itself at bulkpush's default rate (97.5% of the
limit) in setting (ii) and not at all in (i).

Two settings: (i) limits lifted, no added latency (CPU-bound), and (ii) the
published 30 requests/s per stream with 500 ms of server latency per request.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from benchmarks.catalogs import catalog, describe
from benchmarks.common import (
    LIFTED_RATE,
    PUBLISHED_RATE,
    ChildFailed,
    Context,
    Scenario,
    Target,
    cpu_figures,
    median,
    run_child,
    spread,
)
from benchmarks.scenarios.rate import CLIENT_RATE, analyse
from benchmarks.server import BenchServer, ServerConfig
from bulkpush import ConcurrencyOptions
from bulkpush._compression import BACKEND, DEFAULT_LEVEL

PEERS = ("es_async_streaming_bulk", "es_parallel_bulk", "naive", "plain_threaded")
PLAIN = "plain_threaded"
CHUNK = 1_000


@dataclass(frozen=True, slots=True)
class Setting:
    id: str
    title: str
    config: ServerConfig
    products_quick: int
    products_full: int
    target_ratio: float


SETTINGS = (
    Setting(
        "lifted",
        "(i) limits lifted, no added latency",
        ServerConfig(rate=None, latency_s=0.0),
        50_000,
        200_000,
        1.5,
    ),
    Setting(
        "limits_latency",
        "(ii) 30 req/s per stream, 500 ms latency",
        ServerConfig(rate=PUBLISHED_RATE, latency_s=0.5),
        20_000,
        50_000,
        3.0,
    ),
)


def peers_available() -> bool:
    return importlib.util.find_spec("benchmarks.peers") is not None


def _client_run(
    client: str, server: BenchServer, setting: Setting, path: str, run: int
) -> dict[str, Any]:
    if client == "bulkpush":
        sid = server.create_stream(f"peers {setting.id} bulkpush {run}")
        args = [
            "-m", "benchmarks.bulkpush_run", "--url", server.url, "--catalog", path,
            "--stream", sid, "--chunk-size", str(CHUNK), "--compression", "gzip",
        ]  # fmt: skip
        if setting.config.rate is None:
            args += ["--rate", str(LIFTED_RATE)]
        result = run_child(args)
        result["server_view"] = analyse(server.uploads(sid))
        return result
    extra: list[str] = []
    if client in ("naive", PLAIN):
        target = server.create_stream(f"peers {setting.id} {client} {run}")
        if client == PLAIN and setting.config.rate is not None:
            extra = ["--rate", str(CLIENT_RATE)]
    else:
        target = f"bench-{setting.id}-{client}-{run}".lower().replace("_", "-")
    return run_child(
        [
            "-m", "benchmarks.peers", client, "--url", server.url, "--catalog", path,
            "--index-or-stream", target, "--chunk-size", str(CHUNK), "--compression", "gzip",
            "--token", server.config.token, *extra,
        ]
    )  # fmt: skip


def run(ctx: Context) -> Scenario:
    scenario = Scenario(
        title="Peers in the same run",
        settings={
            "chunk_products": CHUNK,
            "compression": f"gzip (each client's own: bulkpush {BACKEND} level "
            f"{DEFAULT_LEVEL}; {PLAIN} gzip.compress level 1; the other peers "
            "gzip.compress, stdlib level 9)",
            "runs": ctx.runs,
            "clients": ["bulkpush", *PEERS],
        },
        notes=[
            f"{CHUNK:,} products per request for every client (elasticsearch-py's default "
            "chunk_size is 500, bulkpush's 10,000): in setting (ii) that makes the published "
            "30 requests/s the ceiling (30,000 products/s) rather than this machine's CPU.",
            "In setting (i) bulkpush is told the server has no limit (PushOptions(rate=1e6)); "
            "the peers do not pace at all. In setting (ii) the plain threaded peer paces "
            f"itself at {CLIENT_RATE:.2f} req/s (bulkpush's default, 97.5% of the limit) with "
            "its one shared limiter.",
            "CPU s / M products: the client process's user + system CPU over its whole life "
            "(start-up and imports included; getrusage of the waited-for child) per million "
            "products pushed, median of the runs.",
            "The order of the clients rotates from run to run.",
        ],
    )
    if not peers_available():
        scenario.status = "skipped"
        scenario.reason = "peers module missing (benchmarks/peers.py)"
        return scenario
    figures: dict[str, Any] = {}
    clients = ["bulkpush", *PEERS]
    for setting in SETTINGS:
        products = setting.products_quick if ctx.quick else setting.products_full
        path = catalog(products)
        results: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
        errors: dict[str, str] = {}
        with BenchServer(setting.config) as server:
            for r in range(ctx.runs):
                order = clients[r % len(clients) :] + clients[: r % len(clients)]
                for client in order:
                    if client in errors:
                        continue
                    try:
                        res = _client_run(client, server, setting, str(path), r)
                    except ChildFailed as exc:
                        errors[client] = str(exc)[-600:]
                        ctx.progress(f"  peers {setting.id}: {client} failed: {str(exc)[:200]}")
                        continue
                    results[client].append(res)
                    ctx.progress(
                        f"  peers {setting.id}, run {r + 1}/{ctx.runs}: {client} "
                        f"{res['products_per_s']:,.0f} products/s, 429s {res['status_429']}"
                    )
        rows = {}
        for client in clients:
            runs = results[client]
            if not runs:
                rows[client] = {"error": errors.get(client, "no run")}
                continue
            pps = [x["products_per_s"] for x in runs]
            rows[client] = {
                "products_per_s": median(pps),
                "spread": spread(pps),
                "mb_per_s": median([x["mb_per_s"] for x in runs]),
                "seconds": median([x["seconds"] for x in runs]),
                "status_429": sum(x["status_429"] for x in runs),
                "requests": median([x["requests"] for x in runs]),
                "incomplete": sum(
                    1 for x in runs if x["products"] < products or x.get("errors", 0)
                ),
                "peak_rss_mb": median([x["peak_rss_mb"] for x in runs]),
                **cpu_figures(runs),
                "req_per_s_after_1s": median(
                    [x["server_view"]["rate"] for x in runs if "server_view" in x]
                )
                if all("server_view" in x for x in runs)
                else None,
                "error": errors.get(client),
                "runs": runs,
            }
        ok_peers = {p: rows[p] for p in PEERS if "products_per_s" in rows[p]}
        best = max(ok_peers, key=lambda p: ok_peers[p]["products_per_s"]) if ok_peers else None
        own = rows["bulkpush"].get("products_per_s")
        ratio = own / ok_peers[best]["products_per_s"] if best and own else None
        for row in rows.values():
            if "products_per_s" in row and best:
                row["ratio_to_best_peer"] = row["products_per_s"] / ok_peers[best]["products_per_s"]
        plain = rows[PLAIN].get("products_per_s")
        figures[setting.id] = {
            "title": setting.title,
            "server": setting.config.describe(),
            "catalog": describe(path),
            "clients": rows,
            "best_peer": best,
            "bulkpush_vs_best_peer": ratio,
            "bulkpush_vs_plain": own / plain if own and plain else None,
        }
        _targets(scenario, setting, rows, best, ratio)
    scenario.figures = figures
    return scenario


def _targets(
    scenario: Scenario,
    setting: Setting,
    rows: dict[str, Any],
    best: str | None,
    ratio: float | None,
) -> None:
    own = rows["bulkpush"]
    if ratio is None or best is None:
        scenario.targets.append(
            Target(
                id=f"peers_{setting.id}",
                description=f"bulkpush vs the best peer, {setting.title}",
                target=f">= {setting.target_ratio:g}x",
                value=None,
                met=False,
                measured="not measured",
                note="bulkpush or every peer failed: "
                + "; ".join(f"{c}: {r.get('error')}" for c, r in rows.items() if r.get("error")),
            )
        )
        return
    met = ratio >= setting.target_ratio
    note = ""
    if not met:
        need = setting.target_ratio * rows[best]["products_per_s"]
        note = (
            f"bulkpush is {ratio:.2f}x the best peer ({best}), short of "
            f"{setting.target_ratio:g}x: it would need {need:,.0f} products/s, it did "
            f"{own['products_per_s']:,.0f}."
        )
        if setting.config.rate is None:
            note += (
                " In this setting every client is bound by CPU on 2 cores shared with the "
                "server: see Client throughput for where bulkpush's CPU goes."
            )
        else:
            steady = own.get("req_per_s_after_1s")
            note += (
                f" The setting's ceiling is 30 req/s x {CHUNK:,} = 30,000 products/s. "
                + (
                    f"After its first second bulkpush sent {steady:.1f} req/s (server log): "
                    if steady
                    else ""
                )
                + "the run is short, and its first second is spent ramping up the concurrency "
                "that 500 ms of latency needs (AIMD from "
                f"{ConcurrencyOptions().initial} requests in flight)."
            )
    scenario.targets.append(
        Target(
            id=f"peers_{setting.id}",
            description=f"bulkpush vs the best peer, {setting.title}",
            target=f">= {setting.target_ratio:g}x",
            value=ratio,
            met=met,
            measured=f"{own['products_per_s']:,.0f} vs {rows[best]['products_per_s']:,.0f} "
            f"products/s ({best}) = {ratio:.2f}x",
            note=note,
        )
    )
    peers_429 = {p: rows[p]["status_429"] for p in PEERS if rows[p].get("status_429")}
    own_429 = own["status_429"]
    scenario.targets.append(
        Target(
            id=f"peers_{setting.id}_no_429",
            description=f"bulkpush 429s, {setting.title}",
            target="0",
            value=float(own_429),
            met=own_429 == 0,
            measured=f"bulkpush {own_429}; peers: "
            + (", ".join(f"{p} {n}" for p, n in peers_429.items()) or "none"),
            note=""
            if own_429 == 0
            else f"bulkpush got {own_429} 429 answer(s) over the runs (see Rate saturation).",
        )
    )
