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
def test_kill_9_mid_export_then_resume_is_identical(kind, demo, tmp_path):
    need(*MODULES[kind])
    if kind == "delta":
        need("polars", "delta")
    rows, states = duck_reference(demo, tmp_path)
    to, target = dest_for(kind, tmp_path, "kill")
    demo.latency = 0.12  # a clean export takes ~8 s: the kills land mid-way
    rng = random.Random(f"kill-{kind}")
    for _ in range(2):
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector.cli", "export", *SLOW_ARGS, "--to", to],
            cwd=ROOT, env=cli_env(demo), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(rng.uniform(2.0, 4.0))
        assert proc.poll() is None, "the export ended before the kill: make it slower"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    demo.latency = 0.0
    proc = run_cli([*ARGS, "--to", to], cli_env(demo))
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


@pytest.mark.parametrize("kind", KINDS)
def test_full_refresh_is_refused_before_anything_is_written(kind, demo, tmp_path):
    need(*MODULES[kind])
    to, target = dest_for(kind, tmp_path, "fr")
    proc = run_cli([*ARGS, "--full-refresh", "--to", to], cli_env(demo))
    assert proc.returncode == 2 and "full-refresh" in proc.stderr
    assert not Path(target).exists()


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
    proc = run_cli([*ARGS, "--to", "s3://lake/ds"], cli_env(demo))
    assert proc.returncode == 2 and "delta+s3://" in proc.stderr


def test_lakehouse_modules_import_without_their_extras():
    code = "import connector.export.sinks.delta, connector.export.sinks.iceberg, connector.ray, connector.spark, sys; print(sorted(m for m in ('deltalake', 'pyiceberg', 'ray', 'pyspark') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert out.strip() == "[]"
