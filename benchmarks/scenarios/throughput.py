"""2. Client throughput: end to end against the CPU ceiling, measured in the same run.

The server runs in throughput mode (it counts lines, parses and stores
nothing) with every limit lifted; bulkpush is told so (``rate`` 10^6/s).
End to end: the catalog pushed over HTTP. CPU ceiling: the same catalog, the
same options, prepared by the client exactly as a push is
(``StreamClient.open_push``) but with a sender that answers each chunk at
once without sending it: reading, validation, chunking, encoding and
compression only. Each end-to-end run is paired with a ceiling run (ABAB),
for validation ``full`` and ``light``. With validation ``full``, each pair
also has a run of the plain threaded uploader (:mod:`benchmarks.plain_client`:
``json.loads`` of every line, 8 threads gzip level 1 and ``http.client``)
over the same catalog and server, before or after bulkpush's in turn: the
products/s of both and their CPU seconds per million products. bulkpush runs
with its default ``--workers`` (``bulkpush._procs.default_workers``: the cores
when 3 or more, else 1); with validation ``full`` each pair also has an
end-to-end run with the other choice (``--workers`` the cores when the
default is 1: the catalog, over 32 MiB, is read, checked, chunked and
gzipped by reading processes; else ``--workers 1``: no reading process, the
reader thread and the gzip threads), before or after the default's in turn:
the scaling figure is ``--workers`` the cores / ``--workers 1``. CPU seconds count every
process of a push (the reading processes are reaped by its end). The stage
costs (each stage of the span path alone, one thread, against the floor of
parsing and gzipping the same bytes) show where the CPU per product goes.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from benchmarks.catalogs import catalog, describe
from benchmarks.common import (
    API_CEILING_PRODUCTS_PER_S,
    LIFTED_RATE,
    Context,
    Scenario,
    Target,
    cpu_figures,
    median,
    pct_floor,
    process_cpu_s,
    run_child,
    spread,
)
from benchmarks.profiling import profile_child
from benchmarks.server import BenchServer, ServerConfig
from bulkpush._compression import BACKEND, DEFAULT_LEVEL
from bulkpush._procs import default_workers

TARGET_SHARE = 0.90
TARGET_VS_PLAIN = 2.0  # bulkpush (default workers) / the plain threaded uploader
TARGET_SCALING = 1.7  # --workers (the cores) / --workers 1, on this machine's cores
TARGET_CPU_PER_M = 5.0  # CPU seconds (all processes) per million ~1 KB products
STAGE_PRODUCTS = 50_000
VALIDATIONS = ("full", "light")
PLAIN_WITH = "full"  # the validation level bulkpush runs with beside the plain uploader


# The default, and the other choice run beside it for the scaling figure.
DEFAULT = default_workers()
ALT = len(os.sched_getaffinity(0)) if DEFAULT == 1 and hasattr(os, "sched_getaffinity") else 1

FULL_RUNS = 5  # the figure most sensitive to other load on the machine gets more runs


def run(ctx: Context) -> Scenario:
    runs = ctx.runs if ctx.quick or ctx.runs_given else max(ctx.runs, FULL_RUNS)
    products = 100_000 if ctx.quick else 500_000
    path = catalog(products)
    config = ServerConfig(rate=None, latency_s=0.0, throughput_mode=True)
    scenario = Scenario(
        title="Client throughput",
        settings={
            "server": config.describe(),
            "catalog": describe(path),
            "chunk_products": 10_000,
            "compression": f"gzip (bulkpush default: {BACKEND} level {DEFAULT_LEVEL})",
            "client_rate": "lifted (PushOptions(rate=1e6))",
            "workers": f"bulkpush default (the cores available: {_cores()}); with validation "
            "full also --workers 1 (end to end, interleaved)",
            "runs": runs,
            "plain threaded uploader": "beside bulkpush with validation full: "
            "benchmarks/plain_client.py, 8 threads, gzip level 1, 10,000 products per request, "
            "no pacing",
        },
        notes=[
            "CPU ceiling = the same catalog read, validated, chunked, encoded and compressed by "
            "the client's own pipeline (StreamClient.open_push, same options) with a sender "
            "that answers every chunk at once: no network, no server.",
            "End-to-end and ceiling runs alternate (ABAB), each in a fresh process; the server "
            "shares the machine's cores with the client in the end-to-end runs (its CPU use "
            "is in the table).",
        ],
    )
    rows: dict[str, Any] = {}

    def push_args(server: BenchServer, name: str) -> list[str]:
        sid = server.create_stream(name)
        return [
            "-m", "benchmarks.bulkpush_run", "--url", server.url, "--catalog", str(path),
            "--stream", sid, "--rate", str(LIFTED_RATE),
        ]  # fmt: skip

    def timed(server: BenchServer, args: list[str]) -> dict[str, Any]:
        cpu0 = process_cpu_s(server.pid)
        result = run_child(args)
        cpu1 = process_cpu_s(server.pid)
        result["server_cpu_s"] = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
        return result

    with BenchServer(config) as server:
        base = push_args(server, "throughput")
        plain_args = [
            "-m", "benchmarks.peers", "plain_threaded", "--url", server.url,
            "--catalog", str(path), "--index-or-stream", server.create_stream("plain"),
            "--chunk-size", "10000", "--compression", "gzip", "--token", config.token,
        ]  # fmt: skip
        for validation in VALIDATIONS:
            args = [*base, "--validation", validation]
            e2e: list[dict[str, Any]] = []
            ceiling: list[dict[str, Any]] = []
            plain: list[dict[str, Any]] = []
            one: list[dict[str, Any]] = []  # --workers ALT (the other choice)
            stages: dict[str, Any] | None = None
            stages_records: dict[str, Any] | None = None
            for r in range(runs):
                extra = ["--stages", str(STAGE_PRODUCTS)] if r == 0 else []
                c = run_child([*args, "--no-network", *extra])
                stages = c.pop("stages", stages)
                stages_records = c.pop("stages_records", stages_records)
                ceiling.append(c)
                with_plain = validation == PLAIN_WITH
                if with_plain and r % 2:
                    plain.append(timed(server, plain_args))
                    one.append(timed(server, [*args, "--workers", str(ALT)]))
                e2e.append(timed(server, args))
                if with_plain and not r % 2:
                    one.append(timed(server, [*args, "--workers", str(ALT)]))
                    plain.append(timed(server, plain_args))
                e = e2e[-1]
                ctx.progress(
                    f"  throughput ({validation}), run {r + 1}/{runs}: "
                    f"end to end {e['products_per_s']:,.0f}/s, "
                    f"ceiling {c['products_per_s']:,.0f}/s"
                    + (f", --workers {ALT} {one[-1]['products_per_s']:,.0f}/s" if one else "")
                    + (f", plain threaded {plain[-1]['products_per_s']:,.0f}/s" if plain else "")
                )
            rows[validation] = _summary(e2e, ceiling, stages)
            rows[validation]["default_workers"] = DEFAULT
            rows[validation]["stages_records"] = stages_records
            if plain:
                rows[validation]["plain"] = _plain_summary(plain, rows[validation])
            if one:
                rows[validation]["workers1"] = _workers1_summary(one, rows[validation])
        # The same end-to-end runs with the server at the lowest CPU priority: on
        # 2 cores the server's share is CPU the ceiling run has to itself; this
        # shows what is left when the client gets the cores first (as when the
        # API is on another machine).
        with BenchServer(replace(config, nice=19)) as niced:
            niced_base = push_args(niced, "throughput niced")
            for validation in VALIDATIONS:
                nargs = [*niced_base, "--validation", validation]
                pps = []
                for r in range(runs):
                    e = run_child(nargs)
                    pps.append(e["products_per_s"])
                    ctx.progress(
                        f"  throughput ({validation}), server at nice 19, run {r + 1}/{runs}: "
                        f"end to end {e['products_per_s']:,.0f}/s"
                    )
                row = rows[validation]
                row["e2e_server_niced_products_per_s"] = median(pps)
                ceiling_pps = row["ceiling_products_per_s"]
                row["share_of_ceiling_server_niced"] = (
                    median(pps) / ceiling_pps if ceiling_pps else None
                )
                scenario.notes.append(
                    f"Validation {validation}, server at nice 19 (the client gets the cores "
                    f"first, as with the API on another machine): end to end "
                    f"{median(pps):,.0f} products/s = "
                    f"{pct_floor(row['share_of_ceiling_server_niced'] or 0.0)} of the ceiling "
                    f"(median of {runs})."
                )
        if ctx.profile:
            rows["profiles"] = {}
            for validation in VALIDATIONS:
                ctx.progress(f"  throughput: one more end-to-end run ({validation}) under py-spy")
                rows["profiles"][validation] = profile_child(
                    [*base, "--validation", validation],
                    ctx.out / f"profile-throughput-{validation}.txt",
                )
    scenario.figures = rows
    for validation in VALIDATIONS:
        row = rows[validation]
        share = row["share_of_ceiling"] or 0.0
        met = share >= TARGET_SHARE
        note = ""
        if not met:
            server_cores = row["server_cores"]
            client_cores = row["client_cores"]
            note = (
                f"End to end is {pct_floor(share)} of the ceiling, "
                f"{100 * (TARGET_SHARE - share):.1f} points short. "
                f"The client used {client_cores:.2f} cores (all its processes) and the server "
                f"{server_cores:.2f} of this machine's {_cores()}: end to end, the server "
                "takes cores that the ceiling run (no HTTP, no server) has to itself; see the "
                "runs with the server at nice 19 (notes) and the profile."
            )
        scenario.targets.append(
            Target(
                id=f"throughput_{validation}",
                description=f"end to end vs the CPU ceiling, validation {validation}",
                target=">= 90% of the ceiling",
                value=share,
                met=met,
                measured=f"{row['e2e_products_per_s']:,.0f} vs {row['ceiling_products_per_s']:,.0f}"
                f" products/s = {pct_floor(share)} (median of {len(row['runs']['e2e'])})",
                note=note,
            )
        )
    scenario.targets += _scaling_targets(rows.get(PLAIN_WITH) or {})
    return scenario


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _workers1_summary(one: list[dict[str, Any]], own: dict[str, Any]) -> dict[str, Any]:
    """The interleaved runs with ``--workers ALT``, and the scaling (the cores / 1)."""
    pps = [x["products_per_s"] for x in one]
    alt = median(pps)
    default = own["e2e_products_per_s"]
    many, single = (alt, default) if ALT > 1 else (default, alt)
    client_cpu = [x["cpu_s"] / x["seconds"] for x in one if x.get("cpu_s") and x["seconds"]]
    server_cpu = [x["server_cpu_s"] / x["seconds"] for x in one if x.get("server_cpu_s")]
    return {
        "products_per_s": median(pps),
        "spread": spread(pps),
        "mb_per_s": median([x["mb_per_s"] for x in one]),
        "cpu": cpu_figures(one),
        "client_cores": median(client_cpu),
        "server_cores": median(server_cpu),
        "peak_rss_mb": median([x["peak_rss_mb"] for x in one]),
        "workers": ALT,
        "cores": _cores(),
        "scaling": many / single if single else None,
        "runs": one,
    }


def _scaling_targets(row: dict[str, Any]) -> list[Target]:
    """bulkpush (default workers) vs plain, default vs --workers 1, CPU per million."""
    targets: list[Target] = []
    if not row:
        return targets
    own = row["e2e_products_per_s"]
    cores = _cores()
    plain = row.get("plain")
    if plain:
        vs = plain.get("bulkpush_vs_plain") or 0.0
        targets.append(
            Target(
                id="throughput_vs_plain",
                description="end to end vs the plain threaded uploader, ~1 KB products, "
                "validation full, limits lifted, bulkpush with its default workers",
                target=f">= {TARGET_VS_PLAIN:g}x",
                value=vs,
                met=vs >= TARGET_VS_PLAIN,
                measured=f"{own:,.0f} vs {plain['products_per_s']:,.0f} products/s = {vs:.2f}x "
                f"(median of {len(plain['runs'])}, interleaved)",
                note=""
                if vs >= TARGET_VS_PLAIN
                else f"bulkpush would need {TARGET_VS_PLAIN * plain['products_per_s']:,.0f} "
                f"products/s. Both clients and the server share this machine's {cores} cores: "
                f"bulkpush used {row['client_cores']:.2f} cores, the server "
                f"{row['server_cores']:.2f}.",
            )
        )
    one = row.get("workers1")
    if one:
        scale = one.get("scaling") or 0.0
        many, single = (one["products_per_s"], own) if ALT > 1 else (own, one["products_per_s"])
        targets.append(
            Target(
                id="throughput_scaling",
                description=f"end to end, --workers {cores} vs --workers 1, "
                "~1 KB products, validation full",
                target=f">= {TARGET_SCALING:g}x (aim)",
                value=scale,
                met=scale >= TARGET_SCALING,
                measured=f"{many:,.0f} vs {single:,.0f} products/s = "
                f"{scale:.2f}x (median of {len(one['runs'])}, interleaved; default: "
                f"--workers {DEFAULT})",
                note=""
                if scale >= TARGET_SCALING
                else f"On {cores} cores shared with the server (it used {row['server_cores']:.2f} "
                f"cores beside the --workers {DEFAULT} runs, {one['server_cores']:.2f} beside "
                f"--workers {ALT}) the reading processes have less than {cores} cores to "
                f"themselves; --workers 1 already keeps more than one core busy (its reader "
                f"thread and gzip threads; --workers {DEFAULT}: {row['client_cores']:.2f} "
                f"cores, --workers {ALT}: {one['client_cores']:.2f}), and each reading process "
                "pays its start-up. This is why the default is 1 below 3 cores.",
            )
        )
    cpu = row.get("e2e_cpu") or {}
    per_m = cpu.get("cpu_s_per_m_run")
    if per_m is not None:
        whole = cpu.get("cpu_s_per_m")
        targets.append(
            Target(
                id="cpu_per_million_1kb",
                description="client CPU per million ~1 KB products, validation full, "
                "every process of the push",
                target=f"<= {TARGET_CPU_PER_M:g} CPU-s",
                value=per_m,
                met=per_m <= TARGET_CPU_PER_M,
                measured=f"{per_m:.2f} CPU-s per million over the push (reading processes "
                f"included, from their start); {_fmt(whole)} over the client's whole life "
                "(interpreter start-up and imports too)",
                note=""
                if per_m <= TARGET_CPU_PER_M
                else "See the stage costs: the serial span path against the parse + gzip floor, "
                "and the profile.",
            )
        )
    return targets


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _plain_summary(plain: list[dict[str, Any]], own: dict[str, Any]) -> dict[str, Any]:
    pps = [x["products_per_s"] for x in plain]
    server_cpu = [x["server_cpu_s"] / x["seconds"] for x in plain if x.get("server_cpu_s")]
    return {
        "products_per_s": median(pps),
        "spread": spread(pps),
        "mb_per_s": median([x["mb_per_s"] for x in plain]),
        **cpu_figures(plain),
        "server_cores": median(server_cpu),
        "peak_rss_mb": median([x["peak_rss_mb"] for x in plain]),
        "incomplete": sum(1 for x in plain if x["errors"] or x["rejected"]),
        "bulkpush_vs_plain": own["e2e_products_per_s"] / median(pps) if median(pps) else None,
        "runs": plain,
    }


def _summary(
    e2e: list[dict[str, Any]], ceiling: list[dict[str, Any]], stages: dict[str, Any] | None
) -> dict[str, Any]:
    e_pps = [x["products_per_s"] for x in e2e]
    c_pps = [x["products_per_s"] for x in ceiling]
    e_med = median(e_pps)
    c_med = median(c_pps)
    server_cpu = [x["server_cpu_s"] / x["seconds"] for x in e2e if x.get("server_cpu_s")]
    client_cpu = [x["cpu_s"] / x["seconds"] for x in e2e if x.get("cpu_s")]
    ceiling_cpu = [x["cpu_s"] / x["seconds"] for x in ceiling if x.get("cpu_s")]
    return {
        "e2e_products_per_s": e_med,
        "e2e_spread": spread(e_pps),
        "e2e_mb_per_s": median([x["mb_per_s"] for x in e2e]),
        "ceiling_products_per_s": c_med,
        "ceiling_spread": spread(c_pps),
        "ceiling_mb_per_s": median([x["mb_per_s"] for x in ceiling]),
        "share_of_ceiling": e_med / c_med if c_med else None,
        "share_of_api_ceiling": e_med / API_CEILING_PRODUCTS_PER_S,
        "ceiling_share_of_api_ceiling": c_med / API_CEILING_PRODUCTS_PER_S,
        # Cores busy while pushing (CPU seconds per wall second, all threads); the server's
        # is measured over the client process's life, idle start-up included.
        "client_cores": median(client_cpu),
        "ceiling_cores": median(ceiling_cpu),
        "server_cores": median(server_cpu),
        "e2e_peak_rss_mb": median([x["peak_rss_mb"] for x in e2e]),
        "e2e_cpu": cpu_figures(e2e),
        "requests": e2e[0]["requests"] if e2e else 0,
        "status_429": sum(x["status_429"] for x in e2e),
        "stages": stages,
        "runs": {"e2e": e2e, "ceiling": ceiling},
    }
