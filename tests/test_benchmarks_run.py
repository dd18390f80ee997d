"""`benchmarks/run.py`, the one benchmark command, at its hidden `--tiny` size: every measure runs,
every client returns the right rows, and the report renders. Figures are not judged (no thresholds).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "run.py"
MEASURES = {
    ("scan", "connector"), ("scan", "connector-processes"), ("scan", "sdk"),
    ("scan_latency", "connector"), ("scan_latency", "connector-processes"), ("scan_latency", "sdk"),
    ("scan_keyed", "connector"), ("scan_keyed", "sdk"),
    ("export", "connector"), ("export", "connector-processes"), ("export", "sdk"),
    ("rss_export", "connector"), ("rss_batches", "connector"),
    ("local", "connector"), ("local", "sdk"),
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny() -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--no-write", "--tiny"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


def _module() -> Any:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("benchmarks_run", SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPT.parent))


def test_every_measure_returns_its_rows(tiny: dict[str, Any]) -> None:
    sizes = tiny["sizes"]
    measurements = tiny["measurements"]
    assert {(m["measure"], m["client"]) for m in measurements} == MEASURES
    for m in measurements:
        expected = {
            "export": m["runs"] * sizes["export_steps"],
            "local": sizes["local_steps"],
        }.get(m["measure"], m["steps"])
        assert m["rows"] == m["expected_rows"] == expected > 0, m
        assert m["rows_per_s"] > 0, m
        assert m["peak_rss_mb"] > 0, m
    for measure in ("scan", "scan_latency", "scan_keyed"):
        assert {m["steps"] for m in measurements if m["measure"] == measure} <= set(sizes["scan_steps"])
    assert {m["steps"] for m in measurements if m["measure"].startswith("rss_")} == set(sizes["rss_steps"])
    assert {m["runs"] for m in measurements if m["measure"] == "export"} == set(sizes["export_points"])


def test_report_describes_the_run(tiny: dict[str, Any]) -> None:
    assert tiny["machine"]["nproc"] >= 1
    assert tiny["load"]["samples"] and all("load1" in s for s in tiny["load"]["samples"])
    assert tiny["emulator"]["latency_s"] > 0
    # every row of the targets table, each with a verdict where it was measured
    targets = tiny["targets"]
    assert len(targets) == 14
    assert all(t["met"] in (True, False) for t in targets if t["connector"] is not None)
    text = _module().render(tiny)
    assert "| measure | connector | SDK | ratio | target | met? |" in text
    assert all(t["measure"] in text for t in targets)


def test_charts(tiny: dict[str, Any], tmp_path: Path) -> None:
    import matplotlib  # noqa: F401  (a test dependency: its absence must fail, not skip)
    paths = _module().draw_charts(tiny, tmp_path, "run-tiny")
    assert [p.name for p in paths] == ["run-tiny-rows.png", "run-tiny-rss.png", "run-tiny-export.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)
