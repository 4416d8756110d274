"""SVG charts of a results file: ``python -m benchmarks.charts JSON DIR [--prefix P]``.

Every chart is drawn from the results file alone (``results/latest.json``, or
``quick.json``): :func:`plan` reads the figures into :class:`Chart` objects
(plain data, no plotting library), :func:`draw` turns one into an SVG with
matplotlib (the ``bench`` extra, ``Agg`` backend). A chart whose data the
file does not hold is not planned, so neither drawn nor linked: RESULTS.md
shows only charts that exist (:func:`links`).

Charts: products/s of bulkpush and each peer, client CPU per million
products, scaling with ``--workers`` (throughput: ``--workers 1`` vs the
default vs the plain client, and their CPU), CPU per product by stage (the
span path's stages against the floor of parsing and gzipping the same
bytes) and peak memory against catalog size. Adding one: write a function
``results -> Chart | None`` that returns None when its scenario is absent,
and add it to :data:`CHARTS`.

The suite draws in a child process (``python -m benchmarks.charts``), so that
matplotlib's memory never shows in the peak RSS of the clients it starts.
SVGs are written deterministically (fixed hash salt, no date) so that a
chart changes in git only when its figures do.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import API_CEILING_PRODUCTS_PER_S

OWN = "bulkpush"


@dataclass(slots=True)
class Bars:
    """One panel of horizontal bars: (label, value) pairs, bulkpush's highlighted."""

    title: str
    unit: str
    bars: list[tuple[str, float]]
    reference: tuple[float, str] | None = None  # a vertical line: (value, label)


@dataclass(slots=True)
class Lines:
    """One panel of lines: series of (x, y) points."""

    title: str
    xlabel: str
    ylabel: str
    series: list[tuple[str, list[float], list[float]]]
    reference: tuple[float, str] | None = None  # a horizontal line: (value, label)
    logx: bool = False


@dataclass(slots=True)
class Chart:
    name: str  # the file is {prefix}{name}.svg
    title: str
    caption: str  # the line under the image in RESULTS.md
    panels: list[Bars | Lines] = field(default_factory=list)
    footnote: str = ""


def _ok(data: dict[str, Any], name: str) -> dict[str, Any] | None:
    entry = data.get("scenarios", {}).get(name)
    if not entry or entry.get("status") != "ok" or not entry.get("figures"):
        return None
    return entry


def _when(data: dict[str, Any], *names: str) -> str:
    parts = []
    for name in names:
        entry = _ok(data, name)
        if entry:
            commit = (entry.get("git") or {}).get("commit") or "?"
            other = (entry.get("machine_load") or {}).get("other_cores")
            load = f", other load {other:.2f} cores" if other is not None else ""
            parts.append(
                f"{name}: {entry.get('mode')} mode, commit {commit}, "
                f"{str(entry.get('measured_at', '?'))[:10]}{load}"
            )
    return "\n".join(parts)


def _kb(entry: dict[str, Any], key: str = "catalog") -> str:
    size = (entry.get("settings", {}).get(key) or {}).get("mean_product_bytes")
    return f"~{size:,.0f} B products" if size else ""


def products_per_s(data: dict[str, Any]) -> Chart | None:
    panels: list[Bars | Lines] = []
    peers = _ok(data, "peers")
    if peers:
        chunk = peers["settings"].get("chunk_products", 0)
        for setting in peers["figures"].values():
            bars = [
                (client, row["products_per_s"])
                for client, row in setting["clients"].items()
                if row.get("products_per_s") is not None
            ]
            if bars:
                size = setting["catalog"].get("mean_product_bytes", 0)
                panels.append(
                    Bars(
                        f"Peers {setting['title']}; ~{size:,.0f} B products, {chunk:,} per request",
                        "products/s",
                        bars,
                    )
                )
    throughput = _ok(data, "throughput")
    if throughput:
        f = throughput["figures"]
        bars = [
            (f"{OWN} (validation {v})", f[v]["e2e_products_per_s"])
            for v in ("full", "light")
            if f.get(v)
        ]
        plain = (f.get("full") or {}).get("plain")
        if plain:
            bars.append(("plain_threaded", plain["products_per_s"]))
        if bars:
            panels.append(
                Bars(
                    f"Client throughput: limits lifted, {_kb(throughput)}, 10,000 per request",
                    "products/s",
                    bars,
                )
            )
    at_limit = _ok(data, "at_limit")
    if at_limit:
        bars = [
            (client, row["products_per_s"])
            for client, row in at_limit["figures"]["clients"].items()
            if row.get("products_per_s") is not None
        ]
        if bars:
            panels.append(
                Bars(
                    f"At the limit: 30 req/s, 150 ms, {_kb(at_limit)}, 10,000/request",
                    "products/s",
                    bars,
                    reference=(API_CEILING_PRODUCTS_PER_S, "the API's 300,000/s"),
                )
            )
    if not panels:
        return None
    return Chart(
        "products_per_s",
        "Products per second: bulkpush and each peer",
        "Products/s of bulkpush and each peer, per setting (medians; each panel measured "
        "side by side in one run).",
        panels,
        _when(data, "peers", "throughput", "at_limit"),
    )


