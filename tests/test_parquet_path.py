"""The client on a realistic server: history read from Parquet exports plus the live tail, and exact
rows on a server that downsamples at random, caps requests, lags its line counts and fails.

The truth is the synthetic generator (and, for the Parquet path, the official SDK 0.31.0).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest
import wandb  # noqa: F401  (a test dependency: its absence must fail, not skip)

from connector import Api
from connector.core.source import Window
from connector.emulator import Emulator, FaultSpec, synthetic_runs
from connector.emulator.service import Limits, ServiceModel
from connector.remote.transport import RetryPolicy
from tests.compare import assert_same_rows, flat, row_diff, same_value

SPEC = "pq/hist:runs=3,steps=3000,keys=12,seed=11"  # dense; from step 1000, sparse keys; a 5000-step gap


def truth(emu: Emulator, path: str) -> list[dict[str, Any]]:
    data = emu.run(*path.split("/"))
    return data.rows(0, len(data.steps()))


def fields(emu: Emulator) -> dict[str, Any]:
    return emu.counters()["by_field"]


@pytest.fixture(scope="module")
def exported(api_key: str) -> Any:
    """Finished runs in files of 1000 rows (row groups of 10,000: one per file)."""
    with Emulator(synthetic_runs(SPEC), api_key=api_key, service=ServiceModel(rows_per_file=1000)) as emu:
        yield emu


def api_for(emu: Emulator, **retry: Any) -> Api:
    return Api(api_key=emu.api_key, base_url=emu.base_url, retry=RetryPolicy(**retry) if retry else None)


def test_full_scans_read_the_files_and_equal_the_generator(exported: Emulator) -> None:
    api = api_for(exported)
    for path in exported.paths():
        exported.reset_counters()
        run = api.run(path)
        assert_same_rows(list(run.scan_history()), truth(exported, path))
        table = run.scan().to_arrow()
        assert table.column("_step").to_pylist() == [r["_step"] for r in truth(exported, path)]
        counters = exported.counters()
        assert "history" not in counters["by_field"]  # no live page: every row came from the files
        assert counters["storage"]["gets"] >= 3
    for request in exported.storage.requests:
        assert "Authorization" not in request["headers"]
        assert exported.api_key not in json.dumps(request)


def test_keyed_and_projected_scans_over_the_files(exported: Emulator) -> None:
    api = api_for(exported)
    for path in exported.paths():
        rows = truth(exported, path)
        run = api.run(path)
        keys = ["loss", "val_loss", "train.acc"]
        want = [
            {"_step": r["_step"], "loss": r["loss"], "val_loss": r["val_loss"], "train.acc": r["train"]["acc"]}
            for r in rows
            if "val_loss" in r
        ]
        got = list(run.scan_history(keys=keys))
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            assert same_value(flat(a), flat(b)), row_diff(flat(a), flat(b))
        frame = connector_polars().scan_history(run, api=api).select("_step", "hist", "phase").collect()
        assert frame["_step"].to_list() == [r["_step"] for r in rows]
        assert frame["phase"].to_list() == [r.get("phase") for r in rows]
        hist = [json.loads(h) if h is not None else None for h in frame["hist"].to_list()]
        assert all(same_value(a, r.get("hist")) for a, r in zip(hist, rows, strict=True))


def connector_polars() -> Any:
    import connector.polars

    return connector.polars


def test_a_running_run_reads_files_then_the_live_tail_without_repeats(api_key: str) -> None:
    runs = synthetic_runs(SPEC)
    for run in runs:
        run.meta.state = "running"
    with Emulator(runs, api_key=api_key, service=ServiceModel(rows_per_file=700)) as emu:
        api = api_for(emu)
        for path in emu.paths():
            emu.reset_counters()
            assert_same_rows(list(api.run(path).scan_history(page_size=400)), truth(emu, path))
            by_field = fields(emu)
            steps = [r["_step"] for r in truth(emu, path)]
            first_live = steps[len(steps) - len(steps) // 10]
            assert by_field["history"]["windows"]  # the tail went through live pages
            assert all(lo >= first_live for lo, _ in by_field["history"]["windows"])


def test_expired_urls_are_asked_again(api_key: str, monkeypatch: Any) -> None:
    import connector.remote.parquet as parquet

    monkeypatch.setattr(parquet, "READAHEAD", 1024)  # range reads small enough to need a second GET
    with Emulator(
        synthetic_runs("x/p:runs=1,steps=2500,keys=40,seed=4"),
        api_key=api_key,
        service=ServiceModel(rows_per_file=1000, parquet_url_ttl=1),
    ) as emu:
        path = emu.paths()[0]
        source = api_for(emu).run(path).scan().source
        source.history_keys()  # a scan begins
        rows = source.fetch_keyed(Window(0, 1000), ["loss"], 1000).decode()
        time.sleep(2.2)  # this scan's URLs expire (valid 1 to 2 s)
        for lo in (1000, 2000):
            rows += source.fetch_keyed(Window(lo, lo + 1000), ["loss"], 1000).decode()
        assert [r["_step"] for r in rows] == [r["_step"] for r in truth(emu, path)]
        assert all(same_value(a["loss"], b["loss"]) for a, b in zip(rows, truth(emu, path), strict=True))
        counters = emu.counters()
        assert counters["storage"]["denied"] >= 1
        assert counters["by_field"]["parquetHistory"]["requests"] == 2


def test_a_cached_file_replaced_upstream_is_fetched_again(api_key: str, tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path))
    runs = synthetic_runs("c/p:runs=1,steps=1500,keys=4,seed=5")
    with Emulator(runs, api_key=api_key, service=ServiceModel(rows_per_file=1000)) as emu:
        path = emu.paths()[0]
        api = api_for(emu)
        assert_same_rows(list(api.run(path).scan_history()), truth(emu, path))
        cached = sorted(p.name for p in (tmp_path / "connector-history").iterdir())
        assert any(name.endswith(".parquet") for name in cached)
        # the run is rewound and logged again: the same file names now hold other rows
        emu.truncate(path, 500)
        emu.append_rows(path, [{"_step": 500 + i, "loss": -float(i)} for i in range(900)])
        emu.reset_counters()
        assert_same_rows(list(api.run(path).scan_history()), truth(emu, path))
        assert emu.counters()["storage"]["gets"] >= 2  # validated, found stale, fetched again


@pytest.mark.parametrize("limits", [Limits(), Limits(max_samples=300)], ids=["sdk-limits", "strict-300"])
def test_exact_rows_on_a_sampling_capping_lagging_failing_server(api_key: str, limits: Limits) -> None:
    service = ServiceModel(parquet_history="none", sampling="random", limits=limits, stale_line_count=0.3)
    faults = FaultSpec(rate=0.15, kinds=("429", "500", "reset"), seed=3, retry_after=0.0)
    runs = synthetic_runs(SPEC)
    for run in runs:
        run.meta.state = "running"  # stale line counts apply to running runs
    with Emulator(runs, api_key=api_key, service=service, faults=faults) as emu:
        api = api_for(emu, max_attempts=30, initial_wait=0.01, max_wait=0.05)
        for path in emu.paths():
            rows = truth(emu, path)
            run = api.run(path)
            assert run.history_line_count is not None and run.history_line_count < len(rows)
            assert_same_rows(list(run.scan_history(page_size=500)), rows)
            table = run.scan(min_step=100, max_step=6000, page_size=700).to_arrow()
            assert table.column("_step").to_pylist() == [r["_step"] for r in rows if 100 <= r["_step"] < 6000]
            keyed = list(run.scan_history(keys=["val_loss"], page_size=500))
            assert [r["_step"] for r in keyed] == [r["_step"] for r in rows if "val_loss" in r]
        assert emu.counters()["status"].get("400", 0) == 0 or limits.max_samples < 1000


def test_the_official_sdk_and_the_connector_agree_over_the_files(exported: Emulator, sdk_env: dict[str, str]) -> None:
    script = r"""
