"""Arrow column policy: `historyKeys` → a fixed Arrow schema, and SDK-shaped rows → record batches.

The schema is fixed before the first page, from the type counts in `historyKeys`, so every batch of a
scan has the same schema (DuckDB and Polars need it at bind time).

Column policy (one column per flattened key, see `connector.values.flatten_row`):

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
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from .values import flatten_row

EXTRA_COLUMN = "_extra"
STEP_COLUMN = "_step"

FLOAT, BOOL, STRING, JSON, INT = "float", "bool", "string", "json", "int"
_ARROW_TYPES = {
    FLOAT: pa.float64(),
    BOOL: pa.bool_(),
    STRING: pa.string(),
    JSON: pa.string(),
    INT: pa.int64(),
}
_SCALAR_KINDS = {"number": FLOAT, "bool": BOOL, "string": STRING}
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_LEADING = ("_step", "_runtime", "_timestamp")


def column_kind(type_names: Iterable[str]) -> str:
    """The column kind for a key whose values had these W&B types.

    >>> column_kind(["number", "nil"]), column_kind(["number", "string"]), column_kind(["histogram"])
    ('float', 'json', 'json')
    """
    kinds = {_SCALAR_KINDS.get(t, JSON) for t in type_names if t != "nil"}
    return kinds.pop() if len(kinds) == 1 else (FLOAT if not kinds else JSON)


def dumps_json(value: Any) -> str:
    """JSON text of a value, keeping non-finite floats as the bare tokens W&B writes."""
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

    @property
    def schema(self) -> pa.Schema:
        fields = [pa.field(STEP_COLUMN, pa.int64(), nullable=False)]
        fields += [pa.field(name, _ARROW_TYPES[kind]) for name, kind in self.kinds[1:]]
        if self.with_extra:
            fields.append(pa.field(EXTRA_COLUMN, pa.string()))
        return pa.schema(fields)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.kinds)

    def kind_of(self, name: str) -> str | None:
        return dict(self.kinds).get(name)

    def empty_batch(self) -> pa.RecordBatch:
        return pa.RecordBatch.from_pylist([], schema=self.schema)

    def to_batch(self, rows: Sequence[Mapping[str, Any]], *, may_have_bools: bool = True) -> pa.RecordBatch:
        """Convert SDK-shaped rows (nested or flat) into one batch of this plan's schema.

        `may_have_bools=False` is a promise from the caller (for example: the raw page text has no
        ``true``/``false`` token) that lets number columns skip the bool check.
        """
        names = self.names
        extra: dict[int, dict[str, Any]] = {}
        seen = set().union(*rows) if rows else set()
        if not seen <= names:
            rows = self._flatten_unknown(rows, names, seen - names, extra)
        arrays = []
        for name, kind in self.kinds:
            values = [row.get(name) for row in rows]
            arrays.append(self._column(name, kind, values, extra, may_have_bools))
        if self.with_extra:
            arrays.append(
                pa.array(
                    [dumps_json(extra[i]) if i in extra else None for i in range(len(rows))]
                    if extra
                    else [None] * len(rows),
                    pa.string(),
                )
            )
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    @staticmethod
    def _flatten_unknown(
        rows: Sequence[Mapping[str, Any]],
        names: frozenset[str],
        unknown: set[str],
        extra: dict[int, dict[str, Any]],
    ) -> list[Mapping[str, Any]]:
        out: list[Mapping[str, Any]] = []
        for i, row in enumerate(rows):
            if unknown.isdisjoint(row):
                out.append(row)
                continue
            flat, collisions = flatten_row(row)
            misfits = {k: v for k, v in flat.items() if k not in names}
            misfits.update(collisions)
            if misfits:
                extra.setdefault(i, {}).update(misfits)
            out.append(flat)
        return out

    @staticmethod
    def _column(
        name: str, kind: str, values: list[Any], extra: dict[int, dict[str, Any]], may_have_bools: bool
    ) -> pa.Array:
        arrow_type = _ARROW_TYPES[kind]
        if kind == JSON:
            return pa.array([None if v is None else dumps_json(v) for v in values], arrow_type)
        if kind == FLOAT and may_have_bools and any(v.__class__ is bool for v in values):
            return _tolerant(name, kind, values, extra)
        try:
            return pa.array(values, arrow_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
            return _tolerant(name, kind, values, extra)


def _fits(kind: str, value: Any) -> tuple[bool, Any]:
    if value is None:
        return True, None
    if kind == FLOAT:
        if isinstance(value, bool):
            return False, None
        if isinstance(value, int | float):
            return True, float(value)
        if isinstance(value, str) and value in _NONFINITE:
            return True, _NONFINITE[value]
        return False, None
    if kind == INT:
        ok = isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
        return ok, value if ok else None
    if kind == BOOL:
        return (True, value) if isinstance(value, bool) else (False, None)
    if kind == STRING:
        return (True, value) if isinstance(value, str) else (False, None)
    return True, value


def _tolerant(name: str, kind: str, values: list[Any], extra: dict[int, dict[str, Any]]) -> pa.Array:
    """Per-value conversion: values that do not fit the column go to `_extra` for their row."""
    out = []
    for i, value in enumerate(values):
        ok, converted = _fits(kind, value)
        if not ok:
            extra.setdefault(i, {})[name] = value
        out.append(converted)
    return pa.array(out, _ARROW_TYPES[kind])
