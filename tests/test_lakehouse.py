"""Delta Lake and Iceberg destinations: equal to a DuckDB export of the same runs, exactly once
across ``kill -9``, and Delta on a local S3 server (moto in server mode).

Each lakehouse test skips (with the reason) only when its optional dependency is missing:
``pip install '.[delta]'`` / ``'.[iceberg]'`` / ``'.[s3test]'`` (the ``test`` extra installs them).
"""

from __future__ import annotations

import math
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_export_support import ROOT, cli_env, read_history, run_cli  # noqa: E402

from connector.api import Api  # noqa: E402
from connector.emulator import synthetic_runs  # noqa: E402
from connector.emulator.demo_runs import demo_runs  # noqa: E402
from connector.export import export  # noqa: E402
from tests.conftest import live_pages_service

ARGS = ["demo/mnist", "--chunk-steps", "700", "--quiet", "--concurrency", "2"]
SLOW_ARGS = [*ARGS, "--page-size", "100"]


def need(module: str, extra: str) -> Any:
    return pytest.importorskip(module, reason=f"{module} is not installed: pip install '.[{extra}]'")


def canon(table: pa.Table) -> list[tuple[Any, ...]]:
    """Rows over sorted column names, sorted by run and step, NaN as a string."""
    if table.num_rows:
        table = table.sort_by([("entity", "ascending"), ("project", "ascending"), ("run_id", "ascending"), ("_step", "ascending")])
    cols = sorted(table.column_names)
    rows = [tuple("NaN" if isinstance(r[c], float) and math.isnan(r[c]) else r[c] for c in cols) for r in table.select(cols).to_pylist()]
    return [tuple(cols), *rows]


def lake_states(kind: str, target: str) -> dict[tuple[str, ...], Any]:
    sink = open_read_only(kind, target)
    try:
        return {
            (k.entity, k.project, k.run_id, k.stream, k.key_set): (s.watermark, s.last_step, s.min_step)
            for k, s in sink.load_states().items()
        }
    finally:
        sink.close()


def duck_states(path: str) -> dict[tuple[str, ...], Any]:
    import duckdb

    con = duckdb.connect(path, read_only=True)
    try:
        rows = con.sql("SELECT entity, project, run_id, stream, key_set, watermark, last_step, min_step FROM _wandb_export_state").fetchall()
    finally:
        con.close()
    return {tuple(r[:5]): (int(r[5]), r[6], r[7]) for r in rows}


def open_read_only(kind: str, target: str) -> Any:
    if kind == "delta":
        from connector.export.sinks.delta import DeltaSink

        return DeltaSink(target, layout="wide", read_only=True)
    from connector.export.sinks.iceberg import IcebergSink

    return IcebergSink(target, layout="wide", read_only=True)


def lake_history(kind: str, target: str, table: str = "history") -> pa.Table:
    if kind == "delta":
        import polars as pl

        return pl.read_delta(f"{target}/{table}").to_arrow()
    from connector.export.sinks.iceberg import read_table

    return read_table(target, table)


def dest_for(kind: str, tmp_path: Path, tag: str) -> tuple[str, str]:
    """(--to, the target inside it)."""
    target = str(tmp_path / f"{tag}-{kind}")
    return f"{kind}://{target}", target


@pytest.fixture
def demo(make_emulator):
    return make_emulator(demo_runs())


@pytest.fixture
def live_demo(make_emulator):
    """The demo runs served as live pages: a kill must land mid-export, and the Parquet path
    finishes these small runs before any kill could."""
    return make_emulator(demo_runs(), service=live_pages_service())


def duck_reference(emu: Any, tmp_path: Path, **options: Any) -> tuple[list[Any], dict[Any, Any]]:
    dest = str(tmp_path / "ref.duckdb")
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    assert export("demo/mnist", dest, api=api, chunk_steps=700, **options).ok
    return canon(read_history("duckdb", dest)), duck_states(dest)


KINDS = [pytest.param("delta", id="delta"), pytest.param("iceberg", id="iceberg")]
MODULES = {"delta": ("deltalake", "delta"), "iceberg": ("pyiceberg", "iceberg")}


