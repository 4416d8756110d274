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
                        "default_workers": 1,
                        "workers1": {
                            "products_per_s": 80_000.0,
                            "cpu": _cpu(6.0),
                            "workers": 2,
                            "cores": 2,
                            "scaling": 0.727,
                        },
                        "stages": {
                            "products": 51_263,
                            "us_per_product": {
                                "read": 1.0,
                                "check": 1.8,
                                "chunk": 0.8,
                                "compress": 2.1,
                            },
                            "serial_us_per_product": 5.7,
                            "floor_us_per_product": {"parse": 2.4, "gzip": 2.5},
                            "floor_serial_us_per_product": 4.9,
                        },
                        "stages_records": {
                            "products": 50_000,
                            "us_per_product": {
                                "read": 2.0,
                                "validate": 3.6,
                                "chunk_encode": 1.1,
                                "compress": 2.0,
                            },
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
                        {
                            "kind": "regular",
                            "products": 200_000,
                            "peak_rss_mb": 200.0,
                            "catalog": catalog,
                        },
                        {
                            "kind": "regular",
                            "products": 1_200_000,
                            "peak_rss_mb": 210.0,
                            "catalog": catalog,
                        },
                        {
                            "kind": "small",
                            "products": 200_000,
                            "peak_rss_mb": 66.0,
                            "catalog": small,
                        },
                        {
                            "kind": "small",
                            "products": 2_000_000,
                            "peak_rss_mb": 75.0,
                            "catalog": small,
                        },
                    ]
                }
            ),
            "peers": {**_entry({}), "status": "error", "reason": "boom"},
        }
    }


def test_plan_follows_the_data() -> None:
    data = _results()
    planned = {c.name: c for c in charts.plan(data)}
    assert list(planned) == ["products_per_s", "cpu_per_million", "scaling", "stages", "memory"]
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
        ("bulkpush, ~981 B products", [200_000.0, 1_200_000.0], [200.0, 210.0]),
        ("bulkpush, ~197 B products", [200_000.0, 2_000_000.0], [66.0, 75.0]),
    ]
    assert "abc1234" in products.footnote
    scaling = planned["scaling"]
    assert scaling.panels[0].bars == [  # type: ignore[union-attr]
        ("bulkpush --workers 1 (default)", 110_000.0),
        ("bulkpush --workers 2", 80_000.0),
        ("plain_threaded", 70_000.0),
    ]
    assert "--workers 2 / --workers 1 = 0.73x" in scaling.panels[0].title
    assert dict(scaling.panels[1].bars) == {  # type: ignore[union-attr]
        "bulkpush --workers 1 (default)": 9.9, "bulkpush --workers 2": 5.4, "plain_threaded": 22.5,
    }  # fmt: skip
    stages = planned["stages"]
    span = dict(stages.panels[0].bars)  # type: ignore[union-attr]
    assert span["bulkpush: check_block"] == 1.8
    assert span["bulkpush: span path, all stages"] == 5.7
    assert span["floor: orjson.loads"] == 2.4 and span["floor: parse + gzip"] == 4.9
    assert stages.panels[0].reference == (4.9, "the floor")  # type: ignore[union-attr]
    assert dict(stages.panels[1].bars)["record path, all stages"] == pytest.approx(8.7)  # type: ignore[union-attr]

    # Without the --workers 1 runs or the stage costs, neither chart is planned.
    del data["scenarios"]["throughput"]["figures"]["full"]["workers1"]
    del data["scenarios"]["throughput"]["figures"]["full"]["stages"]
    assert "scaling" not in [c.name for c in charts.plan(data)]
    assert "stages" not in [c.name for c in charts.plan(data)]

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
        "quick-scaling.svg",
        "quick-stages.svg",
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
        "results/quick-scaling.svg",
        "results/quick-stages.svg",
        "results/quick-memory.svg",
    ]
    report = render(data, links)
    assert (
        "![Products per second: bulkpush and each peer](results/quick-products_per_s.svg)" in report
    )
    assert "## Key figures" in report
    # A chart whose file is missing is not linked.
    (out / "quick-memory.svg").unlink()
    assert len(charts.links(data, out, tmp_path / "QUICK.md", "quick-")) == 4
    assert "![Scaling with --workers](results/quick-scaling.svg)" in report
    assert "check_block" in (out / "quick-stages.svg").read_text()
