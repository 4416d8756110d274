"""The suite's charts (benchmarks/charts.py): drawn from the results file, only when it has data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import charts
from benchmarks.render import render


def _entry(figures: dict[str, Any], **settings: Any) -> dict[str, Any]:
    return {
        "status": "ok",
        "title": "t",
        "settings": settings,
        "figures": figures,
        "targets": [],
        "git": {"commit": "abc1234"},
        "mode": "quick",
        "measured_at": "2026-01-01T00:00:00+00:00",
        "machine_load": {"other_cores": 0.1},
    }


def _cpu(per_m: float) -> dict[str, float]:
    return {"cpu_s_per_m": per_m, "cpu_s_per_m_run": per_m * 0.9, "client_cores": 1.0}


def _results() -> dict[str, Any]:
    catalog = {"kind": "regular", "products": 1000, "mb": 1.0, "mean_product_bytes": 981.0}
    small = {"kind": "small200", "products": 1000, "mb": 0.2, "mean_product_bytes": 196.7}
    return {
        "scenarios": {
            "throughput": _entry(
                {
                    "full": {
                        "e2e_products_per_s": 110_000.0,
                        "e2e_cpu": _cpu(11.0),
                        "plain": {
                            "products_per_s": 70_000.0,
                            "bulkpush_vs_plain": 1.57,
                            **_cpu(25.0),
                        },
                    },
                    "light": {"e2e_products_per_s": 160_000.0, "e2e_cpu": _cpu(8.0)},
                },
                catalog=catalog,
            ),
            "at_limit": _entry(
                {
                    "clients": {
                        "bulkpush": {"products_per_s": 190_000.0, "share_of_api": 0.63, **_cpu(6)},
                        "plain_threaded": {"products_per_s": 150_000.0, **_cpu(9.0)},
                    }
                },
                catalog=small,
            ),
            "memory": _entry(
                {
                    "rows": [
                        {"products": 200_000, "peak_rss_mb": 66.0, "catalog": small},
                        {"products": 2_000_000, "peak_rss_mb": 75.0, "catalog": small},
                    ]
                }
            ),
            "peers": {**_entry({}), "status": "error", "reason": "boom"},
        }
    }


def test_plan_follows_the_data() -> None:
    data = _results()
    planned = {c.name: c for c in charts.plan(data)}
    assert list(planned) == ["products_per_s", "cpu_per_million", "memory"]
    products = planned["products_per_s"]
    # The failed peers scenario draws nothing; throughput and at_limit do.
    assert [len(p.bars) for p in products.panels] == [3, 2]  # type: ignore[union-attr]
    assert products.panels[0].bars == [  # type: ignore[union-attr]
        ("bulkpush (validation full)", 110_000.0),
        ("bulkpush (validation light)", 160_000.0),
        ("plain_threaded", 70_000.0),
    ]
    assert products.panels[1].reference == (300_000, "the API's 300,000/s")  # type: ignore[union-attr]
    cpu = planned["cpu_per_million"]
    assert [dict(p.bars) for p in cpu.panels] == [  # type: ignore[union-attr]
        {"bulkpush (validation full)": 11.0, "bulkpush (validation light)": 8.0,
         "plain_threaded": 25.0},
        {"bulkpush": 6.0, "plain_threaded": 9.0},
    ]  # fmt: skip
    assert planned["memory"].panels[0].series == [  # type: ignore[union-attr]
        ("bulkpush", [200_000.0, 2_000_000.0], [66.0, 75.0])
    ]
    assert "abc1234" in products.footnote

    del data["scenarios"]["throughput"], data["scenarios"]["at_limit"]
    assert [c.name for c in charts.plan(data)] == ["memory"]
    assert charts.plan({"scenarios": {}}) == []


def test_charts_are_drawn_linked_and_deterministic(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    data = _results()
    out = tmp_path / "results"
    written = charts.draw_all(data, out, "quick-")
    assert sorted(p.name for p in written) == [
        "quick-cpu_per_million.svg",
        "quick-memory.svg",
        "quick-products_per_s.svg",
    ]
    svg = (out / "quick-products_per_s.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    assert "plain_threaded" in svg and "110,000" in svg  # text, from the data
    again = charts.draw_all(data, tmp_path / "again", "quick-")
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in written]

    links = charts.links(data, out, tmp_path / "QUICK.md", "quick-")
    assert [path for _, path, _ in links] == [
        "results/quick-products_per_s.svg",
        "results/quick-cpu_per_million.svg",
        "results/quick-memory.svg",
    ]
    report = render(data, links)
    assert (
        "![Products per second: bulkpush and each peer](results/quick-products_per_s.svg)" in report
    )
    assert "## Key figures" in report
    # A chart whose file is missing is not linked.
    (out / "quick-memory.svg").unlink()
    assert len(charts.links(data, out, tmp_path / "QUICK.md", "quick-")) == 2
