"""Offline runs written by the official SDK, read through every interface of the connector.

* `wandb-history serve FOLDER` serves them over the W&B API: the official SDK and the connector
  read them over HTTP and get the reader's rows;
* `connector.open_local`, `Api().run(<run dir>)`, the Polars source, DuckDB and the exporter read
  them directly, with no server.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

import connector
from connector import Api
from connector.local import load_runs
from tests.compare import assert_same_rows
from tests.wandb_files import produce, sdk_env

SCENARIOS = ("types", "histogram", "sparse", "steps", "failed")


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding several SDK-written offline run directories."""
    work = tmp_path_factory.mktemp("offline")
    root = work / "all"
    root.mkdir()
    for name in SCENARIOS:
        produced = produce(name, work / "produce")
        shutil.copytree(produced.run_dir, root / produced.run_dir.name)
    return root


def rows_of(run: Any) -> list[dict[str, Any]]:
    return [run.row(i) for i in range(len(run.steps()))]


def _serve(offline: Path, *options: str) -> Iterator[str]:
    """`wandb-history serve FOLDER` in a subprocess; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "serve", str(offline), "--port", "0",
         "--api-key", "k" * 44, *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        assert match, f"serve printed {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def served(offline: Path) -> Iterator[str]:
    """The realistic defaults: finished runs' history in Parquet files on the storage host."""
    yield from _serve(offline)


@pytest.fixture(scope="module")
def served_live(offline: Path) -> Iterator[str]:
    """Every page live: the official SDK 0.31.0 reads a binary (JSON) Parquet column, which is how
    the emulator stores a key of mixed types such as ``[1, 2.5, "x", None]``, as base64 text."""
    yield from _serve(offline, "--parquet-history", "none")


SDK_SCRIPT = r"""
import json, sys
import wandb
base, key, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
api = wandb.Api(api_key=key, overrides={"base_url": base}, timeout=60)
print(json.dumps({p: list(api.run(p).scan_history()) for p in paths}))
"""


def test_official_sdk_reads_offline_runs_through_serve(
    offline: Path, served: str, served_live: str, tmp_path: Path
) -> None:
    runs = load_runs(offline)
    assert len(runs) == len(SCENARIOS)
    paths = [f"{r.meta.entity}/{r.meta.project}/{r.meta.run_id}" for r in runs]
    env = sdk_env(tmp_path)
    env.pop("WANDB_MODE")
    proc = subprocess.run([sys.executable, "-c", SDK_SCRIPT, served_live, "k" * 44, *paths],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sdk_rows = json.loads(proc.stdout)
    api = Api(api_key="k" * 44, base_url=served)
    for run, path in zip(runs, paths, strict=True):
        assert sdk_rows[path], path
        assert_same_rows(sdk_rows[path], rows_of(run))
        assert_same_rows(list(api.run(path).scan_history()), rows_of(run))
        assert api.run(path).state == run.meta.state


def test_local_runs_open_like_remote_ones(offline: Path) -> None:
    truth = {r.meta.run_id: r for r in load_runs(offline)}
    runs = connector.open_local(offline)
    assert sorted(r.id for r in runs) == sorted(truth)
    failed = next(r for r in runs if r.state == "failed")
    assert failed.entity == "local" and failed.project == "tests"
    for run in runs:
        want = rows_of(truth[run.id])
        assert_same_rows(list(run.scan_history()), want)
        assert_same_rows(run.scan_history().to_arrow().to_pylist(), want)
    run_dir = next(offline.iterdir())
    one = Api(api_key="unused-" + "x" * 40, base_url="http://127.0.0.1:9").run(run_dir)
    assert one.id in truth and one.history_line_count == len(truth[one.id].steps())


def test_polars_duckdb_and_export_read_local_runs(offline: Path, tmp_path: Path) -> None:
    from connector.engines.duckdb import register_run
    from connector.engines.polars import scan_history

    run = max(load_runs(offline), key=lambda r: len(r.steps()))
    run_dir = next(d for d in offline.iterdir() if run.meta.run_id in d.name)
    steps = list(run.steps())
    lo, hi = steps[len(steps) // 4], steps[3 * len(steps) // 4]
    want = [r["_step"] for r in rows_of(run) if lo <= r["_step"] < hi]

    frame = scan_history(run_dir).filter((pl.col("_step") >= lo) & (pl.col("_step") < hi))
    assert frame.select("_step").collect()["_step"].to_list() == want

    con = duckdb.connect()
    register_run(con, run_dir, "local_run")
    got = con.sql(f"SELECT count(*) FROM local_run WHERE _step >= {lo} AND _step < {hi}").fetchall()
    assert got == [(len(want),)]

    db = tmp_path / "local.duckdb"
    done = subprocess.run([sys.executable, "-m", "connector.cli", "export", str(offline), "--to",
                           str(db), "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with duckdb.connect(str(db), read_only=True) as out:
        counts = dict(out.sql("SELECT run_id, count(*) FROM history GROUP BY run_id").fetchall())
    assert counts == {r.meta.run_id: len(r.steps()) for r in load_runs(offline) if r.steps()}