import json, sys, wandb
base, key, path = sys.argv[1:]
api = wandb.Api(api_key=key, overrides={"base_url": base}, timeout=60)
sys.stdout.write(json.dumps(list(api.run(path).scan_history())))
"""
    path = exported.paths()[2]  # sparse keys and a gap of 5000 steps
    proc = subprocess.run(
        [sys.executable, "-c", script, exported.base_url, exported.api_key, path],
        env=sdk_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    sdk_rows = json.loads(proc.stdout)
    ours = list(api_for(exported).run(path).scan_history())
    assert len(sdk_rows) == len(ours) > 0
    for a, b in zip(sdk_rows, ours, strict=True):
        # the SDK fills None for keys a row did not log and turns integral floats into ints
        assert same_value(flat(a), flat(b)), row_diff(flat(a), flat(b))


ODD_ROWS = [
    {"_step": 0, "a.b": 1.0, "a": {"b": 2.0, "c": "x"}, "h": {"_type": "histogram", "values": [1, float("nan")]},
     "l": [1, "a"], "x": {"y": float("inf")}, "t.u": 5},
    {"_step": 1, "a": {"b": 3.0}, "m": "str", "e": {}, "t.u": 2**60 + 1},  # an int past 2**53 in a float column
    {"_step": 2, "a.b": -1.5, "m": 2.0, "x": {"y": 1.0}},
]  # fmt: skip


def test_literal_dotted_keys_beside_nested_paths_read_the_same_from_files_and_pages(api_key: str) -> None:
    """A literal ``a.b`` logged beside ``{"a": {"b": ...}}``: in a file it is a column next to a
    struct; rows, Arrow and the long export are the same as over live pages (literal wins, the
    nested value goes to ``_extra``), in both file layouts."""
    from connector.core.rundata import MemoryRun, RunMeta

    def run_data() -> list[MemoryRun]:
        return [MemoryRun(RunMeta("e", "p", "r"), rows=[dict(r) for r in ODD_ROWS])]

    with Emulator(run_data(), api_key=api_key, service=ServiceModel(rows_per_file=2)) as files, Emulator(
        run_data(), api_key=api_key, service=ServiceModel(parquet_history="none")
    ) as live:
        got, want = api_for(files).run("e/p/r"), api_for(live).run("e/p/r")
        assert_same_rows(list(got.scan_history()), list(want.scan_history()))
        assert_same_rows(list(got.scan_history()), ODD_ROWS)
        got_table, want_table = got.scan().to_arrow(), want.scan().to_arrow()
        assert got_table.schema == want_table.schema
        for a, b in zip(got_table.to_pylist(), want_table.to_pylist(), strict=True):
            assert same_value(a, b), row_diff(a, b)
        assert got.scan(columns=["a.b", "t.u"]).to_arrow().to_pylist() == want.scan(columns=["a.b", "t.u"]).to_arrow().to_pylist()
        assert "history" not in fields(files)


def test_integers_past_2_53_in_a_number_column_read_as_on_live_pages(api_key: str) -> None:
    """An int64 file column of a number key becomes the nearest double, as ``float(int)`` does on
    live pages (a checked cast would refuse it and fail the scan)."""
    from connector.core.rundata import MemoryRun, RunMeta

    rows = [{"_step": 0, "big": 2**60 + 1}, {"_step": 1, "big": 3}, {"_step": 2, "big": -(2**63)}]
    with Emulator([MemoryRun(RunMeta("e", "p", "r"), rows=rows)], api_key=api_key) as files:
        table = api_for(files).run("e/p/r").scan().to_arrow()
        assert table.column("big").to_pylist() == [float(2**60 + 1), 3.0, float(-(2**63))]
        assert "history" not in fields(files)
