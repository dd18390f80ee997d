"""Unit tests of the export's parts: destinations, plans, limiter, tables, name map, CLI (progress:
test_export_progress.py)."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest

from connector.api import Run
from connector.core.rundata import MemoryRun, RunMeta
from connector.errors import ConfigurationError
from connector.export.checkpoint import JsonStateStore, StateKey, StreamState, key_set_id
from connector.export.limiter import AimdLimiter
from connector.export.plan import ExportOptions, plan_run, slot_chunks
from connector.export.sinks.dest import parse_destination, redact_url
from connector.export.sinks.postgres import column_identifier
from connector.export.tables import conform, mark_json_columns, to_long, with_run_columns


def _run(n: int, state: str = "finished", start: int = 0) -> Run:
    rows = [{"_step": start + i, "loss": float(i)} for i in range(n)]
    return Run.from_run_data(MemoryRun(RunMeta("e", "p", "r", state=state), rows=rows))


def test_destination_forms_and_redaction():
    assert parse_destination("a/b.duckdb").kind == "duckdb"
    assert parse_destination("a/b.db").kind == "duckdb"
    assert parse_destination("postgres://h/db").kind == "postgres"
    assert parse_destination("some/folder").kind == "parquet"
    with pytest.raises(ConfigurationError, match="only written to a local folder"):
        parse_destination("s3://bucket/x")
    url = "postgresql://me:p%40ss@h:5/db?sslmode=require&password=zzz"
    shown = redact_url(url)
    assert "p%40ss" not in shown and "zzz" not in shown and shown.startswith("postgresql://me:***@h:5/db")
    assert "p%40ss" not in repr(parse_destination(url))


def test_plan_actions_and_max_step_exclusive():
    run = _run(30)
    opts = ExportOptions(chunk_steps=10)
    p = plan_run(run, None, opts)
    assert p.action == "new" and [(r.lo, r.hi) for r in p.ranges] == [(0, 30)]
    p = plan_run(run, None, ExportOptions(chunk_steps=10, min_step=5, max_step=12))
    assert [(r.lo, r.hi, r.watermark) for r in p.ranges] == [(5, 12, 11)]
    key = p.key
    half = StreamState(key, watermark=14, last_step=29, line_count=30, run_state="finished")
    p = plan_run(run, half, opts)
    assert p.action == "append" and [(r.lo, r.hi) for r in p.ranges] == [(15, 30)]
    running = _run(30, state="running")
    p = plan_run(running, half.evolve(run_state="running"), ExportOptions(chunk_steps=10, running_lag=4))
    assert p.action == "lag" and p.steps == [11, 30]
    longer = StreamState(key, watermark=29, last_step=40, line_count=41, run_state="finished")
    assert plan_run(run, longer, opts).action == "rewound"
    fewer_lines = StreamState(key, watermark=29, last_step=29, line_count=31, run_state="finished")
    assert plan_run(run, fewer_lines, opts).action == "rewound"
    done = StreamState(key, watermark=29, last_step=29, line_count=30, run_state="finished")
    assert plan_run(run, done, opts).action == "up-to-date"
    assert list(slot_chunks([], 5, 5, 10)) == []
    with pytest.raises(ConfigurationError, match="exclusive"):
        ExportOptions(min_step=5, max_step=5)
    with pytest.raises(ConfigurationError, match="layout"):
        ExportOptions(layout="tall")


def test_key_sets_and_state_file_round_trip(tmp_path):
    assert key_set_id(None) == "*" and key_set_id(["a", "b"]) == key_set_id(["b", "a", "a"])
    store = JsonStateStore(tmp_path / "s.json")
    k = StateKey("e", "p", "r", "history", key_set_id(["a"]))
    store.commit([StreamState(k, watermark=5, keys=("a",))], meta={"columns": {"history": {"a": "double"}}})
    again = JsonStateStore(tmp_path / "s.json")
    assert again.load()[k].keys == ("a",) and again.meta["columns"]["history"]["a"] == "double"
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_limiter_never_exceeds_max_cuts_on_429_and_recovers():
    lim = AimdLimiter(6, cooldown=0.01)
    peak = 0
    lock = threading.Lock()
    active = [0]

    def work(i: int) -> None:
        nonlocal peak
        with lim.slot():
            with lock:
                active[0] += 1
                peak = max(peak, active[0])
            time.sleep(0.002)
            with lock:
                active[0] -= 1
        if i % 25 == 0:
            lim.on_throttle(0.0)
        else:
            lim.on_success()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(150)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak <= 6 and lim.peak_in_flight <= 6
    assert lim.min_limit < 6 and lim.throttles == 6
    for _ in range(200):
        lim.on_success()
    assert lim.limit == 6


def test_conform_keeps_types_and_long_melts_extra():
    t = pa.table({"_step": [0, 1, 2], "x": ['"a"', "2.5", None], "_extra": [None, None, '{"y":1}']})
    t = mark_json_columns(t, {"x"})
    out = conform(t, {"x": pa.float64()})
    assert out.schema.field("x").type == pa.float64()
    assert out.column("x").to_pylist() == [None, 2.5, None]
    assert out.column("_extra").to_pylist() == ['{"x":"a"}', None, '{"y":1}']
    long = to_long(with_run_columns(out, "e", "p", "r"))
    got = [(r["_step"], r["key"], r["value_number"], r["value_text"]) for r in long.to_pylist()]
    assert got == [(0, "x", None, "a"), (1, "x", 2.5, None), (2, "y", 1.0, None)]


def test_postgres_identifiers_never_collide():
    a, b = "k" * 70 + "_alpha", "k" * 70 + "_beta"
    ia, ib = column_identifier(a), column_identifier(b)
    assert ia != ib and len(ia.encode()) <= 63 and len(ib.encode()) <= 63
    assert column_identifier("é" * 40).encode().__len__() <= 63


def test_memory_runs_export_without_a_server(tmp_path):
    from connector.export import export

    run = MemoryRun(RunMeta("e", "p", "m1"), rows=[{"_step": i, "a": {"b": i}} for i in range(25)])
    dest = str(tmp_path / "m.duckdb")
    s = export([run], dest, chunk_steps=10)
    assert (s.rows, s.chunks) == (25, 3)
    plan = export([run], dest, dry_run=True).plan
    assert plan[0]["action"] == "up-to-date"
    run.append([{"_step": 30, "a": {"b": 30}}])
    assert export([run], dest, dry_run=True).plan[0]["steps"] == [25, 31]
    assert export([run], dest).rows == 1


def test_import_connector_stays_light():
    import subprocess
    import sys

    code = "import sys, connector, connector.export; print(sorted(m for m in ('duckdb', 'polars', 'pandas', 'adbc_driver_postgresql') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_run_filters_select_runs_over_http(make_emulator, tmp_path):
    from connector.api import Api
    from connector.emulator.demo_runs import demo_runs
    from connector.export import export

    emu = make_emulator(demo_runs())
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    ids = [p.split("/")[2] for p in emu.paths()]
    plan = export("demo/mnist", str(tmp_path / "f.duckdb"), api=api, dry_run=True, run_states=["running"]).plan
    assert [p["run"] for p in plan] == [emu.paths()[1]]
    plan = export("demo/mnist", str(tmp_path / "f.duckdb"), api=api, dry_run=True, run_ids=[ids[0], ids[2]]).plan
    assert sorted(p["run"] for p in plan) == sorted([emu.paths()[0], emu.paths()[2]])
    plan = export("demo/mnist", str(tmp_path / "f.duckdb"), api=api, dry_run=True,
                  filters={"config.architecture": "cnn"}).plan  # fmt: skip
    assert [p["run"] for p in plan] == [emu.paths()[0]]
    assert not (tmp_path / "f.duckdb").exists()  # a dry run writes nothing
    summary = export([emu.paths()[2]], str(tmp_path / "one"), api=api, max_step=100)
    assert summary.rows == 100
