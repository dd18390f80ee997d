"""Scans over real HTTP against the emulator, checked against the generator's own rows."""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

import pyarrow as pa
import pytest

from connector import Api
from connector.api import Run
from connector.core.rundata import MemoryRun, RunMeta
from connector.core.scan import HistoryScan
from connector.errors import ConfigurationError
from connector.local.source import LocalSource
from connector.remote.source import ApiSource
from tests.compare import assert_same_rows
from tests.conftest import live_pages_service


def truth(emu: Any, path: str) -> list[dict[str, Any]]:
    """The generator's own rows of a served run."""
    run = emu.run(*path.split("/"))
    return run.rows(0, len(run.steps()))


@pytest.mark.parametrize("index", [0, 1, 2])  # dense; starts at step 1000; 5000-step gap
def test_full_scan_equals_the_generator(api: Api, emulator: Any, index: int) -> None:
    path = emulator.paths()[index]
    want = truth(emulator, path)
    scan = api.run(path).scan_history()
    assert_same_rows(list(scan), want)
    batches = list(scan.to_batches())
    assert {b.schema for b in batches} == {scan.schema}
    assert_same_rows(pa.Table.from_batches(batches).to_pylist(), want)


@pytest.mark.parametrize("lo,hi", [(0, 1), (17, 950), (1000, 1001), (2490, None), (5, 5), (9, 3),
                                   (3000, 10**9), (10**8, None)])
def test_step_windows_min_inclusive_max_exclusive(api: Api, emulator: Any, lo: int, hi: Any) -> None:
    for path in emulator.paths():
        want = [r for r in truth(emulator, path) if r["_step"] >= lo and (hi is None or r["_step"] < hi)]
        run = api.run(path)
        assert_same_rows(list(run.scan_history(min_step=lo, max_step=hi, page_size=300)), want)
        got = run.scan(min_step=lo, max_step=hi, page_size=300).to_arrow()
        assert got.column("_step").to_pylist() == [r["_step"] for r in want]


def test_gaps_and_late_starts_cost_no_flood_of_pages(make_emulator: Any) -> None:
    emu = make_emulator("g/p:runs=3,steps=1000,keys=4,seed=9", service=live_pages_service())
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    late, gap = emu.paths()[1], emu.paths()[2]  # steps 1000..1999; 0..499 then 5500..5999
    for path in (late, gap):
        run = api.run(path)
        emu.reset_counters()
        rows = list(run.scan_history(page_size=100))
        assert_same_rows(rows, truth(emu, path))
        by_field = emu.counters()["by_field"]
        assert by_field["history"]["requests"] <= 1000 // 100 + 2
        assert by_field["sampledHistory"]["requests"] == 1  # one probe of the step column


def test_sampling_is_never_silent(make_emulator: Any, monkeypatch: Any) -> None:
    """A window planned too wide comes back downsampled (at random, below `samples`); the scan
    splits it and loses nothing."""
    import connector.core.windows as windows

    monkeypatch.setattr(windows, "MAX_SAMPLES", 150)  # a server capping samples at 150
    emu = make_emulator("s/p:runs=1,steps=2000,keys=3,seed=2", service=live_pages_service())
    path = emu.paths()[0]
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    run = api.run(path)
    lying = ApiSource(api.transport, run.ref, line_count=1)  # makes the planner guess one window
    scan = HistoryScan(lying, page_size=100)
    assert len(scan.windows()) == 1
    assert_same_rows(list(scan), truth(emu, path))
    assert scan.stats.splits > 0


def test_keys_follow_the_sdk_all_keys_rule(api: Api, emulator: Any) -> None:
    path = emulator.paths()[1]  # val_loss is sparse in this run
    want = [{"_step": r["_step"], "loss": r["loss"], "val_loss": r["val_loss"]}
            for r in truth(emulator, path) if "val_loss" in r and "loss" in r]
    run = api.run(path)
    assert_same_rows(list(run.scan_history(keys=["loss", "val_loss"])), want)
    assert list(run.scan_history(keys=["loss", "never_logged"])) == []


def test_columns_select_columns_and_keep_every_step(api: Api, emulator: Any) -> None:
    path = emulator.paths()[1]
    rows = truth(emulator, path)
    table = api.run(path).scan(columns=["val_loss", "train"], page_size=400).to_arrow()
    assert table.column_names == ["_step", "train.acc", "train.loss", "val_loss", "_extra"]
    assert table.num_rows == len(rows)
    assert table.column("val_loss").null_count == sum("val_loss" not in r for r in rows) > 0
    full = api.run(path).scan_history().to_arrow().select(table.column_names)  # second code path
    assert_same_rows(table.to_pylist(), full.to_pylist())


def test_column_pushdown_fetches_only_the_asked_keys(make_emulator: Any) -> None:
    emu = make_emulator("c/p:runs=1,steps=1000,keys=12,seed=4", service=live_pages_service())
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    run = api.run(emu.paths()[0])
    emu.reset_counters()
    run.scan(columns=["loss"], min_step=200, max_step=400, page_size=100).to_arrow()
    c = emu.counters()["by_field"]
    assert "history" not in c
    assert set(c["sampledHistory"]["keys"]) == {"_step", "loss"}
    assert all(lo >= 200 and hi <= 399 for lo, hi in c["sampledHistory"]["windows"])


