"""Arrow shapes of the exported tables, and the transforms every sink shares.

Wide layout (``history``): ``entity, project, run_id, _step`` then one column per flattened key (the
column policy of `connector.core.arrow`: float64, bool, string, JSON text) and ``_extra``. Primary key
``(entity, project, run_id, _step)``.

Long layout (``history_long``): ``entity, project, run_id`` then the project's one long layout
(`connector.core.long`, also what SQL's ``wandb_history(...)`` returns): one row per (step, key)
holding a non-null value, ``_step, key, value_number (float64), value_bool, value_text`` — numbers
in ``value_number`` (NaN/±inf kept), booleans in ``value_bool``, strings and JSON text (media,
lists, values of mixed-type keys) in ``value_text``. The values that ``_extra`` held in the wide
layout are unpacked into rows of their own. Primary key ``(entity, project, run_id, _step, key)``;
it never needs DDL when keys appear.

System metrics (``system_metrics``): wide, ``entity, project, run_id, _timestamp`` then the metric
columns; primary key ``(entity, project, run_id, _timestamp)``.

**Column names** (`connector.core.columns.column_for_key`, the one rule of every destination): a
key is its own column name unless it differs only in letter case from a column the destination
already has (DuckDB folds case, and so do readers of a Parquet dataset:
`connector.core.columns.fold_collisions`), is empty, holds a control character (NUL included),
equals one of the identity columns ``entity``, ``project``, ``run_id``, ``_step``, ``_extra`` in any
letter case, ends like a mapped name (``~`` and 8 hex digits), or is longer than the engine allows
(PostgreSQL: 63 bytes). Such a key gets the column ``<its printable prefix>~<first 8 hex digits of
sha1(key)>``, recorded with the data (``_wandb_column_map`` in DuckDB and PostgreSQL, ``column_map`` in a Parquet dataset's
state file), so two keys never share a column and a key is never fatal.

Types never change once written: `conform` keeps a column's first type for the whole destination; a
later value of another type moves to ``_extra`` for its row (merged into that row's JSON object), as
`connector.core.arrow` does within a scan.

>>> import pyarrow as pa
>>> t = pa.table({"_step": [0, 1], "loss": ["a", None], "_extra": [None, None]})
>>> conform(t, {"loss": pa.float64()}).to_pylist()
[{'_step': 0, 'loss': None, '_extra': '{"loss":"a"}'}, {'_step': 1, 'loss': None, '_extra': None}]
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from ..core import long as long_layout
from ..core.arrow import (
    BOOL,
    EXTRA_COLUMN,
    FLOAT,
    INT,
    JSON,
    STEP_COLUMN,
    STRING,
    dumps_json,
    fit_value,
)
from ..core.columns import KEYS_META, RUN_COLUMNS, column_for_key

TIMESTAMP_COLUMN = "_timestamp"
HISTORY_TABLE, LONG_TABLE, EVENTS_TABLE, RUNS_TABLE = "history", "history_long", "system_metrics", "runs"
STATE_TABLE, COLUMN_MAP_TABLE = "_wandb_export_state", "_wandb_column_map"


def name_columns(table: pa.Table, fixed: tuple[str, ...] = (STEP_COLUMN, EXTRA_COLUMN)) -> tuple[pa.Table, dict[str, str]]:
    """Rename the value columns by `column_for_key`; return the table and ``{column: key}`` of the
    renamed ones (so the identity columns added next can never clash with a logged key).

    >>> t, renamed = name_columns(pa.table({"_step": [0], "entity": [1.0], "loss": [2.0]}))
    >>> t.column_names, renamed
    (['_step', 'entity~e7116313', 'loss'], {'entity~e7116313': 'entity'})
    """
    names = [n if n in fixed else column_for_key(n) for n in table.column_names]
    renamed = {c: k for c, k in zip(names, table.column_names, strict=True) if c != k}
    return (table.rename_columns(names) if renamed else table), renamed


def with_key_names(table: pa.Table, renamed: Mapping[str, str]) -> pa.Table:
    """`table` carrying ``{column: key}`` in its schema metadata (read back by `column_keys`)."""
    if not renamed:
        return table
    return table.replace_schema_metadata({KEYS_META: json.dumps(dict(renamed)).encode()})


def column_keys(table: pa.Table) -> dict[str, str]:
    """The ``{column: key}`` map `with_key_names` stored (empty when no column was renamed)."""
    raw = (table.schema.metadata or {}).get(KEYS_META)
    return dict(json.loads(raw)) if raw else {}


_KIND_OF = {"double": FLOAT, "bool": BOOL, "string": STRING, "int64": INT}

LONG_SCHEMA = long_layout.long_schema([pa.field(name, pa.string(), nullable=False) for name in RUN_COLUMNS])


def with_run_columns(table: pa.Table, entity: str, project: str, run_id: str) -> pa.Table:
    """Prepend the constant ``entity, project, run_id`` columns.

    >>> with_run_columns(pa.table({"_step": [1]}), "e", "p", "r").column_names
    ['entity', 'project', 'run_id', '_step']
    """
    n = table.num_rows
    for i, (name, value) in enumerate(zip(RUN_COLUMNS, (entity, project, run_id), strict=True)):
        table = table.add_column(i, pa.field(name, pa.string(), nullable=False), pa.array([value] * n, pa.string()))
    return table


def _merge_extra(table: pa.Table, misfits: dict[str, list[Any]]) -> pa.Table:
    n = table.num_rows
    old = table.column(EXTRA_COLUMN).to_pylist() if EXTRA_COLUMN in table.column_names else [None] * n
    out: list[str | None] = []
    for i in range(n):
        moved = {name: values[i] for name, values in misfits.items() if values[i] is not None}
        prev = old[i]
        if not moved:
            out.append(prev)
            continue
        merged = json.loads(prev) if prev else {}
        merged.update(moved)
        out.append(dumps_json(merged))
    column = pa.array(out, pa.string())
    if EXTRA_COLUMN in table.column_names:
        return table.set_column(table.column_names.index(EXTRA_COLUMN), EXTRA_COLUMN, column)
    return table.append_column(EXTRA_COLUMN, column)


JSON_KIND: dict[bytes | str, bytes | str] = {b"wandb.kind": b"json"}


def mark_json_columns(table: pa.Table, json_columns: set[str]) -> pa.Table:
    """Tag the string columns that hold JSON text (media, lists, mixed-type keys) in field metadata,
    so `conform` can decode them before moving a value to another column's type."""
    if not json_columns:
        return table
    fields = [f.with_metadata(JSON_KIND) if f.name in json_columns else f for f in table.schema]
    return table.cast(pa.schema(fields))


