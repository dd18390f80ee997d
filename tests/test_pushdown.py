"""`connector.engines.pushdown`: Polars predicates → step ranges, value sets and the exact residual filter.

The central property: whatever the predicate, every row it keeps lies inside the extracted ranges and
value sets (extraction is a superset), checked against Polars evaluating the predicate itself.
"""

from __future__ import annotations

import json
import random

import duckdb
import polars as pl
import pytest
from polars.io.plugins import register_io_source

from connector.engines.pushdown import (
    NEG_INF,
    POS_INF,
    Pushdown,
    analyze,
    coalesce,
    intersect,
    normalize,
    strip_dynamic,
)

step = pl.col("_step")


@pytest.mark.parametrize(
    ("expr", "ranges"),
    [
        (step > 5, ((6, POS_INF),)),
        (step >= 5, ((5, POS_INF),)),
        (step < 5, ((NEG_INF, 5),)),
        (step <= 5, ((NEG_INF, 6),)),
        (step == 5, ((5, 6),)),
        (step > 2.5, ((3, POS_INF),)),
        (step <= 2.5, ((NEG_INF, 3),)),
        (step == 2.5, ()),
        (step.is_between(3, 7), ((3, 8),)),
        (step.is_between(3, 7, closed="left"), ((3, 7),)),
        (step.is_between(3, 7, closed="right"), ((4, 8),)),
        (step.is_between(3, 7, closed="none"), ((4, 7),)),
        (step.is_in([9, 1, 2, 3]), ((1, 4), (9, 10))),
        ((step >= 10) & (step < 20) & (pl.col("loss") > 1), ((10, 20),)),
        ((step < 5) | (step >= 100), ((NEG_INF, 5), (100, POS_INF))),
        (((step < 5) | (step > 8)) & (step >= 2), ((2, 5), (9, POS_INF))),
        ((step > 10) & (step < 5), ()),
    ],
)
def test_step_ranges(expr: pl.Expr, ranges: tuple) -> None:
    assert analyze(expr).ranges == ranges


@pytest.mark.parametrize(
    "expr",
    [
        step != 5,
        (step % 7) == 3,
        step.cast(pl.Float64).sqrt() < 3,
        (step < 5) | (pl.col("loss") > 1),  # one side unbounded: no bound at all
        pl.col("loss") > 1,
        step > float("nan"),
        step.map_batches(lambda s: s > 3, return_dtype=pl.Boolean),
    ],
)
def test_unknown_shapes_bound_nothing_but_are_kept_as_residual(expr: pl.Expr) -> None:
    push = analyze(expr)
    assert push.ranges is None
    assert push.residual is not None


def test_value_sets_for_identity_and_key_columns() -> None:
    expr = (pl.col("run_id").is_in(["a", "b"]) & (pl.col("entity") == "e")) & (
        (pl.col("key") == "loss") | pl.col("key").is_null()
    )
    push = analyze(expr, value_columns=("run_id", "entity", "key", "project"))
    assert push.values == {
        "run_id": frozenset({"a", "b"}),
        "entity": frozenset({"e"}),
        "key": frozenset({"loss", None}),
    }
    assert not push.allows("run_id", "c") and push.allows("project", "anything")


def test_range_algebra() -> None:
    assert normalize([(3, 5), (0, 2), (2, 3), (9, 9)]) == ((0, 5),)
    assert intersect(((0, 10),), ((NEG_INF, 3), (8, POS_INF))) == ((0, 3), (8, 10))
    merged = coalesce(tuple((i * 10, i * 10 + 1) for i in range(100)), limit=10)
    assert len(merged) == 10 and merged[0][0] == 0 and merged[-1][1] == 991
    assert Pushdown(ranges=((0, 5),)).windows(2, None) == [(2, 5)]