def cpu_per_million(data: dict[str, Any]) -> Chart | None:
    panels: list[Bars | Lines] = []
    throughput = _ok(data, "throughput")
    if throughput:
        f = throughput["figures"]
        bars = [
            (f"{OWN} (validation {v})", f[v]["e2e_cpu"]["cpu_s_per_m"])
            for v in ("full", "light")
            if (f.get(v) or {}).get("e2e_cpu", {}).get("cpu_s_per_m") is not None
        ]
        plain = (f.get("full") or {}).get("plain") or {}
        if plain.get("cpu_s_per_m") is not None:
            bars.append(("plain_threaded", plain["cpu_s_per_m"]))
        if bars:
            panels.append(
                Bars(f"Client throughput, {_kb(throughput)}", "CPU s per million products", bars)
            )
    at_limit = _ok(data, "at_limit")
    if at_limit:
        bars = [
            (client, row["cpu_s_per_m"])
            for client, row in at_limit["figures"]["clients"].items()
            if row.get("cpu_s_per_m") is not None
        ]
        if bars:
            panels.append(
                Bars(
                    f"At the limit (30 req/s), {_kb(at_limit)}", "CPU s per million products", bars
                )
            )
    peers = _ok(data, "peers") or {"figures": {}, "settings": {}}
    setting = peers["figures"].get("lifted")
    if setting:
        bars = [
            (client, row["cpu_s_per_m"])
            for client, row in setting["clients"].items()
            if row.get("cpu_s_per_m") is not None
        ]
        if bars:
            size = setting["catalog"].get("mean_product_bytes", 0)
            panels.append(
                Bars(
                    f"Peers {setting['title']}; ~{size:,.0f} B products, "
                    f"{peers['settings'].get('chunk_products', 0):,} per request",
                    "CPU s per million products",
                    bars,
                )
            )
    if not panels:
        return None
    return Chart(
        "cpu_per_million",
        "Client CPU seconds per million products",
        "Client CPU seconds (user + system, every thread, the process's whole life) per "
        "million products pushed, by client (medians; lower is better).",
        panels,
        _when(data, "throughput", "at_limit", "peers"),
    )


def scaling(data: dict[str, Any]) -> Chart | None:
    throughput = _ok(data, "throughput")
    full = ((throughput or {}).get("figures") or {}).get("full") or {}
    one = full.get("workers1")
    if not throughput or not one:
        return None
    plain = full.get("plain") or {}
    default = full.get("default_workers", "?")
    alt = one.get("workers", "?")
    pps = [
        (f"{OWN} --workers {default} (default)", full["e2e_products_per_s"]),
        (f"{OWN} --workers {alt}", one["products_per_s"]),
    ]
    if plain.get("products_per_s") is not None:
        pps.append(("plain_threaded", plain["products_per_s"]))
    cpu = [
        (
            f"{OWN} --workers {default} (default)",
            (full.get("e2e_cpu") or {}).get("cpu_s_per_m_run"),
        ),
        (f"{OWN} --workers {alt}", (one.get("cpu") or {}).get("cpu_s_per_m_run")),
        ("plain_threaded", plain.get("cpu_s_per_m_run")),
    ]
    panels: list[Bars | Lines] = [
        Bars(
            f"End to end, limits lifted, {_kb(throughput)}, validation full: "
            f"--workers {one.get('cores', '?')} / --workers 1 = {one.get('scaling') or 0:.2f}x",
            "products/s",
            pps,
        )
    ]
    kept = [(label, value) for label, value in cpu if value is not None]
    if kept:
        panels.append(
            Bars(
                "CPU seconds per million products over the push, every process",
                "CPU s per million products",
                kept,
                reference=(5.0, "target: 5 for ~1 KB products"),
            )
        )
    return Chart(
        "scaling",
        "Scaling with --workers",
        "bulkpush end to end with its default --workers and the other choice (1, or the "
        "cores), beside the "
        "plain threaded uploader, in the same run (medians of interleaved runs); their CPU "
        "per million products, every process counted.",
        panels,
        _when(data, "throughput"),
    )