@pytest.mark.parametrize("kind", KINDS)
def test_export_equals_a_duckdb_export(kind, demo, tmp_path):
    need(*MODULES[kind])
    if kind == "delta":
        need("polars", "delta")
    rows, states = duck_reference(demo, tmp_path)
    to, target = dest_for(kind, tmp_path, "a")
    api = Api(api_key=demo.api_key, base_url=demo.base_url)
    summary = export("demo/mnist", to, api=api, chunk_steps=700)
    assert summary.ok and summary.rows > 0
    assert canon(lake_history(kind, target)) == rows
    assert lake_states(kind, target) == states
    again = export("demo/mnist", to, api=api, chunk_steps=700)  # only the running run's lag window
    assert again.ok and again.runs_up_to_date == summary.runs - 1 and 0 < again.rows <= 100
    assert canon(lake_history(kind, target)) == rows and lake_states(kind, target) == states


@pytest.mark.parametrize("kind", KINDS)
def test_long_layout_system_metrics_and_runs_equal_duckdb(kind, demo, tmp_path):
    need(*MODULES[kind])
    if kind == "delta":
        need("polars", "delta")
    import duckdb

    api = Api(api_key=demo.api_key, base_url=demo.base_url)
    options = {"chunk_steps": 700, "layout": "long", "include_system_metrics": True}
    ref = str(tmp_path / "ref.duckdb")
    assert export("demo/mnist", ref, api=api, **options).ok
    to, target = dest_for(kind, tmp_path, "long")
    summary = export("demo/mnist", to, api=api, **options)
    assert summary.ok and summary.event_rows > 0
    con = duckdb.connect(ref, read_only=True)
    try:
        for table in ("history_long", "system_metrics", "runs"):
            want = con.sql(f"SELECT * FROM {table}").to_arrow_table()
            got = lake_history(kind, target, table)
            assert unordered(got) == unordered(want), table
    finally:
        con.close()


def unordered(table: pa.Table) -> tuple[list[str], list[str]]:
    cols = sorted(table.column_names)
    rows = [tuple("NaN" if isinstance(r[c], float) and math.isnan(r[c]) else r[c] for c in cols) for r in table.to_pylist()]
    return cols, sorted(map(repr, rows))


@pytest.mark.parametrize("kind", KINDS)
def test_key_sets_merge_and_new_keys_add_columns(kind, demo, tmp_path):
    need(*MODULES[kind])
    if kind == "delta":
        need("polars", "delta")
    rows, _ = duck_reference(demo, tmp_path)
    to, target = dest_for(kind, tmp_path, "k")
    api = Api(api_key=demo.api_key, base_url=demo.base_url)
    assert export("demo/mnist", to, api=api, chunk_steps=700, keys=["loss"], max_step=900).ok
    first = lake_history(kind, target)
    assert {"loss", "_step"} <= set(first.column_names) and "acc" not in first.column_names
    assert export("demo/mnist", to, api=api, chunk_steps=700, keys=["loss", "acc"]).ok
    assert export("demo/mnist", to, api=api, chunk_steps=700).ok  # all keys: the other columns appear
    assert canon(lake_history(kind, target)) == rows


@pytest.mark.parametrize("kind", KINDS)
def test_crash_hook_then_resume_is_identical(kind, demo, tmp_path):
    need(*MODULES[kind])
    if kind == "delta":
        need("polars", "delta")
    rows, states = duck_reference(demo, tmp_path)
    for i, crash in enumerate(["before-commit:3", "after-commit:5"]):
        to, target = dest_for(kind, tmp_path, f"crash{i}")
        proc = run_cli([*ARGS, "--to", to], cli_env(demo, WANDB_HISTORY_CRASH_AT=crash))
        assert proc.returncode == 137, (crash, proc.stderr[-2000:])
        proc = run_cli([*ARGS, "--to", to], cli_env(demo))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert canon(lake_history(kind, target)) == rows, crash
        assert lake_states(kind, target) == states, crash


@pytest.mark.parametrize("kind", KINDS)
def test_kill_9_mid_export_then_resume_is_identical(kind, live_demo, tmp_path):
    need(*MODULES[kind])
    if kind == "delta":
        need("polars", "delta")
    to, target = dest_for(kind, tmp_path, "kill")
    kill_9_then_resume(live_demo, tmp_path, kind, to, target, crashes=(None, None), seed=f"kill-{kind}")


