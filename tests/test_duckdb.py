"""`connector.duckdb` and `wandb-history sql` over real HTTP against the emulator, real DuckDB.

Truth is the synthetic generator's own rows; the emulator's counters prove what pushdown fetched.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from connector import Api
from connector.core.rundata import MemoryRun, RunMeta
from connector.core.values import flatten_row
from connector.engines.duckdb import LONG_SCHEMA, register, register_run, register_runs, unregister
from connector.runs_table import RUNS_SCHEMA

ROOT = Path(__file__).resolve().parent.parent


def truth_rows(emulator: Any, path: str) -> list[dict[str, Any]]:
    data = emulator.run(*path.split("/"))
    return [flatten_row(data.row(i))[0] for i in range(len(data.steps()))]


@pytest.fixture
def live_con(live_api: Api) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection reading the live-pages emulator: pushdown is proven by its GraphQL counters."""
    connection = register(duckdb.connect(), live_api)
    try:
        yield connection
    finally:
        unregister(connection)
        connection.close()


@pytest.fixture
def con(api: Api) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = register(duckdb.connect(), api)
    try:
        yield connection
    finally:
        unregister(connection)
        connection.close()


def one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    """The single row of a query (DuckDB 2.0 relations have no fetchone)."""
    rows = con.sql(sql).fetchall()
    assert len(rows) == 1, rows
    return rows[0]


def fetched(emulator: Any) -> dict[str, Any]:
    return emulator.counters()["by_field"]


# -- pushdown, proven with the counters -----------------------------------------------------------


def test_macro_window_mean_fetches_only_the_window_and_the_key(
    live_emulator: Any, live_con: duckdb.DuckDBPyConnection, live_paths: list[str]
) -> None:
    emulator, con, paths = live_emulator, live_con, live_paths
    path, a, b = paths[0], 1200, 1449
    truth = [r["loss"] for r in truth_rows(emulator, path) if a <= r["_step"] <= b]
    emulator.reset_counters()
    (mean,) = one(
        con,
        f"SELECT avg(value_number) FROM wandb_history('{path}', keys := ['loss']) WHERE _step BETWEEN {a} AND {b}"
    )
    assert mean == pytest.approx(sum(truth) / len(truth), rel=1e-12)
    pushed = fetched(emulator)
    assert "history" not in pushed  # no full rows
    assert pushed["sampledHistory"]["keys"] == ["_step", "loss"]
    assert {tuple(w) for w in pushed["sampledHistory"]["windows"]} == {(a, b)}
    window_bytes = sum(v["bytes"] for v in pushed.values())

    emulator.reset_counters()
    (count,) = one(con, f"SELECT count(*) FROM wandb_history('{path}')")
    assert count > 2500 * 10
    full_bytes = sum(v["bytes"] for v in fetched(emulator).values())
    assert window_bytes * 20 < full_bytes


def test_wide_view_window_mean_fetches_only_the_window_and_the_key(
    live_emulator: Any, live_con: duckdb.DuckDBPyConnection, live_api: Api, live_paths: list[str]
) -> None:
    emulator, con, paths = live_emulator, live_con, live_paths
    api = live_api
    path, a, b = paths[0], 1200, 1449
    truth = [r["loss"] for r in truth_rows(emulator, path) if a <= r["_step"] <= b]
    register_run(con, path, "run0", api=api)
    emulator.reset_counters()
    (mean,) = one(con, f"SELECT avg(loss) FROM run0 WHERE _step BETWEEN {a} AND {b}")
    assert mean == pytest.approx(sum(truth) / len(truth), rel=1e-12)
    pushed = fetched(emulator)
    assert "history" not in pushed and pushed["sampledHistory"]["keys"] == ["_step", "loss"]
    assert {tuple(w) for w in pushed["sampledHistory"]["windows"]} == {(a, b)}
    unregister(con, "run0")


