"""Export over real HTTP from the emulator into real DuckDB, PostgreSQL and Parquet.

Full exports equal the scans; re-runs fetch only new steps (emulator counters) without duplicates;
rewound runs are re-exported; deleted runs keep their data; schema evolution; layouts; system metrics.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_export_support import KINDS, assert_equals_scans, make_dest, read_history, read_states

from connector.api import Api
from connector.emulator.demo_runs import demo_runs
from connector.export import export


@pytest.fixture
def demo(make_emulator):
    emu = make_emulator(demo_runs())
    return emu, Api(api_key=emu.api_key, base_url=emu.base_url)


@pytest.mark.parametrize("kind", KINDS)
def test_full_export_equals_scans_then_reruns_fetch_only_new_steps(kind, demo, tmp_path):
    emu, api = demo
    dest = make_dest(kind, tmp_path)
    paths = emu.paths()
    summary = export("demo/mnist", dest, api=api, chunk_steps=1500)
    assert summary.ok and summary.runs == 3 and summary.rows == 9500
    assert_equals_scans(read_history(kind, dest), api, paths)

    # steps appended upstream: only they are fetched (the running run also re-reads its lag window)
    finished, running, failed = paths
    last = {p: api.run(p).lastHistoryStep for p in paths}
    emu.append_rows(finished, [{"_step": last[finished] + 1 + i, "loss": float(i), "brand_new": i * 2.0} for i in range(5)])
    emu.append_rows(running, [{"_step": last[running] + 1 + i, "loss": float("nan")} for i in range(7)])
    emu.reset_counters()
    summary = export("demo/mnist", dest, api=api, chunk_steps=1500, running_lag=50)
    windows = emu.counters()["by_field"]["history"]["windows"]
    assert windows, "nothing fetched"
    for lo, _hi in windows:
        assert lo in (last[finished] + 1, last[running] + 1 - 50), windows
    assert summary.rows == 5 + 7 + 50 and summary.runs_up_to_date == 1
    table = read_history(kind, dest)
    assert table.num_rows == 9500 + 12  # merged on (run, _step): no duplicates
    assert_equals_scans(table, api, paths)
    # schema evolution: the new key is a column, old rows NULL, nothing rewritten
    assert "brand_new" in table.column_names

    # nothing new: finished runs cost no history request at all
    emu.reset_counters()
    summary = export("demo/mnist", dest, api=api, chunk_steps=1500, running_lag=0)
    assert summary.rows == 0 and "history" not in emu.counters()["by_field"]


@pytest.mark.parametrize("kind", KINDS)
def test_rewound_run_is_reexported_and_deleted_run_is_marked(kind, demo, make_emulator, tmp_path):
    emu, api = demo
    dest = make_dest(kind, tmp_path)
    paths = emu.paths()
    export("demo/mnist", dest, api=api, chunk_steps=1000)
    rewound = paths[0]
    emu.truncate(rewound, 2000)
    emu.append_rows(rewound, [{"_step": 2000 + i, "loss": -1.0 - i, "phase": "again"} for i in range(10)])
    summary = export("demo/mnist", dest, api=api, chunk_steps=1000)
    assert summary.rewound == [rewound]
    table = read_history(kind, dest)
    assert_equals_scans(table, api, paths)
    mine = [r for r in table.to_pylist() if r["run_id"] == rewound.split("/")[2]]
    assert len(mine) == 2010 and mine[-1]["loss"] == -10.0

    # the same project upstream without one run: its data stays, its state is marked
    from connector.emulator import Emulator

    runs = [emu.run(*p.split("/")) for p in paths[:2]]
    emu2 = Emulator(runs, api_key=emu.api_key).start()
    try:
        api2 = Api(api_key=emu2.api_key, base_url=emu2.base_url)
        summary = export("demo/mnist", dest, api=api2, chunk_steps=1000)
    finally:
        emu2.stop()
    assert summary.deleted_upstream == [paths[2]]
    assert read_history(kind, dest).num_rows == table.num_rows
    marks = {k[2]: v[2] for k, v in read_states(kind, dest).items() if k[3] == "history"}
    assert marks[paths[2].split("/")[2]] is True and marks[paths[0].split("/")[2]] is False


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_keys_select_columns_never_rows_and_long_layout(kind, demo, tmp_path):
    emu, api = demo
    paths = emu.paths()
    dest = make_dest(kind, tmp_path, "keys")
    summary = export("demo/mnist", dest, api=api, keys=["val_loss", "train"], chunk_steps=2000)
    assert summary.ok
    table = read_history(kind, dest)
    assert table.num_rows == 9500  # one row per step, though val_loss is sparse
    assert {"val_loss", "train.loss", "train.acc"} <= set(table.column_names)
    assert "loss" not in table.column_names
    assert_equals_scans(table, api, paths, keys=["val_loss", "train"])

    long_dest = make_dest(kind, tmp_path, "long")
    export("demo/mnist", long_dest, api=api, layout="long", chunk_steps=2000)
    long = read_history(kind, long_dest, "history_long")
    wide_dest = make_dest(kind, tmp_path, "wide")
    export("demo/mnist", wide_dest, api=api, chunk_steps=2000)
    wide = read_history(kind, wide_dest)
    cells = {}
    for row in wide.to_pylist():
        for k, v in row.items():
            if k not in ("entity", "project", "run_id", "_step", "_extra") and v is not None:
                cells[(row["run_id"], row["_step"], k)] = v
    assert long.num_rows == len(cells)
    for row in long.to_pylist():
        want = cells[(row["run_id"], row["_step"], row["key"])]
        have = next(v for v in (row["value_number"], row["value_bool"], row["value_text"]) if v is not None)
        assert have == want or (isinstance(want, float) and math.isnan(want) and math.isnan(have))


@pytest.mark.parametrize("kind", KINDS)
def test_type_never_changes_and_system_metrics(kind, make_emulator, tmp_path):
    from connector.core.rundata import MemoryRun, RunMeta

    run = MemoryRun(RunMeta("e", "p", "r1", state="running"), rows=[{"_step": i, "x": float(i)} for i in range(10)],
                    events=[{"_timestamp": 100.0 + i, "_runtime": float(i), "system.cpu": 5.0 * i} for i in range(6)])
    emu = make_emulator([run])
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    dest = make_dest(kind, tmp_path, "types")
    export("e/p", dest, api=api, include_system_metrics=True, running_lag=0)
    emu.append_rows("e/p/r1", [{"_step": 10, "x": "not a number"}, {"_step": 11, "x": 11.0}])
    export("e/p", dest, api=api, include_system_metrics=True, running_lag=0)
    table = read_history(kind, dest)
    rows = table.to_pylist()
    assert [r["_step"] for r in rows] == list(range(12))
    assert rows[10]["x"] is None and '"not a number"' in rows[10]["_extra"] and rows[11]["x"] == 11.0
    metrics = read_history(kind, dest, "system_metrics")
    assert metrics.num_rows == 6 and metrics.column("system.cpu").to_pylist() == [5.0 * i for i in range(6)]
    watermark = read_states(kind, dest)[("e", "p", "r1", "events", "*")][0]
    assert watermark == 105.0
