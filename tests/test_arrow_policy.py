"""The Arrow column policy, checked against the value model's own definitions."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pytest

from connector.core.arrow import EXTRA_COLUMN, SchemaPlan, column_kind
from connector.core.values import flatten_row, history_keys_from_rows

ROWS = [
    {"_step": 0, "_runtime": 0.5, "loss": 1, "acc": 0.25, "flag": True, "name": "a",
     "train": {"x": 1.0, "y": {"z": 2}}, "h": {"_type": "histogram", "values": [1, 2], "bins": [0, 1, 2]},
     "lst": [1, float("nan")], "mixed": 1.0},
    {"_step": 1, "loss": float("nan"), "acc": float("inf"), "mixed": "text", "name": "b"},
    {"_step": 2, "loss": -math.inf, "flag": False, "train": {"x": 3}},
]


def plan_for(rows):
    return SchemaPlan.from_history_keys(history_keys_from_rows(rows))


def test_schema_types_follow_the_policy():
    schema = plan_for(ROWS).schema
    assert schema.names[0] == "_step" and schema.names[-1] == EXTRA_COLUMN
    assert schema.field("_step").type == pa.int64() and not schema.field("_step").nullable
    assert schema.names[1] == "_runtime"
    types = {f.name: f.type for f in schema}
    assert types["loss"] == pa.float64() and types["acc"] == pa.float64()
    assert types["flag"] == pa.bool_() and types["name"] == pa.string()
    assert types["train.x"] == pa.float64() and types["train.y.z"] == pa.float64()
    assert types["h"] == pa.string() and types["lst"] == pa.string()
    assert types["mixed"] == pa.string()  # number + string: JSON text


def test_values_round_trip_exactly():
    table = pa.Table.from_batches([plan_for(ROWS).to_batch(ROWS)])
    got = table.to_pylist()
    assert got[0]["loss"] == 1.0 and isinstance(got[0]["loss"], float)
    assert math.isnan(got[1]["loss"]) and got[1]["acc"] == math.inf and got[2]["loss"] == -math.inf
    assert got[0]["train.y.z"] == 2.0 and got[2]["train.x"] == 3.0 and got[1]["train.x"] is None
    hist = json.loads(got[0]["h"])
    assert hist == ROWS[0]["h"]
    assert got[0]["lst"] == "[1,NaN]"  # non-finite floats stay W&B tokens inside JSON text
    assert json.loads(got[0]["mixed"]) == 1.0 and json.loads(got[1]["mixed"]) == "text"
    assert [r[EXTRA_COLUMN] for r in got] == [None, None, None]


def test_type_drift_goes_to_extra_and_nothing_is_dropped():
    plan = plan_for(ROWS)
    drift = [
        {"_step": 5, "loss": "oops", "acc": True, "flag": 3, "name": 7, "newkey": [1]},
        {"_step": 6, "loss": "NaN", "acc": "-Infinity", "train": {"x": 1, "new": 2}},
    ]
    got = pa.Table.from_batches([plan.to_batch(drift)]).to_pylist()
    extra = json.loads(got[0][EXTRA_COLUMN])
    assert extra == {"loss": "oops", "acc": True, "flag": 3, "name": 7, "newkey": [1]}
    assert got[0]["loss"] is None and got[0]["acc"] is None
    assert math.isnan(got[1]["loss"]) and got[1]["acc"] == -math.inf
    assert json.loads(got[1][EXTRA_COLUMN]) == {"train.new": 2}
    assert got[1]["train.x"] == 1.0


def test_literal_dotted_key_wins_over_nested_path():
    rows = [{"_step": 0, "a.b": 1.0, "a": {"b": 2.0}}]
    flat, collisions = flatten_row(rows[0])
    assert flat == {"_step": 0, "a.b": 1.0} and collisions == {"a.b": 2.0}
    got = plan_for(rows).to_batch(rows).to_pylist()[0]
    assert got["a.b"] == 1.0 and json.loads(got[EXTRA_COLUMN]) == {"a.b": 2.0}


def test_every_batch_has_the_same_schema():
    plan = plan_for(ROWS)
    assert plan.to_batch(ROWS[:1]).schema == plan.to_batch(ROWS[1:]).schema == plan.schema
    assert plan.empty_batch().schema == plan.schema


@pytest.mark.parametrize(
    "types,kind",
    [(["number"], "float"), (["nil", "number"], "float"), (["bool"], "bool"), (["string"], "string"),
     (["histogram"], "json"), (["list"], "json"), (["number", "bool"], "json"), (["nil"], "float")],
)
def test_column_kind(types, kind):
    assert column_kind(types) == kind