def test_keys_select_the_rows_of_those_keys_only(
    emulator: Any, con: duckdb.DuckDBPyConnection, paths: list[str]
) -> None:
    path = paths[1]  # val_loss is sparse here
    truth = truth_rows(emulator, path)
    sparse = [r for r in truth if "val_loss" in r]
    steps, rows, logged = one(
        con,
        f"SELECT count(DISTINCT _step), count(*), count(*) FILTER (key = 'val_loss') "
        f"FROM wandb_history('{path}', keys := ['val_loss'])"
    )
    assert steps == rows == logged == len(sparse)  # count(*) counts the key's values, no _step rows
    (all_steps,) = one(con, f"SELECT count(*) FROM wandb_history('{path}', keys := ['_step'])")
    assert all_steps == len(truth)  # the documented idiom for every step
    (all_steps,) = one(con, f"SELECT count(DISTINCT _step) FROM wandb_history('{path}')")
    assert all_steps == len(truth)
    got = dict(
        con.sql(
            f"SELECT _step, value_number FROM wandb_history('{path}', keys := ['val_loss']) WHERE key = 'val_loss'"
        ).fetchall()
    )
    for row in sparse:
        expected = row["val_loss"]
        assert got[row["_step"]] == expected or (math.isinf(expected) and got[row["_step"]] == expected)


def test_long_layout_typed_values(emulator: Any, con: duckdb.DuckDBPyConnection, paths: list[str]) -> None:
    path = paths[1]
    rows = con.sql(
        f"SELECT _step, key, value_number, value_bool, value_text FROM wandb_history('{path}', "
        "min_step := 1000, max_step := 1101) ORDER BY _step, key"
    ).fetchall()
    assert {r[0] for r in rows} == set(range(1000, 1101))  # max_step is exclusive
    names = [name for name, *_ in con.sql(f"DESCRIBE SELECT * FROM wandb_history('{path}')").fetchall()]
    assert names == ["entity", "project", "run_id", "_step", "key", "value_number", "value_bool", "value_text"]
    truth = {r["_step"]: r for r in truth_rows(emulator, path)}
    kinds = set()
    for step, key, number, boolean, text in rows:
        if key == "_step":
            assert number is None and boolean is None and text is None
            continue
        expected = truth[step][key]
        if isinstance(expected, bool):
            assert (number, boolean, text) == (None, expected, None)
        elif isinstance(expected, int | float):  # NaN and ±inf stay numbers
            assert boolean is None and text is None
            assert number == expected or (math.isnan(number) and math.isnan(expected))
        elif isinstance(expected, str):
            assert (number, boolean, text) == (None, None, expected)  # a string as it is
        else:  # media: its JSON text
            assert number is None and boolean is None and json.loads(text) == expected
        kinds.add(type(expected).__name__)
    assert {"float", "int", "str", "dict"} <= kinds
    keys_at_1000 = {k for s, k, *_ in rows if s == 1000}
    assert keys_at_1000 == set(truth[1000]) | {"_step"}


def test_step_filters_limits_and_in_lists(
    live_emulator: Any, live_con: duckdb.DuckDBPyConnection, live_paths: list[str]
) -> None:
    emulator, con, paths = live_emulator, live_con, live_paths
    path = paths[2]  # a 5000-step gap between 1249 and 6250
    emulator.reset_counters()
    got = con.sql(
        f"SELECT _step FROM wandb_history('{path}', keys := ['loss']) "
        "WHERE key = 'loss' AND _step IN (3, 1249, 6250, 7000) ORDER BY _step"
    ).fetchall()
    assert [s for (s,) in got] == [3, 1249, 6250, 7000]
    assert fetched(emulator)["sampledHistory"]["rows"] <= 8
    limited = con.sql(f"SELECT * FROM wandb_history('{path}', keys := ['loss']) LIMIT 5").fetchall()
    assert len(limited) == 5


def test_joins_across_runs(emulator: Any, con: duckdb.DuckDBPyConnection, paths: list[str]) -> None:
    a, b = paths[0], paths[1]
    got = dict(
        con.sql(
            f"SELECT x._step, x.value_number - y.value_number FROM wandb_history('{a}', keys := ['loss']) x "
            f"JOIN wandb_history('{b}', keys := ['loss']) y USING (_step, key) "
            "WHERE key = 'loss' AND _step BETWEEN 1000 AND 1049"
        ).fetchall()
    )
    ta = {r["_step"]: r["loss"] for r in truth_rows(emulator, a)}
    tb = {r["_step"]: r["loss"] for r in truth_rows(emulator, b)}
    assert got == pytest.approx({s: ta[s] - tb[s] for s in range(1000, 1050)})