@pytest.mark.parametrize("kind", KINDS)
def test_rewound_run_is_deleted_and_reexported_like_duckdb(kind, make_emulator, tmp_path):
    need(*MODULES[kind])
    if kind == "delta":
        need("polars", "delta")
    emu = make_emulator("e/p:runs=2,steps=300,keys=5,seed=7")
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    ref = str(tmp_path / "ref.duckdb")
    to, target = dest_for(kind, tmp_path, "rw")
    for dest in (ref, to):
        assert export("e/p", dest, api=api, chunk_steps=100).ok
    emu.truncate(emu.paths()[0], 150)
    for dest in (ref, to):
        summary = export("e/p", dest, api=api, chunk_steps=100)
        assert summary.ok and summary.rewound == [emu.paths()[0]]
    assert canon(lake_history(kind, target)) == canon(read_history("duckdb", ref))
    assert lake_states(kind, target) == duck_states(ref)


def test_destination_forms():
    from connector.errors import ConfigurationError
    from connector.export.sinks.dest import parse_destination

    assert parse_destination("delta://wh").target == "wh"
    assert parse_destination("delta+s3://bucket/prefix").target == "s3://bucket/prefix"
    assert parse_destination("iceberg:///abs/wh").target == "/abs/wh"
    with pytest.raises(ConfigurationError):
        parse_destination("delta://")


# -- full refresh ----------------------------------------------------------------------------------


@pytest.fixture
def two_projects(make_emulator):
    return make_emulator([*demo_runs(), *synthetic_runs("acme/vision:runs=2,steps=400,keys=4,seed=5")])


def whole(kind: str, target: str) -> list[Any]:
    return canon(lake_history(kind, target))


@pytest.mark.parametrize("kind", KINDS)
def test_full_refresh_replaces_only_the_runs_of_its_sources(kind, two_projects, tmp_path):
    """The same commands into DuckDB and into the lake: equal rows and states at every step; the
    refresh of acme/vision drops its keyed state and its rows past a truncation, and leaves
    demo/mnist (exported by another command into the same tables) untouched."""
    need(*MODULES[kind])
    if kind == "delta":
        need("polars", "delta")
    emu = two_projects
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    ref = str(tmp_path / "ref.duckdb")
    to, target = dest_for(kind, tmp_path, "fr")
    acme = [p for p in emu.paths() if p.startswith("acme/")]
    for dest in (ref, to):
        assert export("demo/mnist", dest, api=api, chunk_steps=700).ok
        assert export("acme/vision", dest, api=api, chunk_steps=100).ok
        assert export("acme/vision", dest, api=api, chunk_steps=100, keys=["loss"]).ok  # a second key set
    before = whole(kind, target)
    demo_before = [r for r in before[1:] if r[before[0].index("project")] == "mnist"]
    demo_states = {k: v for k, v in lake_states(kind, target).items() if k[0] == "demo"}
    assert any(k[4] != "*" for k in lake_states(kind, target) if k[0] == "acme")
    emu.truncate(acme[0], 150)  # upstream lost steps: the refresh must delete them

    plan = export("acme/vision", to, api=api, full_refresh=True, dry_run=True)
    assert sorted(plan.replaces) == sorted(acme) and all(i["action"] == "replace" for i in plan.plan)
    assert whole(kind, target) == before  # the dry run wrote nothing

    for dest in (ref, to):
        summary = export("acme/vision", dest, api=api, chunk_steps=100, full_refresh=True)
        assert summary.ok and summary.rows == 150 + 400
    after = whole(kind, target)
    assert after == canon(read_history("duckdb", ref))
    assert lake_states(kind, target) == duck_states(ref)
    assert [r for r in after[1:] if r[after[0].index("project")] == "mnist"] == demo_before
    assert {k: v for k, v in lake_states(kind, target).items() if k[0] == "demo"} == demo_states
    assert not any(k[4] != "*" for k in lake_states(kind, target) if k[0] == "acme")  # its keyed state is gone
    steps = [r[after[0].index("_step")] for r in after[1:] if r[after[0].index("run_id")] == acme[0].split("/")[-1]]
    assert max(steps) == 149
    assert not staging_tables(kind, target)


