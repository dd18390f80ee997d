"""Odd history keys through the Polars source and the DuckDB views: no panic, every value readable.

Keys holding a NUL character, the empty key ``""``, keys named like the identity columns
(``entity``, ``project``, ``run_id``) and keys equal but for case, plus string values holding NUL.
Polars keeps every key as its column name; DuckDB views use the names of
`connector.polars.column_names(engine="duckdb")` (NUL → ``␀``, ``""`` → ``(empty)``, case twins and
identity twins → ``<key>_1``). Real DuckDB and Polars; the emulator's counters prove what pushdown
fetched through renamed columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import duckdb
import polars as pl
import pytest

from connector import Api
from connector.core.rundata import MemoryRun, RunMeta
from connector.engines.duckdb import register, register_run, register_runs, unregister
from connector.engines.polars import scan_histories, scan_history
from connector.errors import ConfigurationError
from tests.conftest import live_pages_service

NUL = "\x00"
STEPS = 10


def odd_rows(tag: str = "") -> list[dict[str, Any]]:
    return [
        {
            "_step": i,
            f"a{NUL}b": float(i),
            "": i * 2.0,
            "entity": f"ent{i}",
            "project": i % 2 == 0,
            "run_id": float(i * 10),
            "s": f"x{NUL}y{tag}{i}",
            "Loss": float(i),
            "loss": -float(i),
        }
        for i in range(STEPS)
    ]


def odd_run(run_id: str = "r", tag: str = "") -> MemoryRun:
    return MemoryRun(RunMeta("e", "p", run_id), rows=odd_rows(tag))


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    try:
        yield connection
    finally:
        connection.close()


def test_column_names_rules() -> None:
    # new with this test: imported here so that the other tests of the module run without it
    from connector.engines.polars import column_names

    keys = ["_step", f"a{NUL}b", "", "entity", "Loss", "loss", "loss_1", "(empty)", "_extra"]
    assert column_names(keys) == {k: k for k in keys}
    assert column_names(keys, reserved=["entity", "project", "run_id"]) == {
        **{k: k for k in keys}, "entity": "entity_1"
    }
    duck = column_names(keys, reserved=["entity", "project", "run_id"], engine="duckdb")
    assert duck == {
        "_step": "_step", f"a{NUL}b": "a\u2400b", "": "(empty)_1", "entity": "entity_1",
        "Loss": "Loss", "loss": "loss_2", "loss_1": "loss_1", "(empty)": "(empty)", "_extra": "_extra",
    }  # fmt: skip
    assert len({v.lower() for v in duck.values()}) == len(duck)
    with pytest.raises(ConfigurationError, match="engine"):
        column_names(keys, engine="sqlite")  # type: ignore[arg-type]  # an engine it does not know, on purpose


def test_polars_scan_history_keeps_every_key_as_its_column() -> None:
    lf = scan_history(odd_run())
    assert lf.collect_schema().names() == [
        "_step", "", "Loss", f"a{NUL}b", "entity", "loss", "project", "run_id", "s", "_extra"
    ]  # fmt: skip
    frame = lf.collect()
    assert frame.to_dicts()[3] == {
        "_step": 3, "": 6.0, "Loss": 3.0, f"a{NUL}b": 3.0, "entity": "ent3", "loss": -3.0,
        "project": False, "run_id": 30.0, "s": f"x{NUL}y3", "_extra": None,
    }  # fmt: skip
    picked = lf.filter(pl.col("") > 12).select("", f"a{NUL}b", "s").collect()
    assert picked.rows() == [(14.0, 7.0, f"x{NUL}y7"), (16.0, 8.0, f"x{NUL}y8"), (18.0, 9.0, f"x{NUL}y9")]
    by_value = lf.filter(pl.col("s") == f"x{NUL}y4").select("_step").collect()
    assert by_value["_step"].to_list() == [4]
    assert scan_history(odd_run(), keys=["", f"a{NUL}b"]).collect().columns == [
        "_step", "", f"a{NUL}b", "_extra"
    ]  # fmt: skip


def test_polars_scan_histories_renames_keys_named_like_identity_columns() -> None:
    lf = scan_histories([odd_run("r1", "a"), odd_run("r2", "b")])
    names = lf.collect_schema().names()
    assert names[:4] == ["entity", "project", "run_id", "_step"]
    assert {"entity_1", "project_1", "run_id_1", "", f"a{NUL}b", "s"} <= set(names)
    got = (
        lf.filter((pl.col("run_id") == "r2") & (pl.col("run_id_1") >= 80))
        .select("entity", "run_id", "entity_1", "project_1", "run_id_1", "", "s")
        .collect()
        .rows()
    )
    assert got == [
        ("e", "r2", "ent8", True, 80.0, 16.0, f"x{NUL}yb8"),
        ("e", "r2", "ent9", False, 90.0, 18.0, f"x{NUL}yb9"),
    ]


def test_duckdb_register_run_with_nul_empty_and_identity_keys(con: duckdb.DuckDBPyConnection) -> None:
    register_run(con, odd_run(), "odd")
    columns = con.sql("SELECT * FROM odd").columns
    assert columns == [
        "_step", "(empty)", "Loss", "a\u2400b", "entity", "loss_1", "project", "run_id", "s", "_extra"
    ]  # fmt: skip
    got = con.sql(
        'SELECT _step, "(empty)", "a␀b", entity, project, run_id, s, "Loss", loss_1 FROM odd '
        "WHERE _step BETWEEN 2 AND 3 ORDER BY _step"
    ).fetchall()
    assert got == [
        (2, 4.0, 2.0, "ent2", True, 20.0, f"x{NUL}y2", 2.0, -2.0),
        (3, 6.0, 3.0, "ent3", False, 30.0, f"x{NUL}y3", 3.0, -3.0),
    ]
    nul_literal = "'x' || chr(0) || 'y5'"
    assert con.sql(f"SELECT _step FROM odd WHERE s = {nul_literal}").fetchall() == [(5,)]
    assert con.sql('SELECT _step FROM odd WHERE "a␀b" > 7 ORDER BY 1').fetchall() == [(8,), (9,)]
    unregister(con, "odd")


def test_duckdb_register_runs_with_identity_keys(con: duckdb.DuckDBPyConnection) -> None:
    register_runs(con, [odd_run("r1", "a"), odd_run("r2", "b")], "many")
    columns = con.sql("SELECT * FROM many").columns
    assert columns[:4] == ["entity", "project", "run_id", "_step"]
    assert {"entity_1", "project_1", "run_id_1", "(empty)", "a\u2400b", "loss_1"} <= set(columns)
    got = con.sql(
        'SELECT run_id, entity_1, project_1, run_id_1, "(empty)", "a␀b", s FROM many '
        "WHERE run_id = 'r1' AND _step = 4"
    ).fetchall()
    assert got == [("r1", "ent4", True, 40.0, 8.0, 4.0, f"x{NUL}ya4")]
    unregister(con, "many")


def test_duckdb_long_layout_keeps_odd_keys_as_values(make_emulator: Any) -> None:
    emu = make_emulator([odd_run()])
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    con = register(duckdb.connect(), api)
    got = con.sql(
        "SELECT key, value_number, value_text FROM wandb_history('e/p/r', "
        "keys := ['a' || chr(0) || 'b', '', 'entity', 's']) WHERE _step = 1 ORDER BY key"
    ).fetchall()
    assert got == [
        ("", 2.0, None),  # with keys, only those keys' rows (no `_step` row per step)
        (f"a{NUL}b", 1.0, None),
        ("entity", None, "ent1"),
        ("s", None, f"x{NUL}y1"),  # a string as it is, NUL included
    ]
    unregister(con)
    con.close()


def test_duckdb_pushdown_reaches_renamed_columns(make_emulator: Any) -> None:
    emu = make_emulator([odd_run()], service=live_pages_service())
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    con = duckdb.connect()
    register_run(con, "e/p/r", "odd", api=api)
    emu.reset_counters()
    got = con.sql('SELECT "a␀b", "(empty)" FROM odd WHERE _step BETWEEN 3 AND 4').fetchall()
    assert got == [(3.0, 6.0), (4.0, 8.0)]
    pushed = emu.counters()["by_field"]
    assert "history" not in pushed  # no full rows
    assert sorted(pushed["sampledHistory"]["keys"]) == ["", "_step", f"a{NUL}b"]
    assert {tuple(w) for w in pushed["sampledHistory"]["windows"]} == {(3, 4)}

    register_runs(con, ["e/p/r"], "many", api=api)
    emu.reset_counters()
    got = con.sql("SELECT entity, entity_1, run_id_1 FROM many WHERE _step = 2").fetchall()
    assert got == [("e", "ent2", 20.0)]
    assert sorted(emu.counters()["by_field"]["sampledHistory"]["keys"]) == ["_step", "entity", "run_id"]
    unregister(con, "odd", "many")
    con.close()
