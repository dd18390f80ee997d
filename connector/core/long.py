"""The long layout of run history: one row per (step, key) that holds a value.

It is the one long layout of the project: the exporter's ``history_long`` table
(`connector.export.tables.to_long`) and SQL's ``wandb_history(...)`` (`connector.engines.duckdb`)
both come from `to_long`. Columns (`LONG_FIELDS`, after any carried columns such as ``entity,
project, run_id``):

================  ===========  ======================================================================
column            type         holds
================  ===========  ======================================================================
``_step``         int64        the step
``key``           string       the logged key (its original name, also when a column was renamed)
``value_number``  float64      numbers (NaN and ±inf kept): every value of a number column, numbers
                               found in ``_extra``
``value_bool``    bool         booleans
``value_text``    string       strings as they are; JSON text of everything else: media, lists,
                               maps, and every value of a key logged with mixed types (a JSON
                               column of the Arrow policy, `connector.core.arrow`: its values are
                               its JSON text, so a number there is ``'1.5'`` and a string ``'"a"'``)
================  ===========  ======================================================================

Exactly one value column is set per row. A null (or missing) value has no row. The values of
``_extra`` (values that did not fit their column, keys unknown when the scan started) become rows
of their own key: a number → ``value_number``, a boolean → ``value_bool``, a string →
``value_text`` as it is, anything else → its JSON text (`connector.core.arrow.dumps_json`); an
``_extra`` value whose (step, key) already has a row from a column is left out. Rows are sorted by
``(_step, key)``.

>>> import pyarrow as pa
>>> wide = pa.table({"_step": [0, 1], "loss": [0.5, float("nan")], "ok": [True, None],
...                  "_extra": [None, '{"tag": "x", "h": [1, 2]}']})
>>> for row in to_long(wide).to_pylist():
...     print(row)
{'_step': 0, 'key': 'loss', 'value_number': 0.5, 'value_bool': None, 'value_text': None}
{'_step': 0, 'key': 'ok', 'value_number': None, 'value_bool': True, 'value_text': None}
{'_step': 1, 'key': 'h', 'value_number': None, 'value_bool': None, 'value_text': '[1,2]'}
{'_step': 1, 'key': 'loss', 'value_number': nan, 'value_bool': None, 'value_text': None}
{'_step': 1, 'key': 'tag', 'value_number': None, 'value_bool': None, 'value_text': 'x'}
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .arrow import EXTRA_COLUMN, STEP_COLUMN, dumps_json

#: The columns of the long layout, after the carried ones.
LONG_FIELDS: tuple[pa.Field[Any], ...] = (
    pa.field(STEP_COLUMN, pa.int64(), nullable=False),
    pa.field("key", pa.string(), nullable=False),
    pa.field("value_number", pa.float64()),
    pa.field("value_bool", pa.bool_()),
    pa.field("value_text", pa.string()),
)


def long_schema(carried: Sequence[pa.Field[Any]] = ()) -> pa.Schema:
    """The long layout's schema after the `carried` fields.

    >>> long_schema([pa.field("run_id", pa.string())]).names
    ['run_id', '_step', 'key', 'value_number', 'value_bool', 'value_text']
    """
    return pa.schema([*carried, *LONG_FIELDS])


def value_columns(value: Any) -> tuple[float | None, bool | None, str | None]:
    """``(value_number, value_bool, value_text)`` of one Python value (a value of ``_extra``).

    >>> value_columns(2), value_columns(True), value_columns("a"), value_columns({"x": [1]})
    ((2.0, None, None), (None, True, None), (None, None, 'a'), (None, None, '{"x":[1]}'))
    """
    if isinstance(value, bool):
        return None, value, None
    if isinstance(value, int | float):
        return float(value), None, None
    if isinstance(value, str):
        return None, None, value
    return None, None, dumps_json(value)


def _typed(values: pa.ChunkedArray[Any]) -> tuple[Any, Any, Any]:
    """The three value columns of one column's non-null values, by the column's type."""
    n, typ = len(values), values.type
    number = (
        values.cast(pa.float64())
        if pa.types.is_floating(typ) or pa.types.is_integer(typ)
        else pa.nulls(n, pa.float64())
    )
    boolean = values if pa.types.is_boolean(typ) else pa.nulls(n, pa.bool_())
    texty = pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_string_view(typ)
    text = values.cast(pa.string()) if texty else pa.nulls(n, pa.string())
    return number, boolean, text


def to_long(
    wide: pa.Table,
    names: Mapping[str, str] | None = None,
    *,
    carry: Sequence[str] = (),
    keys: Collection[str] | None = None,
) -> pa.Table:
    """Melt a wide history table (``_step``, one column per key, optionally ``_extra``) into the
    long layout (see the module docstring).

    `names` maps renamed columns back to their keys. `carry` names columns copied onto every row
    (first, as they are: run identity columns). `keys`, when given, keeps only the rows of those
    keys (columns and ``_extra`` alike).

    >>> wide = pa.table({"run_id": ["r"], "_step": [3], "loss~1a2b3c4d": [1.5], "acc": [0.25]})
    >>> to_long(wide, {"loss~1a2b3c4d": "loss"}, carry=["run_id"], keys={"loss"}).to_pylist()
    [{'run_id': 'r', '_step': 3, 'key': 'loss', 'value_number': 1.5, 'value_bool': None, 'value_text': None}]
    """
    names = names or {}
    base = [*carry, STEP_COLUMN]
    fixed = {*base, EXTRA_COLUMN}
    schema = long_schema([wide.schema.field(c) for c in carry])
    parts: list[pa.Table] = []
    for name in wide.column_names:
        key = names.get(name, name)
        if name in fixed or (keys is not None and key not in keys):
            continue
        column = wide.column(name)
        if column.null_count == len(column):
            continue
        mask = pc.is_valid(column)
        picked = wide.select(base).filter(mask)
        number, boolean, text = _typed(column.filter(mask))
        parts.append(
            picked.append_column("key", pa.array([key] * picked.num_rows, pa.string()))
            .append_column("value_number", number)
            .append_column("value_bool", boolean)
            .append_column("value_text", text)
        )
    if EXTRA_COLUMN in wide.column_names:
        extra = wide.column(EXTRA_COLUMN)
        if extra.null_count < len(extra):
            taken: set[tuple[Any, Any]] = {
                (step, key)
                for part in parts
                for step, key in zip(part.column(STEP_COLUMN).to_pylist(), part.column("key").to_pylist(), strict=True)
            }
            parts.append(_extra_rows(wide, base, schema, taken, keys))
    if not parts:
        return schema.empty_table()
    out = pa.concat_tables([part.cast(schema) for part in parts])
    return out.sort_by([(STEP_COLUMN, "ascending"), ("key", "ascending")])


def _extra_rows(
    wide: pa.Table,
    base: list[str],
    schema: pa.Schema,
    taken: set[tuple[Any, Any]],
    keys: Collection[str] | None,
) -> pa.Table:
    rows: list[dict[str, Any]] = []
    meta = wide.select(base).to_pylist()
    for ids, text in zip(meta, wide.column(EXTRA_COLUMN).to_pylist(), strict=True):
        if not text:
            continue
        obj = json.loads(text)  # W&B's bare NaN / Infinity / -Infinity tokens included
        if not isinstance(obj, dict):
            continue
        for key, value in obj.items():
            if value is None or (keys is not None and key not in keys) or (ids[STEP_COLUMN], key) in taken:
                continue
            number, boolean, text_value = value_columns(value)
            rows.append(
                {**ids, "key": key, "value_number": number, "value_bool": boolean, "value_text": text_value}
            )
    return pa.Table.from_pylist(rows, schema=schema)