def staging_tables(kind: str, target: str) -> list[str]:
    if kind == "delta":
        return sorted(p.name for p in Path(target).iterdir() if p.name.endswith("__refresh"))
    from connector.export.sinks.iceberg import open_catalog, parse_target

    w = parse_target(target)
    catalog = open_catalog(w.location, w.catalog)
    try:
        return sorted(name for _, name in catalog.list_tables(w.namespace) if name.endswith("__refresh"))
    finally:
        catalog.engine.dispose()


@pytest.mark.parametrize("kind", KINDS)
def test_kill_9_during_full_refresh_then_rerun_equals_a_clean_export(kind, live_demo, tmp_path):
    """The destination first holds a partial export (one key, steps < 900); a full refresh killed
    while staging, right after its journal, and between two table swaps, then run again (or, after a
    swap began, followed by a plain export), ends equal to a clean export: rows and states."""
    need(*MODULES[kind])
    if kind == "delta":
        need("polars", "delta")
    rows, states = duck_reference(live_demo, tmp_path)
    partial = [*ARGS, "--keys", "loss", "--max-step", "900"]
    crashes = [("before-commit:4", True), ("before-swap:1", True), ("after-swap-table:1", True), ("after-swap-table:2", False)]
    for i, (crash, refresh_again) in enumerate(crashes):
        to, target = dest_for(kind, tmp_path, f"frk{i}")
        assert run_cli([*partial, "--to", to], cli_env(live_demo)).returncode == 0
        first = whole(kind, target)
        proc = run_cli([*ARGS, "--full-refresh", "--to", to], cli_env(live_demo, WANDB_HISTORY_CRASH_AT=crash))
        assert proc.returncode == 137, (crash, proc.stderr[-2000:])
        if crash == "before-commit:4":
            assert whole(kind, target) == first  # staging only: the live tables are untouched
        again = [*ARGS, "--full-refresh"] if refresh_again else ARGS
        proc = run_cli([*again, "--to", to], cli_env(live_demo))
        assert proc.returncode == 0, (crash, proc.stderr[-2000:])
        assert whole(kind, target) == rows, crash
        assert lake_states(kind, target) == states, crash
        assert not staging_tables(kind, target), crash
    # a real SIGKILL at a random moment of a slow full refresh
    to, target = dest_for(kind, tmp_path, "frkill")
    assert run_cli([*partial, "--to", to], cli_env(live_demo)).returncode == 0
    live_demo.latency = 0.12
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "export", *SLOW_ARGS, "--full-refresh", "--to", to],
        cwd=ROOT, env=cli_env(live_demo), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(random.Random(f"fr-{kind}").uniform(2.0, 4.0))
    assert proc.poll() is None, "the refresh ended before the kill: make it slower"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    live_demo.latency = 0.0
    proc = run_cli([*ARGS, "--full-refresh", "--to", to], cli_env(live_demo))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert whole(kind, target) == rows and lake_states(kind, target) == states


# -- S3 (moto in server mode) --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_server(monkeypatch):
    """A moto S3 server on a free local port, with a bucket; the AWS_* environment points at it."""
    need("moto", "s3test")
    boto3 = need("boto3", "s3test")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true",
    }  # fmt: skip
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_S3_ALLOW_UNSAFE_RENAME", raising=False)  # commits rely on put-if-absent
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("the moto S3 server did not start")
                time.sleep(0.1)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="lake")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_delta_export_to_s3_equals_duckdb(demo, tmp_path, s3_server):
    need("deltalake", "delta")
    rows, states = duck_reference(demo, tmp_path)
    proc = run_cli([*ARGS, "--to", "delta+s3://lake/wh"], cli_env(demo))
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_cli([*ARGS, "--to", "delta+s3://lake/wh", "--json"], cli_env(demo))
    assert proc.returncode == 0 and '"rows": 100,' in proc.stdout, proc.stderr[-2000:]  # the lag window
    import deltalake

    got = deltalake.DeltaTable("s3://lake/wh/history").to_pyarrow_table()
    assert canon(got) == rows
    assert lake_states("delta", "s3://lake/wh") == states


def test_parquet_export_to_s3_is_refused_with_a_clear_message(demo, tmp_path):
    """A Parquet dataset's lock and renames do not exist on S3: refused before any request, saying
    why and what to use instead."""
    demo.reset_counters()
    proc = run_cli([*ARGS, "--to", "s3://lake/ds"], cli_env(demo))
    assert proc.returncode == 2, proc.stderr
    message = " ".join(proc.stderr.split())
    for words in ("lock", "atomic renames", "delta+s3://BUCKET/PATH", "iceberg+s3://BUCKET/PATH?catalog="):
        assert words in message, words
    assert demo.counters()["requests"] == 0


