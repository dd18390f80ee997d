"""Arrow column policy: `historyKeys` → a fixed Arrow schema, and SDK-shaped rows → record batches.

The schema is fixed before the first page, from the type counts in `historyKeys`, so every batch of a
scan has the same schema (DuckDB and Polars need it at bind time).

Column policy (one column per flattened key, see `connector.core.values.flatten_row`):

==============================  =================================================================
key's types in `historyKeys`    column
==============================  =================================================================
``_step``                       ``int64`` not null (always first)
only ``number`` (and ``nil``)   ``float64``; NaN/±inf stay NaN/±inf, integral values stay floats,
                                the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` become floats
only ``bool``                   ``bool``
only ``string``                 ``string``
anything else: media            ``string`` holding JSON text (``json.dumps`` of the value, so
(``histogram``, ``image-file``  non-finite floats inside stay the tokens ``NaN``/``Infinity``)
...), ``list``, ``map``, or a
key of mixed types
``_extra``                      ``string``, always last: a JSON object holding, per row, every value
                                that did not fit its column's type and every key that was not in
                                `historyKeys` when the scan started. Nothing is dropped.
==============================  =================================================================

A column never changes type during a scan; `_extra` is where a late value of another type goes.

>>> plan = SchemaPlan.from_history_keys({"keys": {"loss": {"typeCounts": [{"type": "number"}]}}})
>>> plan.schema.names
['_step', 'loss', '_extra']
>>> plan.to_batch([{"_step": 0, "loss": 1}, {"_step": 1, "loss": "oops"}]).to_pylist()
[{'_step': 0, 'loss': 1.0, '_extra': None}, {'_step': 1, 'loss': None, '_extra': '{"loss":"oops"}'}]
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .values import NONFINITE

EXTRA_COLUMN = "_extra"
STEP_COLUMN = "_step"

FLOAT, BOOL, STRING, JSON, INT = "float", "bool", "string", "json", "int"
_ARROW_TYPES: dict[str, pa.DataType] = {
    FLOAT: pa.float64(),
    BOOL: pa.bool_(),
    STRING: pa.string(),
    JSON: pa.string(),
    INT: pa.int64(),
}
_SCALAR_KINDS = {"number": FLOAT, "bool": BOOL, "string": STRING}
_NONE = type(None)
# Python types Arrow converts to each kind without loss (bool must never become 1.0).
_NATIVE_TYPES: dict[str, set[type]] = {
    FLOAT: {float, int, _NONE},
    INT: {int, _NONE},
    BOOL: {bool, _NONE},
    STRING: {str, _NONE},
}
_LEADING = ("_step", "_runtime", "_timestamp")


def column_kind(type_names: Iterable[str]) -> str:
    """The column kind for a key whose values had these W&B types.

    >>> column_kind(["number", "nil"]), column_kind(["number", "string"]), column_kind(["histogram"])
    ('float', 'json', 'json')
    """
    kinds = {_SCALAR_KINDS.get(t, JSON) for t in type_names if t != "nil"}
    return kinds.pop() if len(kinds) == 1 else (FLOAT if not kinds else JSON)


def dumps_json(value: Any) -> str:
    """JSON text of a value, keeping non-finite floats as the bare tokens W&B writes.

    >>> dumps_json({"values": [1, 2.5]}), dumps_json([float("nan"), None])
    ('{"values":[1,2.5]}', '[NaN,null]')
    """
    try:
        text = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        text = b"null"
    if b"null" not in text:
        return text.decode()
    # orjson writes NaN/±inf as null: only the standard encoder keeps W&B's tokens.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class SchemaPlan:
    """A fixed Arrow schema plus the conversion of row pages into batches of that schema."""

    kinds: tuple[tuple[str, str], ...]  # (column name, kind) in schema order, without _extra
    with_extra: bool = True

    @classmethod
    def from_history_keys(
        cls,
        history_keys: Mapping[str, Any] | None,
        columns: Sequence[str] | None = None,
        *,
        with_extra: bool = True,
    ) -> SchemaPlan:
        """Build the plan from a `historyKeys` object, optionally limited to `columns`."""
        keys = (history_keys or {}).get("keys") or {}
        type_names = {
            name: [tc.get("type", "nil") for tc in (info or {}).get("typeCounts") or []]
            for name, info in keys.items()
        }
        if columns is not None:
            type_names = {name: type_names.get(name, ["nil"]) for name in columns}
        type_names.pop(STEP_COLUMN, None)
        type_names.pop(EXTRA_COLUMN, None)
        ordered = [n for n in _LEADING[1:] if n in type_names]
        ordered += sorted(n for n in type_names if n not in _LEADING)
        kinds = ((STEP_COLUMN, INT),) + tuple((n, column_kind(type_names[n])) for n in ordered)
        return cls(kinds, with_extra)

    @cached_property
    def schema(self) -> pa.Schema:
        fields: list[pa.Field[Any]] = [pa.field(STEP_COLUMN, pa.int64(), nullable=False)]
        fields += [pa.field(name, _ARROW_TYPES[kind]) for name, kind in self.kinds[1:]]
        if self.with_extra:
            fields.append(pa.field(EXTRA_COLUMN, pa.string()))
        return pa.schema(fields)

    @cached_property
    def names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.kinds)

    def empty_batch(self) -> pa.RecordBatch:
        return pa.RecordBatch.from_pylist([], schema=self.schema)

    def conform(self, table: pa.Table) -> pa.RecordBatch | None:
        """A table read from a columnar file (``_step`` plus key columns, nested dicts as structs or
        dotted names) as one batch of this plan's schema, without a row in Python; None when it
        does not fit without loss (a column of another type, a key the plan lacks, a JSON column):
        the caller then converts its rows with `to_batch`.

        >>> plan = SchemaPlan((("_step", "int"), ("a.b", "float"), ("s", "string")))
        >>> t = pa.table({"_step": [3], "a": pa.array([{"b": 1}])})
        >>> plan.conform(t).to_pylist()
        [{'_step': 3, 'a.b': 1.0, 's': None, '_extra': None}]
        >>> plan.conform(pa.table({"_step": [3], "other": [1.0]})) is None
        True
        """
        table = flatten_structs(table)
        if STEP_COLUMN not in table.column_names or not set(table.column_names) <= self.names:
            return None
        arrays = []
        for name, kind in self.kinds:
            if name not in table.column_names:
                arrays.append(pa.nulls(table.num_rows, _ARROW_TYPES[kind]))  # type: ignore[call-overload]  # pyarrow-stubs: no overload for a plain DataType
                continue
            column = table.column(name)
            kind_of_column = column.type
            fits = (
                (kind == INT and pa.types.is_integer(kind_of_column))
                or (kind == FLOAT and (pa.types.is_floating(kind_of_column) or pa.types.is_integer(kind_of_column) or pa.types.is_null(kind_of_column)))
                or (kind == BOOL and (pa.types.is_boolean(kind_of_column) or pa.types.is_null(kind_of_column)))
                or (kind == STRING and (pa.types.is_string(kind_of_column) or pa.types.is_large_string(kind_of_column) or pa.types.is_null(kind_of_column)))
            )
            if kind == JSON:  # media, lists, mixed types: JSON text of the logged values
                if pa.types.is_floating(kind_of_column) and _integral_floats(column):
                    return None  # 1.0 or a widened 1? Only the row's own text knows
                arrays.append(json_texts(column.combine_chunks()))
                continue
            if not fits:
                return None
            # ints beyond 2**53 round to the nearest double, as float(int) does on the row path
            widen = kind == FLOAT and pa.types.is_integer(kind_of_column)
            arrays.append(column.cast(_ARROW_TYPES[kind], safe=not widen).combine_chunks())
        if self.with_extra:
            arrays.append(pa.nulls(table.num_rows, pa.string()))
        if arrays[0].null_count:
            return None
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def to_batch(self, rows: Sequence[Mapping[str, Any]]) -> pa.RecordBatch:
        """Convert SDK-shaped rows (nested or flat) into one batch of this plan's schema."""
        extra: dict[int, dict[str, Any]] = {}
        gathered: dict[str, list[Any]] = {}
        types: dict[str, set[type]] = {}
        self._gather(list(rows), "", gathered, types, extra)
        arrays = []
        for name, kind in self.kinds:
            values = gathered.get(name)
            if values is None:
                arrays.append(pa.nulls(len(rows), _ARROW_TYPES[kind]))  # type: ignore[call-overload]  # pyarrow-stubs: no overload for a plain DataType
            else:
                arrays.append(_column(name, kind, values, types[name], extra))
        if self.with_extra:
            texts = [dumps_json(extra[i]) if i in extra else None for i in range(len(rows))]
            arrays.append(pa.array(texts if extra else [None] * len(rows), pa.string()))
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def _gather(
        self,
        parents: list[Any],
        prefix: str,
        gathered: dict[str, list[Any]],
        types: dict[str, set[type]],
        extra: dict[int, dict[str, Any]],
    ) -> None:
        """Collect column value lists from dicts at one nesting level, then recurse one deeper.

        Leaves of a level are placed before deeper levels, so a literal dotted key wins over a
        nested path that flattens to the same name; the loser goes to `_extra`.
        """
        columns = _transposed(parents)
        if columns is not None:
            keys = sorted(columns)
        else:
            present = [p for p in parents if p is not None]
            keys = sorted(set().union(*present)) if present else []
        deeper: list[tuple[str, list[Any]]] = []
        for key in keys:
            name = prefix + key
            if columns is not None:
                values = columns[key]
            elif prefix:
                values = [p.get(key) if p is not None else None for p in parents]
            else:
                values = [p.get(key) for p in parents]
            kinds = set(map(type, values))
            if dict in kinds:
                nested = [v if v.__class__ is dict and v and "_type" not in v else None for v in values]
                if any(v is not None for v in nested):
                    deeper.append((name + ".", nested))
                    values = [None if n is not None else v for v, n in zip(values, nested, strict=True)]
                    kinds = set(map(type, values))
            if kinds <= {type(None)}:
                continue
            if name not in self.names:
                for i, value in enumerate(values):
                    if value is not None:
                        extra.setdefault(i, {})[name] = value
            elif name in gathered:
                self._merge_collision(name, gathered[name], values, types[name], kinds, extra)
            else:
                gathered[name] = values
                types[name] = kinds
        for nested_prefix, nested in deeper:
            self._gather(nested, nested_prefix, gathered, types, extra)

    @staticmethod
    def _merge_collision(
        name: str,
        existing: list[Any],
        values: list[Any],
        existing_types: set[type],
        kinds: set[type],
        extra: dict[int, dict[str, Any]],
    ) -> None:
        for i, value in enumerate(values):
            if value is None:
                continue
            if existing[i] is None:
                existing[i] = value
            else:
                extra.setdefault(i, {})[name] = value
        existing_types.update(kinds)  # the caller's set, updated in place

