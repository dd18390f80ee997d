"""`connector.polars` over real HTTP against the emulator, checked against the synthetic generator.

Truth is the generator's own rows (`RunData.rows`), flattened, never the connector's output; the
emulator's request counters prove what pushdown fetched.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest

from connector import Api
from connector.core.rundata import MemoryRun, RunMeta
from connector.core.values import flatten_row
from connector.engines.polars import scan_histories, scan_history
from connector.errors import ConfigurationError, NotFoundError

step = pl.col("_step")


# -- truth ----------------------------------------------------------------------------------------


def truth_rows(emulator: Any, path: str) -> list[dict[str, Any]]:
    entity, project, run_id = path.split("/")
    data = emulator.run(entity, project, run_id)
    return [flatten_row(data.row(i))[0] for i in range(len(data.steps()))]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def assert_column(frame: pl.DataFrame, truth: list[dict[str, Any]], key: str) -> None:
    got = dict(zip(frame["_step"].to_list(), frame[key].to_list(), strict=True))
    assert sorted(got) == [r["_step"] for r in truth]
    for row in truth:
        assert same(got[row["_step"]], row.get(key)), (key, row["_step"], got[row["_step"]], row.get(key))


def history_requests(counters: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in counters["by_field"].items() if k in ("history", "sampledHistory")}


# -- schema and projection ------------------------------------------------------------------------


def test_schema_is_known_before_any_history_page(emulator: Any, api: Api, paths: list[str]) -> None:
    emulator.reset_counters()
    lf = scan_history(paths[1], api=api)
    schema = lf.collect_schema()
    assert history_requests(emulator.counters()) == {}
    keys = set(emulator.run(*paths[1].split("/")).history_keys()["keys"])
    assert schema.names()[0] == "_step" and schema.names()[-1] == "_extra"
    assert set(schema.names()) - {"_extra"} == keys
    assert schema["_step"] == pl.Int64 and schema["loss"] == pl.Float64
    assert schema["hist"] == pl.String and schema["phase"] == pl.String


def test_projection_never_changes_the_rows(live_emulator: Any, live_api: Api, live_paths: list[str]) -> None:
    emulator, api, paths = live_emulator, live_api, live_paths  # counts live page requests
    path = paths[1]  # sparse val_loss / hist in runs with index >= 1
    truth = truth_rows(emulator, path)
    lf = scan_history(path, api=api)
    emulator.reset_counters()
    sparse = lf.select("_step", "val_loss").collect()
    fetched = emulator.counters()["by_field"]
    assert "history" not in fetched and fetched["sampledHistory"]["keys"] == ["_step", "val_loss"]
    assert sparse.height == len(truth)
    assert sparse["val_loss"].null_count() == sum(1 for r in truth if "val_loss" not in r) > 0
    assert_column(sparse, truth, "val_loss")
    full = lf.collect()
    assert full.height == len(truth) == lf.select(pl.len()).collect().item()
    for key in ("loss", "grad_norm", "train.loss", "val_acc", "phase"):
        assert_column(full, truth, key)
    assert full.select("_step", "val_loss").equals(sparse)


def test_keys_select_columns_and_unknown_keys_are_named(api: Api, paths: list[str], emulator: Any) -> None:
    truth = truth_rows(emulator, paths[1])
    frame = scan_history(paths[1], api=api, keys=["val_acc", "train"]).collect()
    assert frame.columns == ["_step", "train.acc", "train.loss", "val_acc", "_extra"]
    assert frame.height == len(truth)
    assert_column(frame, truth, "val_acc")
    with pytest.raises(ConfigurationError, match="'nope'.*" + paths[1]):
        scan_history(paths[1], api=api, keys=["nope"])


# -- predicates -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("predicate", "keep"),
    [
        (step.is_between(1200, 1299), lambda s: 1200 <= s <= 1299),
        ((step >= 1500) & (step < 1510), lambda s: 1500 <= s < 1510),
        (step.is_in([1000, 1001, 2222, 3499]), lambda s: s in (1000, 1001, 2222, 3499)),
        ((step < 1003) | (step > 3496), lambda s: s < 1003 or s > 3496),
        (step == 3000, lambda s: s == 3000),
        (step > 99_999, lambda s: False),
    ],
)
def test_step_filters_fetch_only_their_windows(
    emulator: Any, api: Api, paths: list[str], predicate: pl.Expr, keep: Any
) -> None:
    path = paths[1]
    truth = [r for r in truth_rows(emulator, path) if keep(r["_step"])]
    lf = scan_history(path, api=api)
    emulator.reset_counters()
    frame = lf.filter(predicate).select("_step", "loss").collect()
    assert frame["_step"].to_list() == [r["_step"] for r in truth]
    assert_column(frame, truth, "loss")
    fetched = emulator.counters()["by_field"].get("sampledHistory", {"rows": 0, "windows": []})
    kept = {r["_step"] for r in truth}
    # every window asked for lies within the predicate's bounds (maxStep is inclusive in specs),
    # and no more rows came back than twice the kept steps (`_step` spec + `loss` spec)
    for lo, hi in fetched["windows"]:
        assert any(keep(s) for s in range(lo, hi + 1)), (lo, hi)
    assert fetched["rows"] <= 2 * len(kept)


def test_min_and_max_step_are_a_half_open_window(api: Api, paths: list[str], emulator: Any) -> None:
    frame = scan_history(paths[0], api=api, min_step=10, max_step=20).select("_step").collect()
    assert frame["_step"].to_list() == list(range(10, 20))
    both = scan_history(paths[0], api=api, min_step=10, max_step=20).filter(step >= 15).collect()
    assert both["_step"].to_list() == list(range(15, 20))


@pytest.mark.parametrize(
    "predicate",
    [
        (step % 97) == 3,
        step.cast(pl.Float64).sqrt().floor() == 40,
        pl.col("grad_norm").is_nan() | (pl.col("loss") > 2.55),
        (step != 5) & (pl.col("phase") == "warmup"),
    ],
)
def test_a_predicate_that_is_not_understood_still_filters_exactly(
    live_emulator: Any, live_api: Api, live_paths: list[str], predicate: pl.Expr
) -> None:
    emulator, api, paths = live_emulator, live_api, live_paths  # counts live page requests
    path = paths[0]
    lf = scan_history(path, api=api)
    emulator.reset_counters()
    got = lf.filter(predicate).collect()
    windows = emulator.counters()["by_field"]["history"]["windows"]  # whole window fetched
    assert min(lo for lo, _ in windows) == 0 and max(hi for _, hi in windows) == 2500
    expected = pl.DataFrame(truth_rows(emulator, path), infer_schema_length=None).filter(predicate)
    assert got["_step"].to_list() == expected["_step"].to_list()
    assert got.height > 0


def test_nan_filters_behave_as_in_polars(emulator: Any, api: Api, paths: list[str]) -> None:
    truth = truth_rows(emulator, paths[0])
    nan_steps = [r["_step"] for r in truth if math.isnan(r["grad_norm"])]
    lf = scan_history(paths[0], api=api, keys=["grad_norm"])
    assert lf.filter(pl.col("grad_norm").is_nan()).collect()["_step"].to_list() == nan_steps
    # in Polars NaN is greater than every number, so > keeps NaN rows
    above = lf.filter(pl.col("grad_norm") > 1e300).collect()["_step"].to_list()
    assert above == nan_steps


def test_head_stops_early(live_emulator: Any, live_api: Api, live_paths: list[str]) -> None:
    emulator, api, paths = live_emulator, live_api, live_paths  # counts live page requests
    lf = scan_history(paths[0], api=api)
    emulator.reset_counters()
    frame = lf.head(7).collect()
    assert frame["_step"].to_list() == list(range(7))
    assert emulator.counters()["by_field"]["history"]["rows"] <= 7


def test_join_across_runs(emulator: Any, api: Api, paths: list[str]) -> None:
    a, b = (scan_history(p, api=api, keys=["loss"]) for p in paths[:2])
    joined = (
        a.join(b, on="_step", suffix="_b").filter(step.is_between(1000, 1099))
        .select("_step", (pl.col("loss") - pl.col("loss_b")).alias("d")).collect()
    )  # fmt: skip
    ta = {r["_step"]: r["loss"] for r in truth_rows(emulator, paths[0])}
    tb = {r["_step"]: r["loss"] for r in truth_rows(emulator, paths[1])}
    expected = {s: ta[s] - tb[s] for s in ta if s in tb and 1000 <= s <= 1099}
    assert dict(joined.rows()) == pytest.approx(expected) and len(expected) == 100


# -- many runs ------------------------------------------------------------------------------------


def test_scan_histories_over_a_project(live_emulator: Any, live_api: Api, live_paths: list[str]) -> None:
    emulator, api, paths = live_emulator, live_api, live_paths  # counts live page requests
    lf = scan_histories("test/synthetic", api=api)
    assert lf.collect_schema().names()[:4] == ["entity", "project", "run_id", "_step"]
    counts = dict(lf.group_by("run_id").agg(pl.len()).collect().rows())
    assert counts == {p.split("/")[2]: len(truth_rows(emulator, p)) for p in paths}
    target = paths[2].split("/")[2]
    emulator.reset_counters()
    frame = lf.filter((pl.col("run_id") == target) & (step < 10)).select("run_id", "_step", "loss").collect()
    assert frame["_step"].to_list() == list(range(10)) and set(frame["run_id"]) == {target}
    assert_column(frame, truth_rows(emulator, paths[2])[:10], "loss")
    assert emulator.counters()["by_field"]["sampledHistory"]["requests"] == 2  # one run, one window


def test_scan_histories_union_schema_with_conflicting_types(make_emulator: Any) -> None:
    a = MemoryRun(RunMeta("u", "p", "a"), rows=[{"_step": 0, "x": 1.5, "only_a": 1.0}, {"_step": 1}])
    b = MemoryRun(RunMeta("u", "p", "b"), rows=[{"_step": 0, "x": "text"}, {"_step": 5, "x": "t2"}])
    emu = make_emulator([a, b])
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    lf = scan_histories(["u/p/a", "u/p/b"], api=api)
    schema = lf.collect_schema()
    assert schema["x"] == pl.String and schema["only_a"] == pl.Float64
    frame = lf.select("run_id", "_step", "x", "only_a").collect()
    assert frame.rows() == [
        ("a", 0, "1.5", 1.0), ("a", 1, None, None), ("b", 0, '"text"', None), ("b", 5, '"t2"', None),
    ]  # fmt: skip
    with pytest.raises(ConfigurationError, match="filters"):
        scan_histories(["u/p/a"], api=api, filters={"state": "finished"})


# -- errors and names -----------------------------------------------------------------------------


def test_bad_paths_and_unknown_runs_are_named(api: Api) -> None:
    with pytest.raises(ConfigurationError, match="a/b/c/d/e"):
        scan_history("a/b/c/d/e", api=api)
    with pytest.raises(NotFoundError, match="test/synthetic/nosuchrun"):
        scan_history("test/synthetic/nosuchrun", api=api)


def test_odd_column_names(make_emulator: Any) -> None:
    rows = [
        {"_step": i, "a b": float(i), 'q"uote': i * 2.0, "ünï λ": "x" * i, "nest": {"in.ner": i}}
        for i in range(5)
    ]
    emu = make_emulator([MemoryRun(RunMeta("o", "p", "r"), rows=rows)])
    lf = scan_history("o/p/r", api=Api(api_key=emu.api_key, base_url=emu.base_url))
    frame = lf.filter(pl.col("a b") > 1).select("a b", 'q"uote', "ünï λ", "nest.in.ner").collect()
    assert frame.rows() == [(2.0, 4.0, "xx", 2.0), (3.0, 6.0, "xxx", 3.0), (4.0, 8.0, "xxxx", 4.0)]
