"""`connector.core.columns`: key → column resolution, the one unknown-key error, the column naming rule.

Truths are literal: the keys a run logged are written out here, and mapped column names are
recomputed from ``hashlib.sha1`` directly. The last tests check that every entry point taking keys
(the Polars source, DuckDB's ``wandb_history``, the exporter's ``--keys``) raises the same message.
"""

from __future__ import annotations

import doctest
import hashlib
from pathlib import Path
from typing import Any

import pytest

import connector.core.columns as columns
from connector.core.columns import (
    LEADING_COLUMNS,
    RESERVED_COLUMNS,
    RUN_COLUMNS,
    check_key_list,
    check_keys,
    column_for_key,
    fold_collisions,
    key_columns,
    last_step,
    resolve_key,
    select_columns,
    union_kinds,
    unknown_keys,
    unknown_keys_error,
)
from connector.errors import ConfigurationError

HK = {
    "keys": {"loss": {}, "acc": {}, "train.acc": {}, "train.loss": {}, "train": {}, "val.x.y": {}},
    "lastStep": 99,
}


def sha8(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:8]


# -- resolution -----------------------------------------------------------------------------------


def test_exact_keys_select_themselves_in_request_order() -> None:
    assert select_columns(HK, ["loss", "acc"], run_path="e/p/r") == ["loss", "acc"]
    assert select_columns(HK, ["acc", "loss", "acc"], run_path="e/p/r") == ["acc", "loss"]


def test_a_logged_key_wins_over_its_leaves() -> None:
    assert resolve_key("train", list(HK["keys"])) == ["train"]


def test_nested_prefix_selects_its_dotted_leaves() -> None:
    hk = {"keys": {"train.loss": {}, "trainer": {}, "train.acc": {}, "val.x.y": {}}}
    assert select_columns(hk, ["train"]) == ["train.loss", "train.acc"]  # historyKeys order
    assert select_columns(hk, ["val"]) == ["val.x.y"]
    assert select_columns(hk, ["val.x"]) == ["val.x.y"]
    assert resolve_key("train", list(hk["keys"]), nested=False) is None  # keys as values: no expansion


def test_step_is_always_a_column_and_selects_nothing_more() -> None:
    assert select_columns({"keys": {}}, ["_step"]) == []
    assert select_columns(HK, ["_step", "loss", "_step"]) == ["loss"]
    assert unknown_keys(["_step"], [{}]) == []


def test_no_keys_means_every_column() -> None:
    assert select_columns(HK, None) is None


def test_unknown_keys_by_mode() -> None:
    with pytest.raises(ConfigurationError) as err:
        select_columns(HK, ["loss", "los", "nothing_like_it"], run_path="e/p/r")
    assert str(err.value) == (
        "unknown keys 'los', 'nothing_like_it' in run e/p/r; did you mean 'loss' for 'los'? "
        "(logged keys include acc, loss, train, train.acc, train.loss, val.x.y)"
    )
    assert select_columns(HK, ["los", "loss"], unknown="skip") == ["loss"]
    assert select_columns(HK, ["los", "loss"], unknown="keep") == ["los", "loss"]


def test_keys_must_be_a_list_of_strings() -> None:
    for bad in ("loss", ["loss", 1], 3):
        with pytest.raises(ConfigurationError, match="keys must be a list of strings"):
            check_key_list(bad)
    with pytest.raises(ConfigurationError, match="keys must be a list of strings"):
        select_columns(HK, ["loss", None], unknown="keep")  # type: ignore[list-item]


def test_many_runs_an_unknown_key_is_an_error_only_when_no_run_logged_it() -> None:
    runs = {"e/p/a": {"keys": {"loss": {}}}, "e/p/b": {"keys": {"acc": {}, "t.x": {}}}}
    check_keys(["loss", "acc", "t"], runs)
    check_keys(["nope"], {})  # no runs: nothing to check
    with pytest.raises(ConfigurationError) as err:
        check_keys(["loss", "acx"], runs)
    assert str(err.value) == "unknown key 'acx': none of the 2 runs logged it; did you mean 'acc'?"
    with pytest.raises(ConfigurationError) as err:
        check_keys(["t"], runs, nested=False, hint="a hint")
    assert str(err.value) == "unknown key 't': none of the 2 runs logged it; did you mean 't.x'? (a hint)"


def test_the_error_lists_leaves_first_and_system_keys_last() -> None:
    error = unknown_keys_error(["train"], ["train.b", "train.a", "trains"], ["e/p/r"])
    assert str(error) == "unknown key 'train' in run e/p/r; did you mean 'train.a' or 'train.b'?"
    error = unknown_keys_error(["zz"], ["_runtime", "b", "_timestamp", "a"], ["e/p/r"])
    assert str(error) == "unknown key 'zz' in run e/p/r (logged keys include a, b, _runtime, _timestamp)"
    assert str(unknown_keys_error(["zz"], [], ["e/p/r"])) == "unknown key 'zz' in run e/p/r"


def test_last_step() -> None:
    assert (last_step(HK), last_step(None), last_step({"lastStep": "9"}), last_step({"lastStep": False})) == (
        99, -1, -1, -1,
    )  # fmt: skip