def test_wide_union_over_a_project_skips_runs(
    emulator: Any, con: duckdb.DuckDBPyConnection, api: Api, paths: list[str]
) -> None:
    register_runs(con, "test/synthetic", "runs_wide", api=api)
    counts = dict(con.sql("SELECT run_id, count(*) FROM runs_wide GROUP BY run_id").fetchall())
    assert counts == {p.split("/")[2]: len(truth_rows(emulator, p)) for p in paths}
    run_id = paths[1].split("/")[2]
    emulator.reset_counters()
    (n,) = one(con, f"SELECT count(val_loss) FROM runs_wide WHERE run_id = '{run_id}'")
    assert n == sum(1 for r in truth_rows(emulator, paths[1]) if "val_loss" in r)
    assert fetched(emulator)["historyKeys"]["requests"] == 1  # only that run was read
    unregister(con, "runs_wide")


def test_sampled_history(con: duckdb.DuckDBPyConnection, api: Api, paths: list[str]) -> None:
    path = paths[0]
    got = con.sql(
        f"SELECT _step, value_number FROM wandb_history('{path}', keys := ['loss'], samples := 40) "
        "WHERE key = 'loss' ORDER BY _step"
    ).fetchall()
    expected = api.run(path).history(samples=40, pandas=False)
    assert got == [(r["_step"], r["loss"]) for r in expected] and 0 < len(got) <= 40


def test_wandb_runs(emulator: Any, con: duckdb.DuckDBPyConnection, paths: list[str]) -> None:
    relation = con.sql("SELECT * FROM wandb_runs('test/synthetic') ORDER BY name")
    assert relation.columns[: len(RUNS_SCHEMA.names)] == RUNS_SCHEMA.names  # then the run details
    rows = relation.fetchall()
    assert [r[2] for r in rows] == [p.split("/")[2] for p in paths]
    assert [r[10] for r in rows] == [emulator.run(*p.split("/")).steps()[-1] for p in paths]
    assert one(
        con,
        "SELECT count(*) FROM wandb_runs('test/synthetic', filters := '{\"displayName\": \"synthetic-2\"}')"
    ) == (1,)
    (lr,) = one(con, "SELECT config->>'lr' FROM wandb_runs('test/synthetic') LIMIT 1")
    assert lr is not None


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM wandb_history('test/synthetic/nosuchrun')", "test/synthetic/nosuchrun"),
        ("SELECT * FROM wandb_history('a/b/c/d/e')", "a/b/c/d/e"),
        ("SELECT * FROM wandb_history('{run}', keys := ['lozz'])", "unknown key 'lozz'"),
        ("SELECT * FROM wandb_history('{run}', keys := ['train'])", "train.loss"),
        ("SELECT count(*) FROM wandb_history", "needs a constant run or project path"),
        ("SELECT count(*) FROM wandb_history WHERE run_id = 'x'", "needs a constant run or project path"),
        ("SELECT * FROM wandb_runs", "needs a constant project path"),
        ("SELECT * FROM wandb_runs('test/nosuchproject')", "test/nosuchproject"),
    ],
)
def test_errors_name_what_was_wrong(
    con: duckdb.DuckDBPyConnection, paths: list[str], sql: str, message: str
) -> None:
    with pytest.raises(duckdb.Error, match=message.replace("(", r"\(")):
        con.sql(sql.format(run=paths[0])).fetchall()


def test_backing_view_with_a_run_filter(con: duckdb.DuckDBPyConnection, paths: list[str]) -> None:
    entity, project, run_id = paths[0].split("/")
    got = con.sql(
        "SELECT run_id, count(DISTINCT _step) FROM wandb_history "
        f"WHERE entity = '{entity}' AND project = '{project}' AND run_id = '{run_id}' "
        "AND key = 'loss' AND _samples = 0 AND _step < 10 GROUP BY run_id"
    ).fetchall()
    assert got == [(run_id, 10)]
    assert list(LONG_SCHEMA)[:4] == ["run_path", "entity", "project", "run_id"]


