"""SQL over projects and local folders: real HTTP to the emulator, real DuckDB, real
`.wandb` files written by the official SDK.

Each test reproduces one stumble of a new user: `wandb_history('entity/project')`, local folders in
every SQL entry point, LATERAL / IN (subquery), macros persisted into a database file, internal names
in errors, `count(*)` doubled by the `_step` rows, text timestamps, runs-table fields left out, and no
timestamp column in wide views.
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from connector import Api
from connector.core.rundata import MemoryRun, RunMeta
from connector.core.values import flatten_row
from connector.engines.duckdb import register, register_run, register_runs, unregister
from connector.runs_table import RUNS_SCHEMA

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wandb_files import produce  # noqa: E402

PROJECT = "test/synthetic"


def truth_rows(emulator: Any, path: str) -> list[dict[str, Any]]:
    data = emulator.run(*path.split("/"))
    return [flatten_row(data.row(i))[0] for i in range(len(data.steps()))]


@pytest.fixture
def con(api: Api) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = register(duckdb.connect(), api)
    try:
        yield connection
    finally:
        unregister(connection)
        connection.close()


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return con.sql(sql).fetchall()


@pytest.fixture(scope="module")
def local_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    """A `wandb/` folder holding two offline runs written by the SDK (basic, sparse)."""
    work = tmp_path_factory.mktemp("sdk")
    produced = [produce("basic", work), produce("sparse", work)]
    folder = work / "all" / "wandb"
    folder.mkdir(parents=True)
    for p in produced:
        shutil.copytree(p.run_dir, folder / p.run_dir.name)
    return folder, produced


# -- a project is a path with two parts -----------------------------------------------------------


def test_wandb_history_over_a_project_reads_every_run(
    emulator: Any, con: duckdb.DuckDBPyConnection, paths: list[str]
) -> None:
    got = dict(
        rows(
            con,
            f"SELECT run_id, count(*) FROM wandb_history('{PROJECT}', keys := ['val_loss']) "
            "GROUP BY run_id",
        )
    )
    truth = {p.split("/")[2]: sum("val_loss" in r for r in truth_rows(emulator, p)) for p in paths}
    assert got == truth
    entities = rows(con, f"SELECT DISTINCT entity, project FROM wandb_history('{PROJECT}', keys := ['loss'])")
    assert entities == [("test", "synthetic")]


def test_project_with_filters_step_window_and_run_filter(
    emulator: Any, con: duckdb.DuckDBPyConnection, paths: list[str]
) -> None:
    filtered = rows(
        con,
        f"SELECT DISTINCT run_id FROM wandb_history('{PROJECT}', keys := ['loss'], "
        "filters := '{\"displayName\": \"synthetic-2\"}', min_step := 1000, max_step := 1010)",
    )
    assert filtered == [(paths[1].split("/")[2],)]
    run_id = paths[2].split("/")[2]
    got = rows(
        con,
        f"SELECT _step, value_number FROM wandb_history('{PROJECT}', keys := ['loss'], min_step := 5, max_step := 8) "
        f"WHERE run_id = '{run_id}' ORDER BY _step",
    )
    truth = [(r["_step"], r["loss"]) for r in truth_rows(emulator, paths[2]) if 5 <= r["_step"] < 8]
    assert got == truth


def test_a_filter_on_a_run_path_is_refused(con: duckdb.DuckDBPyConnection, paths: list[str]) -> None:
    with pytest.raises(duckdb.Error, match="filters apply to a project"):
        rows(con, f"SELECT * FROM wandb_history('{paths[0]}', filters := '{{\"state\": \"finished\"}}')")


# -- LATERAL and IN (subquery): the documented recipe ---------------------------------------------


def test_lateral_join_fails_naming_the_recipe(con: duckdb.DuckDBPyConnection) -> None:
    lateral = (
        f"SELECT r.run_id, h.value_number FROM wandb_runs('{PROJECT}') r, "
        "LATERAL wandb_history(r.entity || '/' || r.project || '/' || r.run_id, keys := ['loss']) h"
    )
    subquery = (
        "SELECT count(*) FROM wandb_history WHERE run_path IN "
        f"(SELECT entity || '/' || project || '/' || run_id FROM wandb_runs('{PROJECT}'))"
    )
    for sql in (lateral, subquery):
        with pytest.raises(duckdb.Error) as info:
            rows(con, sql)
        message = str(info.value)
        assert "wandb_history('entity/project'" in message and "join on run_id" in message
        assert "__wandb" not in message


def test_the_documented_join_recipe(emulator: Any, con: duckdb.DuckDBPyConnection, paths: list[str]) -> None:
    got = dict(
        rows(
            con,
            f"SELECT r.display_name, avg(h.value_number) FROM wandb_runs('{PROJECT}') r "
            f"JOIN wandb_history('{PROJECT}', keys := ['loss']) h USING (run_id) GROUP BY ALL",
        )
    )
    truth = {}
    for path in paths:
        losses = [r["loss"] for r in truth_rows(emulator, path)]
        truth[emulator.run(*path.split("/")).meta.display_name] = sum(losses) / len(losses)
    assert got == pytest.approx(truth, rel=1e-12)


# -- local folders wherever a project or a run is accepted ----------------------------------------


def test_local_folder_in_wandb_history_wandb_runs_and_register_runs(local_folder: tuple[Path, list[Any]]) -> None:
    folder, produced = local_folder
    expected = {p.run_dir.name.rsplit("-", 1)[1]: p.expected["rows"] for p in produced}
    con = register(duckdb.connect())  # no server: local paths need none
    try:
        counts = dict(rows(con, f"SELECT run_id, count(*) FROM wandb_history('{folder}', keys := ['_step']) GROUP BY 1"))
        assert counts == {run_id: len(r) for run_id, r in expected.items()}
        runs = rows(con, f"SELECT run_id, entity, state, url FROM wandb_runs('{folder}') ORDER BY run_id")
        assert [r[0] for r in runs] == sorted(expected) and all(r[3] is None for r in runs)
        one_run = produced[0]
        (n,) = rows(con, f"SELECT count(*) FROM wandb_history('{one_run.run_dir}', keys := ['_step'])")[0]
        assert n == len(one_run.expected["rows"])
        (n,) = rows(con, f"SELECT count(*) FROM wandb_runs('{one_run.file}')")[0]
        assert n == 1
        register_runs(con, str(folder), "local_wide")
        wide = dict(rows(con, "SELECT run_id, count(*) FROM local_wide GROUP BY 1"))
        assert wide == counts
        unregister(con, "local_wide")
    finally:
        con.close()


def test_relative_local_folder_from_the_cli(local_folder: tuple[Path, list[Any]], tmp_path: Path) -> None:
    import os
    import subprocess

    folder, produced = local_folder
    shutil.copytree(folder, tmp_path / "wandb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.run(
        [sys.executable, "-m", "connector.cli", "sql", "SELECT count(*) AS n FROM wandb_runs('./wandb')", "--format", "csv"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["n", str(len(produced))]


# -- temporary objects -----------------------------------------------------------------------------


def test_register_on_a_file_backed_connection_leaves_the_file_clean(
    api: Api, paths: list[str], tmp_path: Path
) -> None:
    path = str(tmp_path / "mine.duckdb")
    con = duckdb.connect(path)
    con.execute("CREATE TABLE notes AS SELECT 1 AS x")
    register(con, api)
    assert rows(con, f"SELECT count(DISTINCT _step) FROM wandb_history('{paths[0]}', max_step := 3)") == [(3,)]
    con.close()  # without unregister: nothing may have been written
    again = duckdb.connect(path)  # plain duckdb: opens fine
    try:
        assert rows(again, "SELECT * FROM notes") == [(1,)]
        assert rows(again, "SELECT count(*) FROM duckdb_functions() WHERE function_name LIKE 'wandb%'") == [(0,)]
        assert rows(again, "SELECT count(*) FROM duckdb_views() WHERE view_name LIKE '%wandb%'") == [(0,)]
        assert rows(again, "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '%wandb%'") == [(0,)]
    finally:
        again.close()


# -- errors in the user's words -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        ("SELECT * FROM wandb_history('test/synthetic/nosuchrun')", "test/synthetic/nosuchrun"),
        ("SELECT * FROM wandb_history('{run}', keys := ['lozz'])", "unknown key 'lozz'"),
        ("SELECT * FROM wandb_history('test/nosuchproject')", "test/nosuchproject"),
        ("SELECT count(*) FROM wandb_history", "wandb_history needs a constant run or project path"),
        ("SELECT * FROM wandb_runs", "wandb_runs needs a constant project path"),
        ("SELECT * FROM wandb_runs('test/synthetic', filters := 'nope')", "wandb_runs filters must be JSON"),
    ],
)
def test_errors_never_name_internal_objects(
    con: duckdb.DuckDBPyConnection, paths: list[str], sql: str, words: str
) -> None:
    with pytest.raises(duckdb.Error) as info:
        rows(con, sql.format(run=paths[0]))
    message = str(info.value)
    assert words in message and "__wandb" not in message
    assert "'wandb_history'" in message or "'wandb_runs'" in message  # the object DuckDB names


# -- counting with keys ----------------------------------------------------------------------------


def test_count_star_with_keys_counts_those_keys(
    emulator: Any, con: duckdb.DuckDBPyConnection, paths: list[str]
) -> None:
    truth = truth_rows(emulator, paths[0])
    (n,) = rows(con, f"SELECT count(*) FROM wandb_history('{paths[0]}', keys := ['loss'])")[0]
    assert n == sum("loss" in r for r in truth)  # not twice: no _step rows with keys
    (n,) = rows(con, f"SELECT count(*) FROM wandb_history('{paths[0]}', keys := ['loss', 'acc'])")[0]
    assert n == sum(("loss" in r) + ("acc" in r) for r in truth)
    (n,) = rows(con, f"SELECT count(*) FROM wandb_history('{paths[0]}', keys := ['_step'])")[0]
    assert n == len(truth)


# -- the runs table --------------------------------------------------------------------------------


def test_wandb_runs_has_timestamps_and_the_sdk_fields(make_emulator: Any) -> None:
    meta = RunMeta(
        "acme", "vision", "r1", display_name="first try", tags=["a"], created_at="2024-03-01T10:20:30",
        heartbeat_at="2024-03-01T11:00:00Z", group="sweep-a", job_type="train", notes="lr 0.1",
        username="ada", config={"lr": 0.1, "opt": {"name": "adam"}},
    )  # fmt: skip
    emu = make_emulator([MemoryRun(meta, rows=[{"_step": 0, "loss": 1.0}])])
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    con = register(duckdb.connect(), api)
    try:
        types = dict((r[0], r[1]) for r in rows(con, "DESCRIBE SELECT * FROM wandb_runs('acme/vision')"))
        assert types["created_at"] == types["heartbeat_at"] == "TIMESTAMP"
        assert types["config"] == "JSON"
        names = list(types)
        assert names[: len(RUNS_SCHEMA.names)] == RUNS_SCHEMA.names
        for extra in ("display_name", "group", "job_type", "sweep_name", "username", "notes", "url"):
            assert extra in names
        got = con.sql(
            'SELECT created_at, heartbeat_at, display_name, "group", job_type, username, notes, url, '
            "config->>'$.opt.name', tags FROM wandb_runs('acme/vision')"
        ).fetchall()
        assert got == [(
            dt.datetime(2024, 3, 1, 10, 20, 30), dt.datetime(2024, 3, 1, 11), "first try", "sweep-a", "train",
            "ada", "lr 0.1", f"{emu.base_url}/acme/vision/runs/r1", "adam", ["a"],
        )]  # fmt: skip
        one = con.sql("SELECT count(*) FROM wandb_runs('acme/vision/r1')").fetchall()
        assert one == [(1,)]  # a run path lists that one run
    finally:
        unregister(con)
        con.close()


# -- wide views: _time -----------------------------------------------------------------------------


def test_wide_views_have_a_timestamp_column(live_emulator: Any, live_api: Api, live_paths: list[str]) -> None:
    emulator, api, paths = live_emulator, live_api, live_paths  # counts live page requests
    con = duckdb.connect()
    try:
        register_run(con, paths[0], "run0", api=api)
        types = dict((r[0], r[1]) for r in rows(con, "DESCRIBE run0"))
        assert types["_time"] == "TIMESTAMP" and list(types).index("_time") == list(types).index("_timestamp") + 1
        emulator.reset_counters()
        got = rows(con, "SELECT _step, _timestamp, _time FROM run0 WHERE _step BETWEEN 10 AND 12 ORDER BY _step")
        windows = {tuple(w) for w in emulator.counters()["by_field"]["sampledHistory"]["windows"]}
        assert windows == {(10, 12)}  # the _step window is still pushed down
        for _, seconds, time in got:
            expected = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=round(seconds * 1_000_000))
            assert time == expected and not math.isnan(seconds)
        register_runs(con, PROJECT, "many", api=api)
        (n,) = rows(con, "SELECT count(*) FROM many WHERE _time IS NULL AND _timestamp IS NOT NULL")[0]
        assert n == 0
    finally:
        con.close()