def s3_iceberg(tmp_path: Path, prefix: str = "wh") -> tuple[str, str]:
    """(--to, the target inside it) of an Iceberg warehouse on the S3 server, catalog kept locally."""
    target = f"s3://lake/{prefix}?catalog={tmp_path / 'catalogs' / (prefix + '.db')}"
    return f"iceberg+{target}", target


def s3_keys(endpoint: str, prefix: str) -> list[str]:
    import boto3

    pages = boto3.client("s3", endpoint_url=endpoint).get_paginator("list_objects_v2").paginate(Bucket="lake", Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_iceberg_export_to_s3_equals_duckdb(demo, tmp_path, s3_server):
    need("pyiceberg", "iceberg")
    pl = need("polars", "iceberg")
    rows, states = duck_reference(demo, tmp_path)
    to, target = s3_iceberg(tmp_path)
    proc = run_cli([*ARGS, "--to", to], cli_env(demo))
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_cli([*ARGS, "--to", to, "--json"], cli_env(demo))
    assert proc.returncode == 0 and '"rows": 100,' in proc.stdout, proc.stderr[-2000:]  # the lag window
    assert canon(lake_history("iceberg", target)) == rows
    assert lake_states("iceberg", target) == states
    # the data and metadata are on S3; only the catalog (and its lock file) is local
    keys = s3_keys(s3_server, "wh/wandb.db/history/")
    assert any(k.endswith(".parquet") for k in keys) and any(k.endswith(".metadata.json") for k in keys)
    assert sorted(p.name for p in (tmp_path / "catalogs").iterdir()) == ["wh.db", "wh.db.lock"]
    # read back by Polars (its own Iceberg reader over S3) and by DuckDB (over the Arrow scan)
    import duckdb

    from connector.export.sinks.iceberg import open_catalog, parse_target

    w = parse_target(target)
    catalog = open_catalog(w.location, w.catalog)
    try:
        table = catalog.load_table(("wandb", "history"))
        got = pl.scan_iceberg(table).collect().to_arrow()
        assert canon(got.cast(pa.schema([pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) else f.type) for f in got.schema]))) == rows
        con = duckdb.connect()
        con.register("history", table.scan().to_arrow_batch_reader())
        by_duckdb = con.sql("SELECT * FROM history").to_arrow_table()
        con.close()
        assert canon(by_duckdb.cast(pa.schema([pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) else f.type) for f in by_duckdb.schema]))) == rows
    finally:
        catalog.engine.dispose()


def kill_9_then_resume(
    live_demo: Any, tmp_path: Path, kind: str, to: str, target: str,
    crashes: tuple[str | None, ...] = ("before-commit:3", None, None), seed: str = "",
) -> None:  # fmt: skip
    """Exports killed one after the other (a crash hook such as ``before-commit:3``, or None: a
    real ``kill -9`` mid-export), then a resume: each run starts at once after the previous one
    died, and the end equals a clean export."""
    rows, states = duck_reference(live_demo, tmp_path)
    live_demo.latency = 0.12  # a clean export takes ~8 s: the kills land mid-way
    rng = random.Random(seed or f"kill-{kind}-s3")
    for crash in crashes:
        env = cli_env(live_demo, WANDB_HISTORY_CRASH_AT=crash) if crash else cli_env(live_demo)
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector.cli", "export", *SLOW_ARGS, "--to", to],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        if crash:
            assert proc.wait(timeout=120) == 137
            continue
        time.sleep(rng.uniform(2.0, 4.0))
        assert proc.poll() is None, "the export ended before the kill: make it slower (or it found the destination busy)"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    live_demo.latency = 0.0
    proc = run_cli([*ARGS, "--to", to], cli_env(live_demo))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert canon(lake_history(kind, target)) == rows
    assert lake_states(kind, target) == states


def test_iceberg_on_s3_kill_9_mid_export_then_resume_is_identical(live_demo, tmp_path, s3_server):
    need("pyiceberg", "iceberg")
    to, target = s3_iceberg(tmp_path, "killed")
    kill_9_then_resume(live_demo, tmp_path, "iceberg", to, target)


