"""Arrow shapes of the exported tables, and the transforms every sink shares.

Wide layout (``history``): ``entity, project, run_id, _step`` then one column per flattened key (the
column policy of `connector.core.arrow`: float64, bool, string, JSON text) and ``_extra``. Primary key
``(entity, project, run_id, _step)``.

Long layout (``history_long``): one row per (run, step, key) holding a non-null value:
``entity, project, run_id, _step, key, value_number (float64), value_bool, value_text`` — numbers in
``value_number`` (NaN/±inf kept), booleans in ``value_bool``, strings and JSON text (media, lists,
values of mixed-type keys) in ``value_text``. The values that ``_extra`` held in the wide layout are
unpacked into rows of their own. Primary key ``(entity, project, run_id, _step, key)``; it never
needs DDL when keys appear.

System metrics (``system_metrics``): wide, ``entity, project, run_id, _timestamp`` then the metric
columns; primary key ``(entity, project, run_id, _timestamp)``.

**Column names** (`column_for_key`, the one rule of every destination): a key is its own column
name unless it differs only in letter case from a column the destination already has (DuckDB folds
case, and so do readers of a Parquet dataset: `fold_collisions`), is empty, holds a control character (NUL included), equals one of the identity
columns ``entity``, ``project``, ``run_id``, ``_step``, ``_extra`` in any letter case, ends like a
mapped name (``~`` and 8 hex digits), or is longer than the engine allows (PostgreSQL: 63 bytes).
Such a key gets the column ``<its printable prefix>~<first 8 hex digits of sha1(key)>``, recorded
with the data (``_wandb_column_map`` in DuckDB and PostgreSQL, ``column_map`` in a Parquet dataset's
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

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

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

RUN_COLUMNS = ("entity", "project", "run_id")
TIMESTAMP_COLUMN = "_timestamp"
HISTORY_TABLE, LONG_TABLE, EVENTS_TABLE, RUNS_TABLE = "history", "history_long", "system_metrics", "runs"
STATE_TABLE, COLUMN_MAP_TABLE = "_wandb_export_state", "_wandb_column_map"

IDENTITY_COLUMNS = frozenset({"entity", "project", "run_id", "_step", "_extra"})
_MAPPED_TAIL = re.compile(r"~[0-9a-f]{8}$")


def column_for_key(key: str, max_bytes: int | None = None, *, force: bool = False) -> str:
    """The column that holds `key` (see the module docstring).

    >>> column_for_key("loss"), column_for_key("train.acc")
    ('loss', 'train.acc')
    >>> column_for_key("entity"), column_for_key(""), column_for_key("a\\x00b")
    ('entity~e7116313', '~da39a3ee', 'ab~4a3dec2d')
    >>> len(column_for_key("x" * 80, max_bytes=63).encode())
    63
    """
    raw = key.encode("utf-8", "surrogatepass")
    printable = "".join(c for c in key if c.isprintable())
    plain = (
        bool(key)
        and printable == key
        and key.lower() not in IDENTITY_COLUMNS
        and not _MAPPED_TAIL.search(key)
        and (max_bytes is None or len(raw) <= max_bytes)
    )
    if plain and not force:
        return key
    digest = hashlib.sha1(raw).hexdigest()[:8]
    prefix = printable.encode()
    if max_bytes is not None:
        prefix = prefix[: max_bytes - 9]
    return prefix.decode("utf-8", "ignore") + "~" + digest


KEYS_META = b"wandb.keys"


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


def fold_collisions(names: list[str], keys: Mapping[str, str], existing: list[str]) -> dict[str, str]:
    """``{name: new name}`` for the `names` whose case-folded form is already taken (by `existing`
    columns or an earlier name): they get the mapped form of their key, so two keys never share a
    column in an engine that folds case.

    >>> fold_collisions(["loss", "acc"], {}, ["entity", "Loss"])
    {'loss': 'loss~c9279f09'}
    """
    taken = {e.casefold(): e for e in existing}
    out: dict[str, str] = {}
    for name in names:
        folded = name.casefold()
        if folded in taken and taken[folded] != name:
            out[name] = column_for_key(keys.get(name, name), force=True)
        else:
            taken.setdefault(folded, name)
    return out


_KIND_OF = {"double": FLOAT, "bool": BOOL, "string": STRING, "int64": INT}

LONG_SCHEMA = pa.schema(
    [
        pa.field("entity", pa.string(), nullable=False),
        pa.field("project", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("_step", pa.int64(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("value_number", pa.float64()),
        pa.field("value_bool", pa.bool_()),
        pa.field("value_text", pa.string()),
    ]
)


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
        if not moved:
            out.append(old[i])
            continue
        merged = json.loads(old[i]) if old[i] else {}
        merged.update(moved)
        out.append(dumps_json(merged))
    column = pa.array(out, pa.string())
    if EXTRA_COLUMN in table.column_names:
        return table.set_column(table.column_names.index(EXTRA_COLUMN), EXTRA_COLUMN, column)
    return table.append_column(EXTRA_COLUMN, column)


JSON_KIND = {b"wandb.kind": b"json"}


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


def strict_json_value(value: Any) -> Any:
    """`value` with non-finite floats (also nested) as the strings ``"NaN"``, ``"Infinity"``,
    ``"-Infinity"``, so it serialises as strict JSON (for JSON/JSONB columns).

    >>> strict_json_value({"a": [float("inf"), 1.0]})
    {'a': ['Infinity', 1.0]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: strict_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json_value(v) for v in value]
    return value