def _decode(value: Any) -> Any:
    try:
        return _parse_json(value)
    except ValueError:
        return value


def conform(table: pa.Table, existing: Mapping[str, pa.DataType]) -> pa.Table:
    """Keep each column's first type: values of a column whose type differs from `existing` are
    converted when they fit that type (``1`` into a float column), else moved to ``_extra``.

    Columns not in `existing` are kept as they are (the sink adds them).
    """
    misfits: dict[str, list[Any]] = {}
    for name in table.column_names:
        want = existing.get(name)
        if want is None or name == EXTRA_COLUMN:
            continue
        field = table.schema.field(name)
        if field.type == want:
            continue
        values = table.column(name).to_pylist()
        if field.metadata == JSON_KIND:
            values = [None if v is None else _decode(v) for v in values]
        kind = _KIND_OF.get(str(want), JSON)
        kept, moved = [], []
        for value in values:
            ok, converted = fit_value(kind, value)
            kept.append(converted if ok else None)
            moved.append(None if ok else value)
        table = table.set_column(table.column_names.index(name), pa.field(name, want), pa.array(kept, want))
        if any(v is not None for v in moved):
            misfits[name] = moved
    if not misfits:
        return table
    return _merge_extra(table, misfits)


def to_long(table: pa.Table, keys: Mapping[str, str] | None = None) -> pa.Table:
    """Melt a wide history table (with run columns) into `LONG_SCHEMA` rows, nulls dropped
    (`connector.core.long.to_long`, the run columns carried).

    `keys` maps renamed columns back to their keys (`name_columns`).

    >>> w = with_run_columns(pa.table({"_step": [0, 1], "loss": [0.5, None], "ok": [True, None]}), "e", "p", "r")
    >>> [(r["_step"], r["key"], r["value_number"], r["value_bool"]) for r in to_long(w).to_pylist()]
    [(0, 'loss', 0.5, None), (0, 'ok', None, True)]
    """
    return long_layout.to_long(table, keys, carry=RUN_COLUMNS).cast(LONG_SCHEMA)


def _parse_json(text: str) -> Any:
    return json.loads(text)  # the standard parser reads W&B's bare NaN / Infinity / -Infinity tokens


def _parse_extra(text: str) -> dict[str, Any]:
    obj = _parse_json(text)
    return obj if isinstance(obj, dict) else {}
