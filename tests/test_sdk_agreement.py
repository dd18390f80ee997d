"""The connector returns the same rows as the official SDK (wandb 0.31.0) on the same emulator.

The SDK runs in a subprocess (it starts its own wandb-core). Both read the shared emulator's synthetic
runs, which hold NaN/±inf, nested dicts, histograms, strings, sparse keys, a run starting at step
1000 and a run with a 5000-step gap.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from connector import Api
from tests.compare import assert_same_rows, row_diff
from tests.wandb_files import sdk_env

SDK_SCRIPT = r"""
import json, sys
import wandb
base, key, project, keys = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
api = wandb.Api(api_key=key, overrides={"base_url": base}, timeout=60)
out = {"runs": [], "by_run": {}}
for run in api.runs(project):
    out["runs"].append({"id": run.id, "name": run.name, "state": run.state,
                        "config": dict(run.config), "tags": list(run.tags)})
    full = api.run(f"{project}/{run.id}")
    out["by_run"][run.id] = {
        "scan": list(full.scan_history()),
        "scan_keys": list(full.scan_history(keys=keys)),
        "scan_window": list(full.scan_history(min_step=1200, max_step=3600, page_size=300)),
        "history": full.history(pandas=False),
        "history_keys": full.history(keys=keys, pandas=False),
        "summary": json.loads(json.dumps(full.summary._json_dict)),
    }
sys.stdout.write(json.dumps(out))
"""

KEYS = ["loss", "val_loss"]


@pytest.fixture(scope="module")
def emulator(live_emulator: Any) -> Any:
    """This module's oracle is the SDK's live-page path (every row as logged); the SDK over the
    Parquet exports pads keyed scans with None and is compared in tests/test_parquet_path.py."""
    return live_emulator


@pytest.fixture(scope="module")
def api(live_api: Any) -> Any:
    return live_api


@pytest.fixture(scope="module")
def sdk_out(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    env = sdk_env(tmp_path_factory.mktemp("sdk"))
    env.pop("WANDB_MODE")  # online: the SDK reads the emulator
    project = "/".join(emulator.paths()[0].split("/")[:2])
    proc = subprocess.run(
        [sys.executable, "-c", SDK_SCRIPT, emulator.base_url, emulator.api_key, project,
         json.dumps(KEYS)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _runs(api: Api, emulator: Any) -> list[Any]:
    project = "/".join(emulator.paths()[0].split("/")[:2])
    return list(api.runs(project))


def test_runs_listing_matches(sdk_out: dict[str, Any], api: Api, emulator: Any) -> None:
    ours = [{"id": r.id, "name": r.name, "state": r.state, "tags": r.tags} for r in _runs(api, emulator)]
    theirs = [{k: r[k] for k in ("id", "name", "state", "tags")} for r in sdk_out["runs"]]
    assert ours == theirs and len(ours) == 3


def test_scan_history_rows_match(sdk_out: dict[str, Any], api: Api, emulator: Any) -> None:
    for listed in _runs(api, emulator):
        run = api.run(listed.ref.path)
        expected = sdk_out["by_run"][run.id]
        assert run.config == next(r["config"] for r in sdk_out["runs"] if r["id"] == run.id)
        assert not row_diff(run.summary, expected["summary"])
        assert_same_rows(list(run.scan_history()), expected["scan"])
        assert_same_rows(run.scan_history().to_arrow().to_pylist(), expected["scan"])
        assert_same_rows(list(run.scan_history(keys=KEYS)), expected["scan_keys"])
        assert_same_rows(run.scan_history(keys=KEYS).to_arrow().to_pylist(), expected["scan_keys"])
        window = run.scan_history(min_step=1200, max_step=3600, page_size=300)
        assert_same_rows(list(window), expected["scan_window"])
        assert_same_rows(run.history(pandas=False), expected["history"])
        assert_same_rows(run.history(keys=KEYS, pandas=False), expected["history_keys"])


def test_the_data_exercises_the_hard_cases(sdk_out: dict[str, Any]) -> None:
    """Guard: the agreement above covers NaN/±inf, nesting, histograms, sparse keys and gaps."""
    rows = [row for out in sdk_out["by_run"].values() for row in out["scan"]]
    values = [v for row in rows for v in row.values()]
    assert any(isinstance(v, float) and v != v for v in values)
    assert any(v == float("inf") for v in values) and any(v == float("-inf") for v in values)
    assert any(isinstance(v, dict) and v.get("_type") == "histogram" for v in values)
    assert any(isinstance(v, dict) and "_type" not in v for v in values)
    assert any("val_loss" not in row for row in rows)  # sparse
    steps = sorted({row["_step"] for out in sdk_out["by_run"].values() for row in out["scan"][:1]})
    assert steps[-1] >= 1000  # a run starting far above step 0
    gaps = [b["_step"] - a["_step"] for out in sdk_out["by_run"].values()
            for a, b in zip(out["scan"], out["scan"][1:], strict=False)]
    assert max(gaps) > 1000