def test_leading_columns_and_union_order() -> None:
    assert RUN_COLUMNS == ("entity", "project", "run_id")
    assert LEADING_COLUMNS == ("entity", "project", "run_id", "_step")
    assert RESERVED_COLUMNS == ("entity", "project", "run_id", "_step", "_extra")
    union = union_kinds([{"_step": "int", "z": "float", "_timestamp": "float"}, {"a": "bool", "z": "string"}])
    assert union == (("_step", "int"), ("_timestamp", "float"), ("a", "bool"), ("z", "json"))


# -- naming ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["loss", "train.acc", "a b", "Δloss", "entity_1", "x~0123", "~abc"])
def test_plain_keys_are_their_own_column(key: str) -> None:
    assert column_for_key(key) == key


@pytest.mark.parametrize(
    ("key", "column"),
    [
        ("", "~" + sha8("")),
        ("a\x00b", "ab~" + sha8("a\x00b")),
        ("tab\there", "tabhere~" + sha8("tab\there")),
        ("entity", "entity~" + sha8("entity")),
        ("Run_ID", "Run_ID~" + sha8("Run_ID")),
        ("_STEP", "_STEP~" + sha8("_STEP")),
        ("_extra", "_extra~" + sha8("_extra")),
        ("x~0123abcd", "x~0123abcd~" + sha8("x~0123abcd")),  # looks mapped: mapped again
    ],
)
def test_keys_that_cannot_be_a_column_get_a_mapped_name(key: str, column: str) -> None:
    assert column_for_key(key) == column


def test_byte_limit_and_force() -> None:
    long = "é" * 40  # 80 bytes
    column = column_for_key(long, max_bytes=63)
    assert len(column.encode()) <= 63 and column.endswith("~" + sha8(long))
    assert column.encode()[:-9].decode() == "é" * 27  # cut on a character boundary
    assert column_for_key("ok", max_bytes=63) == "ok"
    assert column_for_key("loss", force=True) == "loss~" + sha8("loss")


def test_case_folding_collisions() -> None:
    assert fold_collisions(["Loss", "acc"], {}, ["loss"]) == {"Loss": "Loss~" + sha8("Loss")}
    assert fold_collisions(["loss"], {}, ["loss"]) == {}  # the same column, not a collision
    mapped = {"x~" + sha8("x\x00"): "x\x00"}
    assert fold_collisions(list(mapped), mapped, [next(iter(mapped)).upper()]) == {
        next(iter(mapped)): "x~" + sha8("x\x00")
    }
    assert key_columns(["loss", "LOSS", "Entity", "ok"]) == {
        "LOSS": "LOSS~" + sha8("LOSS"),
        "Entity": "Entity~" + sha8("Entity"),
    }


def test_docstring_examples_run() -> None:
    failures, tried = doctest.testmod(columns)
    assert failures == 0 and tried > 10


# -- one message for every entry point ------------------------------------------------------------


@pytest.fixture(scope="module")
def one_run() -> Any:
    from connector.core.rundata import MemoryRun, RunMeta
    from connector.emulator import Emulator
    from tests.conftest import TEST_API_KEY

    rows = [{"_step": i, "loss": i / 2, "acc": 0.5, "train": {"acc": 1.0, "loss": 2.0}} for i in range(20)]
    emu = Emulator([MemoryRun(RunMeta("e", "p", "r1"), rows=rows)], api_key=TEST_API_KEY).start()
    try:
        yield emu
    finally:
        emu.stop()


def _errors(emu: Any, keys: list[str], tmp_path: Path) -> dict[str, str]:
    import duckdb

    from connector import Api
    from connector.engines.duckdb import register, unregister
    from connector.engines.polars import scan_history
    from connector.export import export

    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    out: dict[str, str] = {}
    try:
        scan_history("e/p/r1", api=api, keys=keys).collect()
    except ConfigurationError as exc:
        out["polars"] = str(exc)
    con = register(duckdb.connect(), api)
    try:
        listed = ", ".join(repr(k) for k in keys)
        con.sql(f"SELECT * FROM wandb_history('e/p/r1', keys := [{listed}])").fetchall()
    except duckdb.Error as exc:
        out["duckdb"] = str(exc)
    finally:
        unregister(con)
        con.close()
    dest = tmp_path / "x.duckdb"
    try:
        export(["e/p/r1"], str(dest), api=api, keys=keys)
    except ConfigurationError as exc:
        out["export"] = str(exc)
        assert not dest.exists(), "a refused export must not leave a destination behind"
    return out


def test_every_entry_point_raises_the_same_unknown_key_message(one_run: Any, tmp_path: Path) -> None:
    expected = "unknown key 'los' in run e/p/r1; did you mean 'loss'?"
    errors = _errors(one_run, ["loss", "los"], tmp_path)
    assert errors["polars"] == expected
    assert "ConfigurationError: " + expected in errors["duckdb"]
    assert errors["export"] == expected + " (pass --allow-missing to export it anyway)"


def test_a_nested_parent_is_a_column_set_but_not_a_long_key(one_run: Any, tmp_path: Path) -> None:
    errors = _errors(one_run, ["train"], tmp_path / "nested")
    assert "polars" not in errors and "export" not in errors  # wide layouts: the leaves' columns
    assert "unknown key 'train' in run e/p/r1; did you mean 'train.acc' or 'train.loss'?" in errors["duckdb"]