def test_unknown_column_is_a_clear_error(api: Api, emulator: Any) -> None:
    run = api.run(emulator.paths()[0])
    with pytest.raises(ConfigurationError, match="unknown key 'nope' in run test/synthetic/"):
        run.scan(columns=["loss", "nope"]).to_arrow()
    with pytest.raises(ConfigurationError, match="keys must be a list"):
        run.scan_history(keys="loss")


def test_type_drift_inside_a_scan_keeps_every_value(make_emulator: Any) -> None:
    emu = make_emulator("d/p:runs=1,steps=50,keys=3,seed=1")
    path = emu.paths()[0]
    run = Api(api_key=emu.api_key, base_url=emu.base_url).run(path)
    scan = run.scan_history()
    schema = scan.schema  # fixed now, before the drift arrives
    emu.append_rows(path, [{"_step": 50, "loss": "diverged", "acc": True, "brand_new": [1, 2]},
                           {"_step": 51, "loss": float("nan"), "acc": 0.5}])
    table = scan.to_arrow()
    assert table.schema == schema and table.num_rows == 52
    last = table.slice(50).to_pylist()
    assert last[0]["loss"] is None and last[0]["acc"] is None
    assert json.loads(last[0]["_extra"]) == {"loss": "diverged", "acc": True, "brand_new": [1, 2]}
    assert math.isnan(last[1]["loss"]) and last[1]["acc"] == 0.5 and last[1]["_extra"] is None


def test_arrow_polars_pandas_and_c_stream(api: Api, emulator: Any) -> None:
    scan = api.run(emulator.paths()[0]).scan_history(max_step=700)
    table = scan.to_arrow()
    assert_same_rows(pa.table(scan).to_pylist(), table.to_pylist())  # via __arrow_c_stream__
    assert pa.schema(scan) == table.schema  # through __arrow_c_schema__
    assert_same_rows(scan.to_arrow_batch_reader().read_all().to_pylist(), table.to_pylist())
    assert scan.to_polars().height == table.num_rows == 700
    assert list(scan.to_pandas()["_step"]) == list(range(700))


def test_history_is_the_servers_sample(api: Api, emulator: Any) -> None:
    run = api.run(emulator.paths()[0])
    rows = run.history(pandas=False)
    kept = emulator.service.sample_positions(2500, 500, emulator.paths()[0], None, None)
    assert [r["_step"] for r in rows] == list(kept) and 0 < len(rows) <= 500
    frame = run.history()
    assert len(frame) == len(rows) and "loss" in frame.columns
    assert run.history(format="arrow").num_rows == len(rows)
    assert run.history(keys=["loss"], format="polars").columns[:2] == ["_step", "loss"]
    events = run.history(stream="system", pandas=False)
    assert events and all(r["_wandb"] is True for r in events)
    assert "system.cpu" in run.history(stream="system", format="arrow").column_names
    with pytest.raises(ConfigurationError):
        run.history(keys=["loss"], stream="system")


def test_runs_pages_filters_and_orders(api: Api, emulator: Any) -> None:
    runs = api.runs("test/synthetic", per_page=1)
    assert len(runs) == 3 and [r.id for r in runs] == [p.split("/")[2] for p in emulator.paths()]
    newest_first = [r.id for r in api.runs("test/synthetic", order="-created_at")]
    assert newest_first == [p.split("/")[2] for p in reversed(emulator.paths())]
    named = api.runs("test/synthetic", filters={"displayName": "synthetic-2"})
    assert [r.name for r in named] == ["synthetic-2"] and len(named) == 1


class _SlowSource(LocalSource):
    def __init__(self, run: MemoryRun) -> None:
        super().__init__(run)
        self.active = self.peak = 0
        self.lock = threading.Lock()

    def fetch_rows(self, window: Any, samples: int) -> Any:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(0.01)
        with self.lock:
            self.active -= 1
        return super().fetch_rows(window, samples)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_pages_in_flight_are_bounded_and_ordered(concurrency: int) -> None:
    run = MemoryRun(RunMeta("e", "p", "r"), rows=[{"_step": i, "x": float(i)} for i in range(2000)])
    source = _SlowSource(run)
    scan = HistoryScan(source, page_size=50, concurrency=concurrency)
    steps = [r["_step"] for r in scan]
    assert steps == list(range(2000))
    assert source.peak == concurrency


def test_local_runs_scan_like_remote_ones() -> None:
    rows = [{"_step": 3, "a": {"b": 1.0}}, {"_step": 7, "a": {"b": math.inf}, "s": "x"}]
    run = Run.from_run_data(MemoryRun(RunMeta("e", "p", "r"), rows=rows))
    assert_same_rows(list(run.scan_history()), rows)
    got = list(run.scan_history())
    got[0]["a"]["b"] = 99  # rows handed out are copies
    assert run.scan_history().to_arrow().column("a.b").to_pylist() == [1.0, math.inf]