def test_delta_on_s3_kill_9_mid_export_then_resume_is_identical(live_demo, tmp_path, s3_server):
    """Also the dead-pid takeover: each run after a kill finds the lease of the killed export (this
    machine, pid gone) and takes it over at once, instead of waiting for its 60 s expiry."""
    need("deltalake", "delta")
    need("polars", "delta")
    from connector.export.sinks.lease import LEASE_TABLE, Lease

    kill_9_then_resume(live_demo, tmp_path, "delta", "delta+s3://lake/killed", "s3://lake/killed")
    _, holder = Lease(f"s3://lake/killed/{LEASE_TABLE}").read()
    assert holder.owner == ""  # the resume released it


def test_iceberg_on_s3_needs_its_own_local_catalog(demo, tmp_path, s3_server):
    need("pyiceberg", "iceberg")
    proc = run_cli([*ARGS, "--to", "iceberg+s3://lake/wh"], cli_env(demo))
    assert proc.returncode == 2 and "?catalog=" in proc.stderr, proc.stderr[-2000:]
    to, _ = s3_iceberg(tmp_path, "one")
    assert run_cli([*ARGS, "--max-step", "300", "--to", to], cli_env(demo)).returncode == 0
    other = to.replace("lake/one?", "lake/two?")  # the catalog of warehouse "one" with another warehouse
    proc = run_cli([*ARGS, "--to", other], cli_env(demo))
    assert proc.returncode == 2 and "s3://lake/one/wandb.db" in proc.stderr, proc.stderr[-2000:]
    assert not s3_keys(s3_server, "two/")


@pytest.mark.parametrize("kind", KINDS)
def test_full_refresh_on_s3_replaces_the_runs_and_drops_its_staging(kind, demo, tmp_path, s3_server):
    need(*MODULES[kind])
    rows, states = duck_reference(demo, tmp_path)
    if kind == "delta":
        to, target, prefix = "delta+s3://lake/fr", "s3://lake/fr", "fr/"
    else:
        (to, target), prefix = s3_iceberg(tmp_path, "fr"), "fr/"
    assert run_cli([*ARGS, "--keys", "loss", "--max-step", "900", "--to", to], cli_env(demo)).returncode == 0
    proc = run_cli([*ARGS, "--full-refresh", "--to", to], cli_env(demo, WANDB_HISTORY_CRASH_AT="after-swap-table:1"))
    assert proc.returncode == 137, proc.stderr[-2000:]
    proc = run_cli([*ARGS, "--full-refresh", "--to", to], cli_env(demo))
    assert proc.returncode == 0, proc.stderr[-2000:]
    if kind == "delta":
        import deltalake

        got = deltalake.DeltaTable(f"{target}/history").to_pyarrow_table()
    else:
        got = lake_history(kind, target)
    assert canon(got) == rows
    assert lake_states(kind, target) == states
    assert not [k for k in s3_keys(s3_server, prefix) if "__refresh" in k]


# -- Delta on S3: atomic commits and the destination lease ---------------------------------------


def test_delta_on_s3_two_concurrent_writers_never_lose_a_commit(s3_server):
    """What the lease and exactly-once rest on: delta-rs commits to S3 with put-if-absent (no
    AWS_S3_ALLOW_UNSAFE_RENAME), so two writers racing for the same versions never overwrite each
    other's commit: each append lands in its own version."""
    deltalake = need("deltalake", "delta")
    assert "AWS_S3_ALLOW_UNSAFE_RENAME" not in os.environ
    uri, n = "s3://lake/race", 12
    deltalake.write_deltalake(uri, pa.table({"writer": [-1], "i": [-1]}))
    barrier, errors = threading.Barrier(2), []

    def append(writer: int) -> None:
        barrier.wait()
        for i in range(n):
            try:
                deltalake.write_deltalake(uri, pa.table({"writer": [writer], "i": [i]}), mode="append")
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    table = deltalake.DeltaTable(uri)
    assert table.version() == 2 * n
    rows = table.to_pyarrow_table().to_pylist()
    assert len(rows) == 2 * n + 1
    for w in range(2):
        assert sorted(r["i"] for r in rows if r["writer"] == w) == list(range(n))