STAGE_LABELS = {
    "read": "read blocks",
    "check": "check_block",
    "chunk": "SpanChunker.feed",
    "compress": "compress (gzip)",
}
RECORD_LABELS = {
    "read": "iter_records",
    "validate": "Validator",
    "chunk_encode": "Chunker + encode_body",
    "compress": "compress (gzip)",
}


def stages(data: dict[str, Any]) -> Chart | None:
    throughput = _ok(data, "throughput")
    full = ((throughput or {}).get("figures") or {}).get("full") or {}
    span = full.get("stages") or {}
    if not throughput or not span.get("us_per_product"):
        return None
    floor = span.get("floor_us_per_product") or {}
    floor_total = span.get("floor_serial_us_per_product")
    bars = [(f"{OWN}: {STAGE_LABELS.get(k, k)}", v) for k, v in span["us_per_product"].items()]
    bars.append((f"{OWN}: span path, all stages", span["serial_us_per_product"]))
    bars += [
        ("floor: orjson.loads" if k == "parse" else "floor: gzip (isal 2)", v)
        for k, v in floor.items()
    ]
    if floor_total is not None:
        bars.append(("floor: parse + gzip", floor_total))
    panels: list[Bars | Lines] = [
        Bars(
            f"Span path, one thread, {span['products']:,} products, {_kb(throughput)}",
            "µs per product",
            bars,
            reference=(floor_total, "the floor") if floor_total else None,
        )
    ]
    records = full.get("stages_records") or {}
    if records.get("us_per_product"):
        rec = [(f"{k}: {RECORD_LABELS.get(k, k)}", v) for k, v in records["us_per_product"].items()]
        rec.append(("record path, all stages", sum(records["us_per_product"].values())))
        panels.append(
            Bars(
                f"Record path (CSV, JSON, on_record), {records['products']:,} products",
                "µs per product",
                rec,
            )
        )
    return Chart(
        "stages",
        "CPU per product by stage",
        "Microseconds per product of each stage alone on one thread (validation full), "
        "against the floor: orjson.loads of every line and gzip of the same bytes.",
        panels,
        _when(data, "throughput"),
    )


COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")


def memory(data: dict[str, Any]) -> Chart | None:
    entry = _ok(data, "memory")
    rows = (entry or {}).get("figures", {}).get("rows") or []
    if not entry or not rows:
        return None
    limit = None
    for target in entry.get("targets", []):
        if target.get("id") == "memory_under_250":
            limit = (250.0, "target: under 250 MB")
    series = []
    for kind in dict.fromkeys(r.get("kind", "") for r in rows):
        mine = [r for r in rows if r.get("kind", "") == kind]
        size = mine[0]["catalog"].get("mean_product_bytes", 0)
        series.append(
            (
                f"{OWN}, ~{size:,.0f} B products",
                [float(r["products"]) for r in mine],
                [float(r["peak_rss_mb"]) for r in mine],
            )
        )
    return Chart(
        "memory",
        "Peak memory against catalog size",
        "bulkpush's peak RSS (VmHWM summed over the client process and every process it "
        "started) against the number of products pushed (default workers, rate lifted).",
        [
            Lines(
                "Peak RSS, all processes",
                "products in the catalog",
                "peak RSS, MB",
                series,
                reference=limit,
                logx=True,
            )
        ],
        _when(data, "memory"),
    )


# name -> chart function; each returns None when the results hold none of its data.
CHARTS: dict[str, Callable[[dict[str, Any]], Chart | None]] = {
    "products_per_s": products_per_s,
    "cpu_per_million": cpu_per_million,
    "scaling": scaling,
    "stages": stages,
    "memory": memory,
}


def plan(data: dict[str, Any]) -> list[Chart]:
    """The charts the results can show, in order (no plotting library needed)."""
    charts = []
    for function in CHARTS.values():
        chart = function(data)
        if chart is not None and chart.panels:
            charts.append(chart)
    return charts