def test_many_is_in_points_are_coalesced_into_a_bounded_number_of_ranges() -> None:
    points = list(range(0, 10_000, 3))
    push = analyze(step.is_in(points))
    assert push.ranges is not None and len(push.ranges) <= 64
    assert all(any(lo <= p < hi for lo, hi in push.ranges) for p in points)


def test_dynamic_predicates_are_stripped_from_the_residual() -> None:
    real = (step >= 3) & (pl.col("loss") > 0.5)
    dynamic = {"Display": {"inputs": [], "fmt_str": "dynamic_pred: 1234"}}
    tree = {"BinaryExpr": {"left": json.loads(real.meta.serialize(format="json")), "op": "And",
                           "right": dynamic}}
    stripped = strip_dynamic(tree)
    assert "dynamic_pred" not in json.dumps(stripped)
    assert strip_dynamic(dynamic) is None
    with pytest.raises(NotImplementedError):
        strip_dynamic({"BinaryExpr": {"left": dynamic, "op": "Or", "right": {"Column": "a"}}})
    # the residual rebuilt from the stripped tree filters exactly like the real predicate
    df = pl.DataFrame({"_step": range(10), "loss": [i / 10 for i in range(10)]})
    rebuilt = pl.Expr.deserialize(__import__("io").StringIO(json.dumps(stripped)), format="json")
    assert df.filter(rebuilt).equals(df.filter(real))


def _random_predicate(rng: random.Random, depth: int = 0) -> pl.Expr:
    if depth > 2 or rng.random() < 0.35:
        v = rng.randint(-5, 60)
        choice = rng.randrange(9)
        return [
            step > v, step >= v, step < v, step <= v, step == v,
            step.is_between(v, v + rng.randint(0, 20), closed=rng.choice(["both", "left", "right", "none"])),
            step.is_in(rng.sample(range(-5, 60), 4)),
            pl.col("loss") > rng.random(),
            step > v + 0.5,
        ][choice]  # fmt: skip
    left, right = _random_predicate(rng, depth + 1), _random_predicate(rng, depth + 1)
    op = rng.randrange(3)
    return left & right if op == 0 else left | right if op == 1 else ~left


def test_extraction_is_always_a_superset_of_what_the_predicate_keeps() -> None:
    rng = random.Random(11)
    df = pl.DataFrame({"_step": range(0, 60), "loss": [rng.random() for _ in range(60)]})
    for _ in range(400):
        expr = _random_predicate(rng)
        push = analyze(expr)
        kept = df.filter(expr)["_step"].to_list()
        windows = push.windows(0, 60)
        assert all(any(lo <= s < hi for lo, hi in windows) for s in kept), expr
        assert df.filter(push.residual).equals(df.filter(expr))


def test_predicates_as_duckdb_pushes_them_are_understood() -> None:
    """Capture the predicates DuckDB really hands a registered Polars source, then analyze them."""
    schema = pl.Schema({"run_id": pl.String, "_step": pl.Int64, "key": pl.String, "value": pl.Float64})
    seen: list[pl.Expr | None] = []

    def source(with_columns, predicate, n_rows, batch_size):  # noqa: ANN001, ANN202
        seen.append(predicate)
        yield pl.DataFrame(schema=schema)

    con = duckdb.connect()
    con.register("v", register_io_source(source, schema=lambda: schema))
    con.sql(
        "SELECT avg(value) FROM v WHERE run_id = 'r' AND key IN ('loss', 'acc') "
        "AND _step BETWEEN 100 AND 199"
    ).fetchall()
    push = analyze(seen[-1], value_columns=("run_id", "key"))
    assert push.ranges == ((100, 200),)
    assert push.values == {"run_id": frozenset({"r"}), "key": frozenset({"loss", "acc"})}
    con.sql("SELECT * FROM v WHERE _step IN (3, 4, 10) AND run_id IN ('a', 'b')").fetchall()
    push = analyze(seen[-1], value_columns=("run_id",))
    assert push.ranges == ((3, 5), (10, 11)) and push.values == {"run_id": frozenset({"a", "b"})}
    con.close()