def test_delta_on_s3_refuses_unsafe_rename(demo, tmp_path, s3_server):
    """AWS_S3_ALLOW_UNSAFE_RENAME would let two commits of one version both succeed: refused before
    any request or write, saying what to do instead."""
    need("deltalake", "delta")
    demo.reset_counters()
    proc = run_cli([*ARGS, "--to", "delta+s3://lake/unsafe"], cli_env(demo, AWS_S3_ALLOW_UNSAFE_RENAME="true"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    message = " ".join(proc.stderr.split())
    assert "AWS_S3_ALLOW_UNSAFE_RENAME" in message and "unset it" in message, message
    assert demo.counters()["requests"] == 0
    assert not s3_keys(s3_server, "unsafe/")


def test_delta_lease_commits_at_one_version_cannot_both_win(s3_server):
    """Two acquirers that read the same version: one commits, the other's commit fails (a metadata
    commit with no retries). Then acquirers racing in threads: exactly one wins, on a new lease
    table and on a free one."""
    need("deltalake", "delta")
    from connector.export.sinks.lease import Holder, Lease

    uri = "s3://lake/lease/_wandb_export_lock"
    a, b = Lease(uri), Lease(uri)
    assert a._commit(None, a._record())
    assert a._commit(0, a._record())
    assert not b._commit(0, b._record())  # b read version 0 too: version 1 is a's
    assert Lease(uri).read()[1].owner == a.owner
    assert a._commit(1, Holder())  # free again
    for where in (uri, "s3://lake/fresh/_wandb_export_lock"):  # a free lease, and no lease table yet
        won, busy = race_to_acquire(where, 4)
        assert len(won) == 1 and len(busy) == 3, where
        assert Lease(where).read()[1].owner == won[0].owner
        won[0].release()
        assert Lease(where).read()[1].owner == ""


def race_to_acquire(uri: str, n: int) -> tuple[list[Any], list[Any]]:
    """`n` leases acquiring `uri` at once, in threads: (those that won, those refused as busy)."""
    from connector.errors import DestinationBusyError
    from connector.export.sinks.lease import Lease

    barrier = threading.Barrier(n)
    won: list[Any] = []
    busy: list[Any] = []

    def take(lease: Lease) -> None:
        barrier.wait()
        try:
            won.append(lease.acquire())
        except DestinationBusyError:
            busy.append(lease)

    threads = [threading.Thread(target=take, args=(Lease(uri),)) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won, busy


def test_delta_lease_heartbeat_renews_and_a_takeover_stops_the_holder(s3_server):
    need("deltalake", "delta")
    from connector.errors import DestinationBusyError
    from connector.export.sinks.lease import Lease

    uri = "s3://lake/beat/_wandb_export_lock"
    lease = Lease(uri, ttl=4, heartbeat=0.5).acquire()
    first_version, first_expiry = lease.version, lease.expires_at
    time.sleep(2.0)
    version, holder = Lease(uri).read()
    assert version is not None and first_version is not None and version >= first_version + 2
    assert holder.owner == lease.owner and holder.expires_at > first_expiry
    lease.check()
    # another export takes the lease over (as it may once the lease expired): the holder notices
    # at its next renewal and stops committing
    other = Lease(uri)
    deadline = time.monotonic() + 10
    while not other._commit(Lease(uri).read()[0], other._record()):  # the heartbeat may commit first
        assert time.monotonic() < deadline
    deadline = time.monotonic() + 10
    while not lease.lost:
        assert time.monotonic() < deadline, "the holder did not notice the takeover"
        time.sleep(0.1)
    with pytest.raises(DestinationBusyError, match="lost its lease"):
        lease.check()
    lease.release()  # does not free the other export's lease
    assert Lease(uri).read()[1].owner == other.owner


def test_second_delta_export_on_s3_fails_at_once_while_the_first_holds_the_lease(make_emulator, tmp_path, s3_server):
    """The second export (of another project: any row it wrote would show) fails at once with the
    busy error (exit 4, as for a locked folder) and writes nothing; the first one finishes and
    equals a clean export."""
    need("deltalake", "delta")
    need("polars", "delta")
    from connector.export.sinks.lease import LEASE_TABLE, Lease

    emu = make_emulator([*demo_runs(), *synthetic_runs("acme/vision:runs=2,steps=400,keys=4,seed=5")], service=live_pages_service())
    rows, states = duck_reference(emu, tmp_path)
    to, target = "delta+s3://lake/busy", "s3://lake/busy"
    lease = Lease(f"{target}/{LEASE_TABLE}")
    emu.latency = 0.3
    first = subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "export", *SLOW_ARGS, "--to", to],
        cwd=ROOT, env=cli_env(emu), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while lease.read()[1].pid != first.pid:
            assert first.poll() is None and time.monotonic() < deadline, "the first export never took the lease"
            time.sleep(0.2)
        started = time.monotonic()
        proc = run_cli(["acme/vision", *ARGS[1:], "--to", to], cli_env(emu))
        elapsed = time.monotonic() - started
        assert first.poll() is None, "the first export ended before the second started: make it slower"
    finally:
        emu.latency = 0.0
        _, err = first.communicate(timeout=300)
    assert proc.returncode == 4, proc.stderr[-2000:]
    message = " ".join(proc.stderr.split())
    assert "another export is writing into s3://lake/busy" in message and f"pid {first.pid}" in message, message
    assert elapsed < 20, elapsed  # no waiting for the lease
    assert first.returncode == 0, err[-2000:]
    assert canon(lake_history("delta", target)) == rows  # no row of acme/vision
    assert lake_states("delta", target) == states
    assert {r["project"] for r in lake_history("delta", target, "runs").to_pylist()} == {"mnist"}
    assert lease.read()[1].owner == ""  # released at the end


def test_delta_on_s3_ctrl_c_releases_the_lease(live_demo, tmp_path, s3_server):
    """An interrupted export frees its lease on the way out: anyone, on any machine, may go on."""
    need("deltalake", "delta")
    from connector.export.sinks.lease import LEASE_TABLE, Lease

    lease = Lease(f"s3://lake/interrupted/{LEASE_TABLE}")
    live_demo.latency = 0.12
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "export", *SLOW_ARGS, "--to", "delta+s3://lake/interrupted"],
        cwd=ROOT, env=cli_env(live_demo), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while lease.read()[1].pid != proc.pid:
        assert proc.poll() is None and time.monotonic() < deadline, "the export never took the lease"
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    live_demo.latency = 0.0
    assert proc.returncode != 0
    assert lease.read()[1].owner == ""


def test_delta_lease_of_another_machine_is_refused_until_it_expires(demo, tmp_path, s3_server):
    """A lease held on another machine is not taken over while it lasts (its pid means nothing
    here), not even by a dead-looking pid; a dry run reads without it; once expired it is taken."""
    need("deltalake", "delta")
    need("polars", "delta")
    from connector.export.sinks.lease import LEASE_TABLE, Holder, Lease

    rows, states = duck_reference(demo, tmp_path)
    to, target = "delta+s3://lake/foreign", "s3://lake/foreign"
    lease = Lease(f"{target}/{LEASE_TABLE}")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no process of this machine has
    now = time.time()
    foreign = Holder("their-uuid", "elsewhere", "elsewhere/boot-id/pid:[1]", gone.pid, now, now + 120)
    assert lease._commit(None, foreign)
    proc = run_cli([*ARGS, "--to", to], cli_env(demo))
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert f"pid {gone.pid} on elsewhere" in " ".join(proc.stderr.split()), proc.stderr[-2000:]
    assert [k for k in s3_keys(s3_server, "foreign/") if not k.startswith(f"foreign/{LEASE_TABLE}/")] == []
    proc = run_cli([*ARGS, "--dry-run", "--to", to], cli_env(demo))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert lease.read() == (0, foreign)
    expired = Holder("their-uuid", "elsewhere", foreign.node, gone.pid, now - 120, time.time() - 1)
    assert lease._commit(0, expired)
    proc = run_cli([*ARGS, "--to", to], cli_env(demo))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert canon(lake_history("delta", target)) == rows
    assert lake_states("delta", target) == states
    assert lease.read()[1].owner == ""


def test_lakehouse_modules_import_without_their_extras():
    code = "import connector.export.sinks.delta, connector.export.sinks.iceberg, connector.ray, connector.spark, sys; print(sorted(m for m in ('deltalake', 'pyiceberg', 'ray', 'pyspark') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert out.strip() == "[]"