# -- names, other paths in --------------------------------------------------------------------------


def test_odd_column_names_in_a_wide_view(make_emulator: Any) -> None:
    rows = [
        {"_step": i, "a b": float(i), 'q"uote': i * 2.0, "ünï λ": f"v{i}", "nest": {"in.ner": i}}
        for i in range(5)
    ]
    emu = make_emulator([MemoryRun(RunMeta("o", "p", "r"), rows=rows)])
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    con = register(duckdb.connect(), api)
    register_run(con, "o/p/r", "odd view", api=api)
    got = con.sql(
        'SELECT "a b", "q""uote", "ünï λ", "nest.in.ner" FROM "odd view" WHERE "a b" >= 3 ORDER BY 1'
    ).fetchall()
    assert got == [(3.0, 6.0, "v3", 3.0), (4.0, 8.0, "v4", 4.0)]
    long = con.sql(
        "SELECT key, value_number, value_text FROM wandb_history('o/p/r', keys := ['ünï λ', 'q\"uote']) "
        "WHERE _step = 1 AND key <> '_step' ORDER BY key"
    ).fetchall()
    assert long == [('q"uote', 2.0, None), ("ünï λ", None, "v1")]
    unregister(con, "odd view")
    con.close()


def test_scan_to_duckdb_and_replacement_scan(api: Api, paths: list[str], emulator: Any) -> None:
    scan = api.run(paths[0]).scan(["loss"], min_step=5, max_step=15)
    con = duckdb.connect()
    scan.to_duckdb(con, "h")
    assert one(con, "SELECT count(*), min(_step), max(_step) FROM h") == (10, 5, 14)
    truth = sum(r["loss"] for r in truth_rows(emulator, paths[0])[5:15])
    # a replacement scan finds the local variable `scan` through __arrow_c_stream__
    assert con.sql("SELECT sum(loss) FROM scan").fetchall()[0][0] == pytest.approx(truth)
    con.close()


# -- the CLI --------------------------------------------------------------------------------------


def _cli(emulator: Any, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, WANDB_BASE_URL=emulator.base_url, WANDB_API_KEY=emulator.api_key)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-X", "dev", "-m", "connector.cli", "sql", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_cli_formats_and_clean_exit(emulator: Any, paths: list[str], tmp_path: Path) -> None:
    query = f"SELECT _step, value_number FROM wandb_history('{paths[0]}', keys := ['loss'], max_step := 3) " \
            "WHERE key = 'loss' ORDER BY _step"
    truth = [(r["_step"], r["loss"]) for r in truth_rows(emulator, paths[0])[:3]]
    table = _cli(emulator, query, cwd=tmp_path)
    assert table.returncode == 0 and table.stderr == ""
    assert all(repr(value) in table.stdout for _, value in truth)
    csv = _cli(emulator, query, "--format", "csv", cwd=tmp_path)
    assert csv.stderr == "" and csv.stdout.splitlines()[0] == "_step,value_number"
    assert [(int(s), float(v)) for s, v in (line.split(",") for line in csv.stdout.splitlines()[1:])] == truth
    js = _cli(emulator, query, "--format", "json", cwd=tmp_path)
    assert [(o["_step"], o["value_number"]) for o in map(json.loads, js.stdout.splitlines())] == truth
    out = tmp_path / "out.parquet"
    pq_run = _cli(emulator, query, "--format", "parquet", "--output", str(out), cwd=tmp_path)
    assert pq_run.returncode == 0 and pq_run.stderr == ""
    assert list(zip(*pq.read_table(out).to_pydict().values(), strict=True)) == truth


def test_cli_errors(emulator: Any, tmp_path: Path) -> None:
    bad = _cli(emulator, "SELECT * FROM wandb_history('test/synthetic/nosuchrun')", cwd=tmp_path)
    assert bad.returncode == 2 and "test/synthetic/nosuchrun" in bad.stderr
    assert "Traceback" not in bad.stderr
    parquet = _cli(emulator, "SELECT 1", "--format", "parquet", cwd=tmp_path)
    assert parquet.returncode == 2 and "--output" in parquet.stderr
