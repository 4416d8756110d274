"""The benchmark suite itself works: its smallest quick scenario, in a subprocess.

No timing is asserted (figures depend on the machine); only that the suite
runs, writes its results file and report, and that the figures are positive.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_compression_scenario_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable, "-m", "benchmarks", "--quick", "--only", "compression",
            "--out", str(out), "--cache", str(tmp_path / "cache"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "compression: start" in proc.stdout

    data = json.loads((out / "quick.json").read_text())
    assert data["suite"]["mode"] == "quick"
    assert data["suite"]["scenarios_run"] == ["compression"]
    machine = data["machine"]
    assert machine["cores"] >= 1
    assert machine["python"]
    assert set(machine["versions"]) >= {"bulkpush", "aiohttp", "orjson", "isal", "elasticsearch"}
    assert list(data["scenarios"]) == ["compression"]

    entry = data["scenarios"]["compression"]
    assert entry["status"] == "ok", entry["reason"]
    assert entry["duration_s"] > 0
    rows = entry["figures"]["rows"]
    assert {(r["codec"], r["level"]) for r in rows} >= {("zlib", 1), ("zlib", 6)}
    for row in rows:
        assert row["mb_per_s"] > 0
        assert row["ratio"] > 1  # NDJSON of products always compresses
        assert row["cores_at_api_ceiling"] > 0
    assert sum(1 for r in rows if r["default"]) == 1
    assert all(v > 0 for v in entry["figures"]["threads2_mb_per_s"].values())
    assert entry["targets"]
    for target in entry["targets"]:
        assert set(target) >= {"id", "description", "target", "measured", "met", "note"}
        assert isinstance(target["met"], bool)

    report = (out / "QUICK.md").read_text()
    assert "## Machine" in report
    assert "Compression" in report
    # The full results in the repository are never touched by a run with --out.
    assert not (out / "latest.json").exists()