def _value_columns(value: Any) -> tuple[float | None, bool | None, str | None]:
    if isinstance(value, bool):
        return None, value, None
    if isinstance(value, int | float):
        return float(value), None, None
    if isinstance(value, str):
        return None, None, value
    return None, None, dumps_json(value)


def to_long(table: pa.Table, keys: Mapping[str, str] | None = None) -> pa.Table:
    """Melt a wide history table (with run columns) into `LONG_SCHEMA` rows, nulls dropped.

    `keys` maps renamed columns back to their keys (`name_columns`).

    >>> w = with_run_columns(pa.table({"_step": [0, 1], "loss": [0.5, None], "ok": [True, None]}), "e", "p", "r")
    >>> [(r["_step"], r["key"], r["value_number"], r["value_bool"]) for r in to_long(w).to_pylist()]
    [(0, 'loss', 0.5, None), (0, 'ok', None, True)]
    """
    parts: list[pa.Table] = []
    fixed = set(RUN_COLUMNS) | {STEP_COLUMN, EXTRA_COLUMN}
    n = table.num_rows
    for name in table.column_names:
        if name in fixed:
            continue
        column = table.column(name)
        mask = pc.is_valid(column)
        if not pc.any(mask).as_py():
            continue
        picked = table.select([*RUN_COLUMNS, STEP_COLUMN]).filter(mask)
        values = column.filter(mask)
        m = picked.num_rows
        typ = column.type
        number = values.cast(pa.float64()) if pa.types.is_floating(typ) or pa.types.is_integer(typ) else pa.nulls(m, pa.float64())
        boolean = values if pa.types.is_boolean(typ) else pa.nulls(m, pa.bool_())
        text = values.cast(pa.string()) if pa.types.is_string(typ) else pa.nulls(m, pa.string())
        parts.append(
            picked.append_column("key", pa.array([(keys or {}).get(name, name)] * m, pa.string()))
            .append_column("value_number", number)
            .append_column("value_bool", boolean)
            .append_column("value_text", text)
        )
    if EXTRA_COLUMN in table.column_names and n and table.column(EXTRA_COLUMN).null_count < n:
        parts.append(_long_extra(table, {(r, k) for p in parts for r, k in _step_keys(p)}))
    if not parts:
        return LONG_SCHEMA.empty_table()
    out = pa.concat_tables([p.cast(LONG_SCHEMA) for p in parts])
    return out.sort_by([("_step", "ascending"), ("key", "ascending")])


def _step_keys(part: pa.Table) -> list[tuple[int, str]]:
    return list(zip(part.column(STEP_COLUMN).to_pylist(), part.column("key").to_pylist(), strict=True))


def _long_extra(table: pa.Table, taken: set[tuple[int, str]]) -> pa.Table:
    rows: list[dict[str, Any]] = []
    meta = table.select([*RUN_COLUMNS, STEP_COLUMN]).to_pylist()
    for base, extra in zip(meta, table.column(EXTRA_COLUMN).to_pylist(), strict=True):
        if not extra:
            continue
        for key, value in _parse_extra(extra).items():
            if value is None or (base[STEP_COLUMN], key) in taken:
                continue
            number, boolean, text = _value_columns(value)
            rows.append({**base, "key": key, "value_number": number, "value_bool": boolean, "value_text": text})
    return pa.Table.from_pylist(rows, schema=LONG_SCHEMA)


def _parse_json(text: str) -> Any:
    consts = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
    return json.loads(text, parse_constant=consts.__getitem__)


def _parse_extra(text: str) -> dict[str, Any]:
    obj = _parse_json(text)
    return obj if isinstance(obj, dict) else {}