def _transposed(parents: list[Any]) -> dict[str, list[Any]] | None:
    """The values of each key when every parent is a dict with the same keys (the usual page:
    every row logs the same metrics), transposed in C; None otherwise.

    >>> _transposed([{"a": 1, "b": 2}, {"b": 4, "a": 3}])
    {'a': [1, 3], 'b': [2, 4]}
    >>> _transposed([{"a": 1}, {"b": 2}]) is None, _transposed([{"a": 1}, None]) is None
    (True, True)
    """
    if not parents or parents[0].__class__ is not dict:
        return None
    keys = list(parents[0])
    width = len(keys)
    if width < 2 or any(p.__class__ is not dict or len(p) != width for p in parents):
        return None
    try:
        rows = list(map(operator.itemgetter(*keys), parents))
    except KeyError:  # same size, other keys
        return None
    return {key: list(values) for key, values in zip(keys, zip(*rows, strict=True), strict=True)}


def _column(
    name: str, kind: str, values: list[Any], kinds: set[type], extra: dict[int, dict[str, Any]]
) -> pa.Array[Any]:
    """One column's values as an Arrow array of its kind; misfits go to `extra`."""
    arrow_type = _ARROW_TYPES[kind]
    if kind == JSON:
        return pa.array([None if v is None else dumps_json(v) for v in values], arrow_type)
    if kinds <= _NATIVE_TYPES[kind]:
        try:
            return pa.array(values, arrow_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
            pass
    return _tolerant(name, kind, values, extra)


def fit_value(kind: str, value: Any) -> tuple[bool, Any]:
    """Whether `value` fits a column of `kind`, and its converted form when it does.

    >>> fit_value("float", 1), fit_value("float", "NaN")[0], fit_value("float", True)
    ((True, 1.0), True, (False, None))
    """
    if value is None:
        return True, None
    if kind == FLOAT:
        if isinstance(value, bool):
            return False, None
        if isinstance(value, int | float):
            return True, float(value)
        if isinstance(value, str) and value in NONFINITE:
            return True, NONFINITE[value]
        return False, None
    if kind == INT:
        ok = isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
        return ok, value if ok else None
    if kind == BOOL:
        return (True, value) if isinstance(value, bool) else (False, None)
    if kind == STRING:
        return (True, value) if isinstance(value, str) else (False, None)
    return True, value


def _tolerant(name: str, kind: str, values: list[Any], extra: dict[int, dict[str, Any]]) -> pa.Array[Any]:
    """Per-value conversion: values that do not fit the column go to `_extra` for their row."""
    out = []
    for i, value in enumerate(values):
        ok, converted = fit_value(kind, value)
        if not ok:
            extra.setdefault(i, {})[name] = value
        out.append(converted)
    return pa.array(out, _ARROW_TYPES[kind])


def _plain_struct(kind: pa.DataType) -> bool:
    """A struct that is a nested dict of keys (flattened to dotted columns), not a media value."""
    return pa.types.is_struct(kind) and kind.get_field_index("_type") < 0


def flatten_structs(table: pa.Table) -> pa.Table:
    """`table` with its nested-dict struct columns flattened to dotted columns (media structs kept).

    >>> flatten_structs(pa.table({"a": pa.array([{"b": {"c": 1}}])})).column_names
    ['a.b.c']
    >>> flatten_structs(pa.table({"a.b": [1.0], "a": pa.array([{"b": 2.0}])})).column_names
    ['a.b', 'a']
    """
    kept: set[str] = set()  # structs left whole: flattening them would repeat a column name
    while any(_plain_struct(f.type) and f.name not in kept for f in table.schema):
        columns, names = [], []
        taken = set(table.column_names)
        for name, column in zip(table.column_names, table.columns, strict=True):
            if _plain_struct(column.type) and name not in kept and any(f"{name}.{c.name}" in taken for c in column.type):
                kept.add(name)  # a literal dotted key beside the same nested path: rows decide
            if _plain_struct(column.type) and name not in kept:
                for child in column.type:
                    names.append(f"{name}.{child.name}")
                    columns.append(pc.struct_field(column, child.name))
            else:
                names.append(name)
                columns.append(column)
        table = pa.table(columns, names=names)
    return table


def json_texts(array: pa.Array[Any]) -> pa.Array[Any]:
    """The JSON text (`dumps_json`) of each logged value in a column read from a columnar file.

    Columns whose values need no change (`logged_value`) and hold only finite floats are encoded by
    Polars in one vectorised pass; the others value by value. Both give the same text.

    >>> json_texts(pa.array([{"_type": "h", "v": [1.5, 2.0]}, None])).to_pylist()
    ['{"_type":"h","v":[1.5,2.0]}', None]
    >>> json_texts(pa.array([[float("nan")], [1.0]])).to_pylist()
    ['[NaN]', '[1.0]']
    """
    if _inner_nulls_or_binary(array):
        return pa.array([_json_text(v) for v in array.to_pylist()], pa.string())
    if not _encodable(array.type) or not _finite_leaves(array):
        return pa.array([None if v is None else dumps_json(v) for v in array.to_pylist()], pa.string())
    import polars as pl  # noqa: PLC0415  # only columns of JSON values pay for the import

    wrapped = pl.Series(pa.StructArray.from_arrays([array], names=["v"]))
    encoded = wrapped.struct.json_encode().str.slice(5, None).str.head(-1)  # {"v":…} → …
    texts = encoded.to_arrow().cast(pa.string())
    valid: pa.Array[Any] = pc.if_else(array.is_valid(), texts, pa.nulls(len(array), pa.string()))
    return valid


def _integral_floats(column: pa.ChunkedArray[Any]) -> bool:
    """Whether a float column holds a finite integral value (its JSON text is ambiguous).

    >>> _integral_floats(pa.chunked_array([[0.5, 2.0]])), _integral_floats(pa.chunked_array([[0.5, float("nan")]]))
    (True, False)
    """
    values = column.to_numpy()
    finite = values[np.isfinite(values)]
    return bool((finite == np.floor(finite)).any())


def _encodable(kind: pa.DataType) -> bool:
    """Whether Polars' JSON encoder writes values of `kind` exactly as `dumps_json` does: bool,
    64-bit floats, integers and strings, in structs and lists (float32 prints shorter, others vary).

    >>> _encodable(pa.struct([("a", pa.list_(pa.float64()))])), _encodable(pa.float32())
    (True, False)
    """
    if pa.types.is_struct(kind):
        return kind.num_fields > 0 and all(_encodable(f.type) for f in kind)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _encodable(kind.value_type)
    return (
        pa.types.is_boolean(kind)
        or pa.types.is_float64(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
    )


def _finite_leaves(array: pa.Array[Any]) -> bool:
    """Whether every float below `array` is finite (Polars writes NaN/±inf as null, W&B as tokens).

    >>> _finite_leaves(pa.array([{"a": [1.0, 2.0]}])), _finite_leaves(pa.array([{"a": [float("inf")]}]))
    (True, False)
    """
    kind = array.type
    if pa.types.is_floating(kind):
        return bool(pc.all(pc.is_finite(array)).as_py() is not False)
    if pa.types.is_struct(kind):
        return all(_finite_leaves(array.field(i)) for i in range(kind.num_fields))  # type: ignore[attr-defined]  # StructArray
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _finite_leaves(array.flatten())  # type: ignore[attr-defined]  # ListArray
    return True


def _json_text(value: Any) -> str | None:
    """A value read from a columnar file as the JSON text of the value that was logged."""
    return None if value is None else dumps_json(logged_value(value))


def logged_value(value: Any) -> Any:
    """A cell read from a columnar file as the value that was logged: struct fields that are null
    were not logged (they are left out), binary cells hold JSON text (parsed; NaN tokens allowed).

    >>> logged_value({"_type": "histogram", "bins": None, "values": [1, None]}), logged_value(b"[1, NaN]")
    ({'_type': 'histogram', 'values': [1, None]}, [1, nan])
    """
    kind = value.__class__
    if kind is dict:
        return {k: v if v.__class__ not in _NESTED else logged_value(v) for k, v in value.items() if v is not None}
    if kind is list:
        return [v if v.__class__ not in _NESTED else logged_value(v) for v in value]
    if kind is bytes:
        try:
            return json.loads(value)
        except ValueError:
            return value.decode("utf-8", "replace")
    return value


_NESTED = frozenset({dict, list, bytes})


def _inner_nulls_or_binary(array: pa.Array[Any]) -> bool:
    """Whether a column holds null struct fields or binary cells anywhere below its top level
    (cells that `logged_value` must change); plain lists and complete structs need no change.

    >>> _inner_nulls_or_binary(pa.array([{"a": 1, "b": [1.5]}])), _inner_nulls_or_binary(pa.array([{"a": 1}, {"b": 2}]))
    (False, True)
    """
    kind = array.type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return True
    if pa.types.is_struct(kind):
        children = [array.field(i) for i in range(kind.num_fields)]  # type: ignore[attr-defined]  # StructArray
        return any(c.null_count or _inner_nulls_or_binary(c) for c in children)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _inner_nulls_or_binary(array.flatten())  # type: ignore[attr-defined]  # ListArray
    return False
