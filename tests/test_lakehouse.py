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
    rows, states = duck_reference(live_demo, tmp_path)
    to, target = dest_for(kind, tmp_path, "kill")
    live_demo.latency = 0.12  # a clean export takes ~8 s: the kills land mid-way
    rng = random.Random(f"kill-{kind}")
    for _ in range(2):
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector.cli", "export", *SLOW_ARGS, "--to", to],
            cwd=ROOT, env=cli_env(live_demo), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(rng.uniform(2.0, 4.0))
        assert proc.poll() is None, "the export ended before the kill: make it slower"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    live_demo.latency = 0.0
    proc = run_cli([*ARGS, "--to", to], cli_env(live_demo))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert canon(lake_history(kind, target)) == rows
    assert lake_states(kind, target) == states


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
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }  # fmt: skip
    for k, v in env.items():
        monkeypatch.setenv(k, v)
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


def test_iceberg_on_s3_kill_9_mid_export_then_resume_is_identical(live_demo, tmp_path, s3_server):
    need("pyiceberg", "iceberg")
    rows, states = duck_reference(live_demo, tmp_path)
    to, target = s3_iceberg(tmp_path, "killed")
    live_demo.latency = 0.12
    rng = random.Random("kill-iceberg-s3")
    for crash in ("before-commit:3", None, None):  # a hook right before a commit, then two real kills
        env = cli_env(live_demo, WANDB_HISTORY_CRASH_AT=crash) if crash else cli_env(live_demo)
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector.cli", "export", *SLOW_ARGS, "--to", to],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        if crash:
            assert proc.wait(timeout=120) == 137
            continue
        time.sleep(rng.uniform(2.0, 4.0))
        assert proc.poll() is None, "the export ended before the kill: make it slower"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    live_demo.latency = 0.0
    proc = run_cli([*ARGS, "--to", to], cli_env(live_demo))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert canon(lake_history("iceberg", target)) == rows
    assert lake_states("iceberg", target) == states


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


def test_lakehouse_modules_import_without_their_extras():
    code = "import connector.export.sinks.delta, connector.export.sinks.iceberg, connector.ray, connector.spark, sys; print(sorted(m for m in ('deltalake', 'pyiceberg', 'ray', 'pyspark') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert out.strip() == "[]"