def draw(chart: Chart, path: Path) -> None:
    """Write ``chart`` as an SVG file at ``path`` (matplotlib, Agg)."""
    import matplotlib  # noqa: PLC0415 - the bench extra; only the chart child imports it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    plt.rcParams.update({"svg.hashsalt": "bulkpush-bench", "svg.fonttype": "none", "font.size": 9})
    heights = [  # inches per panel: a bar row is about a third of an inch
        max(1.2, 0.32 * len(p.bars) + 0.7) if isinstance(p, Bars) else 3.0 for p in chart.panels
    ]
    fig, axes = plt.subplots(
        len(chart.panels),
        1,
        figsize=(8, sum(heights) + 0.9),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, panel in zip(axes[:, 0], chart.panels, strict=True):
        if isinstance(panel, Bars):
            _bars(ax, panel)
        else:
            _lines(ax, panel)
    fig.suptitle(chart.title, fontsize=11, fontweight="bold")
    foot = 0.0
    if chart.footnote:
        fig.text(0.01, 0.005, chart.footnote, fontsize=6.5, color="#555555", va="bottom")
        foot = 0.13 * (chart.footnote.count("\n") + 1) / fig.get_figheight()
    fig.tight_layout(rect=(0, foot + 0.01, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fig.savefig(tmp, format="svg", metadata={"Date": None})
    plt.close(fig)
    tmp.replace(path)


def _bars(ax: Any, panel: Bars) -> None:
    labels = [label for label, _ in panel.bars]
    values = [value for _, value in panel.bars]
    colors = ["#1f77b4" if label.startswith(OWN) else "#9e9e9e" for label in labels]
    ys = list(range(len(values)))[::-1]
    ax.barh(ys, values, color=colors, height=0.6)
    ax.set_yticks(ys, labels)
    top = max([*values, panel.reference[0] if panel.reference else 0.0]) or 1.0
    for y, value in zip(ys, values, strict=True):
        text = f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"
        ax.text(value + top * 0.01, y, text, va="center", fontsize=8)
    if panel.reference:
        ax.axvline(panel.reference[0], color="#d62728", linestyle="--", linewidth=1)
    ax.set_xlim(0, top * 1.15)
    ax.xaxis.set_major_formatter(_thousands())
    ax.set_xlabel(panel.unit)
    title = panel.title + (f" (dashed: {panel.reference[1]})" if panel.reference else "")
    ax.set_title(title, fontsize=9, loc="left")
    ax.spines[["top", "right"]].set_visible(False)


def _thousands() -> Any:
    from matplotlib.ticker import FuncFormatter  # noqa: PLC0415

    return FuncFormatter(lambda value, _pos: f"{value:,.0f}")


def _lines(ax: Any, panel: Lines) -> None:
    for i, (label, xs, ys) in enumerate(panel.series):
        ax.plot(xs, ys, marker="o", label=label, color=COLORS[i % len(COLORS)])
        for x, y in zip(xs, ys, strict=True):
            ax.annotate(f"{y:,.0f} MB", (x, y), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=8)  # fmt: skip
    if panel.reference:
        ax.axhline(panel.reference[0], color="#d62728", linestyle="--", linewidth=1)
        ax.text(0.01, panel.reference[0], panel.reference[1], color="#d62728", fontsize=7,
                va="bottom", transform=ax.get_yaxis_transform())  # fmt: skip
    if panel.logx:
        ax.set_xscale("log")
    ax.set_ylim(0, max([*(y for _, _, ys in panel.series for y in ys), *(
        [panel.reference[0]] if panel.reference else [])]) * 1.15)  # fmt: skip
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    ax.set_title(panel.title, fontsize=9, loc="left")
    ax.legend(loc="lower right", fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)


def draw_all(data: dict[str, Any], directory: Path, prefix: str = "") -> list[Path]:
    """Draw every planned chart into ``directory``; the paths written."""
    written = []
    for chart in plan(data):
        path = directory / f"{prefix}{chart.name}.svg"
        draw(chart, path)
        written.append(path)
    return written


def draw_in_child(json_path: Path, directory: Path, prefix: str = "") -> str | None:
    """Draw the charts of ``json_path`` in a child process; None, or why it failed."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.charts", str(json_path), str(directory),
             "--prefix", prefix],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit status {proc.returncode}"
    return None


def links(
    data: dict[str, Any], directory: Path, md_path: Path, prefix: str = ""
) -> list[tuple[str, str, str]]:
    """(title, path relative to the Markdown file, caption) of each planned chart on disk."""
    out = []
    for chart in plan(data):
        path = directory / f"{prefix}{chart.name}.svg"
        if path.exists():
            rel = os.path.relpath(path, md_path.parent)
            out.append((chart.title, Path(rel).as_posix(), chart.caption))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", type=Path)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--prefix", default="")
    args = parser.parse_args(argv)
    data = json.loads(args.json.read_text())
    try:
        import matplotlib  # noqa: F401, PLC0415
    except ModuleNotFoundError:
        print("matplotlib is not installed (the bench extra): no charts", file=sys.stderr)
        return 2
    for path in draw_all(data, args.directory, args.prefix):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
