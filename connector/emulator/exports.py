"""Parquet history exports of a run, written the way an exporter of W&B history could write them.

The service keeps the history of finished runs as Parquet files and answers `parquetHistory` with
signed URLs to them plus `liveData`, the first steps not exported yet. Its exact file layout is not
public, so the files written here vary the way a reader must tolerate:

* a run's rows are split into files of `rows_per_file` rows (the last one smaller), each with row
  groups of `row_group_rows` rows and an ascending ``_step`` int64 column;
* even-numbered files keep nested dicts as Arrow **structs** (``train: struct<loss, acc>``),
  odd-numbered files flatten them to **dotted** columns (``train.loss``);
* media (dicts tagged ``_type``) are structs, lists are lists, numbers are int64 or float64 (NaN and
  ±inf stay floats), strings are strings, booleans booleans;
* a column whose values do not share one Arrow type (a key logged as a number and as a string, an
  integer beyond int64, an empty dict) is a **binary** column of JSON texts with bare ``NaN`` /
  ``Infinity`` tokens;
* a key absent from a file's rows has no column in that file; a row that did not log a key holds
  null there.

>>> import io, pyarrow.parquet as pq
>>> rows = [{"_step": 0, "train": {"loss": 1.0}}, {"_step": 1, "train": {"loss": float("nan")}, "x": "a"}]
>>> files = export_files(rows, rows_per_file=1)
>>> [pq.read_table(io.BytesIO(f.data)).column_names for f in files]
[['_step', 'train'], ['_step', 'x', 'train.loss']]
>>> [(f.first_step, f.last_step) for f in files]
[(0, 0), (1, 1)]
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..core.values import flatten_row
from .service import ROWS_PER_FILE

if TYPE_CHECKING:
    from .storage import StorageHost
    from .store import ServedRun

ROW_GROUP_ROWS = 10_000


@dataclass(frozen=True)
class ExportFile:
    """One exported Parquet file: its bytes and the steps it holds."""

    data: bytes
    rows: int
    first_step: int
    last_step: int


def export_files(
    rows: Sequence[Mapping[str, Any]],
    *,
    rows_per_file: int = ROWS_PER_FILE,
    row_group_rows: int = ROW_GROUP_ROWS,
) -> list[ExportFile]:
    """The Parquet files of `rows` (ascending ``_step``), `rows_per_file` rows each."""
    files = []
    for index, start in enumerate(range(0, len(rows), rows_per_file)):
        part = rows[start : start + rows_per_file]
        # a flat layout cannot hold a literal dotted key beside the same nested path: nested then
        nested = index % 2 == 0 or any(flatten_row(row)[1] for row in part)
        table = file_table(part, nested=nested)
        sink = io.BytesIO()
        pq.write_table(table, sink, row_group_size=row_group_rows, compression="zstd")
        steps = table.column("_step")
        files.append(ExportFile(sink.getvalue(), len(part), steps[0].as_py(), steps[-1].as_py()))
    return files


def file_table(rows: Sequence[Mapping[str, Any]], *, nested: bool) -> pa.Table:
    """One file's table: top-level keys (dicts as structs) when `nested`, else dotted columns.

    >>> t = file_table([{"_step": 3, "a": {"b": 1}, "s": [1, 2]}], nested=False)
    >>> t.column_names, t.schema.field("a.b").type, t.schema.field("s").type
    (['_step', 's', 'a.b'], DataType(int64), ListType(list<item: int64>))
    """
    if nested:
        records = [dict(row) for row in rows]
    else:
        records = []
        for row in rows:
            flat, collisions = flatten_row(row)
            records.append({**collisions, **flat} if collisions else flat)
    names: dict[str, None] = {"_step": None}
    for record in records:
        names.update(dict.fromkeys(record))
    columns: dict[str, pa.Array[Any]] = {"_step": pa.array([r["_step"] for r in records], pa.int64())}
    for name in names:
        if name != "_step":
            columns[name] = _column([r.get(name) for r in records])
    return pa.table(columns)


def _column(values: list[Any]) -> pa.Array:
    """`values` as one typed Arrow array, or as JSON texts in a binary array when no type fits
    without loss (ints mixed with floats, anywhere in the values, would come back as floats)."""
    if not _mixes_ints_and_floats(values) and (
        not any(isinstance(v, bool) for v in values) or all(isinstance(v, bool | None) for v in values)
    ):
        try:
            array = pa.array(values)
            if _representable(array.type):
                return array
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
    return pa.array(
        [None if v is None else json.dumps(v, separators=(",", ":")).encode() for v in values], pa.binary()
    )


def _representable(kind: pa.DataType) -> bool:
    """False for types that lose what was logged: null-only, empty structs, bool mixed into numbers."""
    if pa.types.is_null(kind):
        return False
    if pa.types.is_struct(kind):
        return kind.num_fields > 0 and all(_representable(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _representable(kind.value_type) or pa.types.is_null(kind.value_type)
    return True


class ExportShelf:
    """The exported files of every served run, kept on a `StorageHost` and rebuilt when a run changes.

    `answer` gives what ``parquetHistory`` answers for a run: signed URLs of its files and
    ``liveData``, the first step that is not in them (``[]`` when every row is exported).
    """

    def __init__(self, storage: StorageHost) -> None:
        self.storage = storage
        self._lock = threading.Lock()
        self._built: dict[str, tuple[tuple[int, int, int], list[str], int | None]] = {}

    def answer(self, served: ServedRun, boundary: int, rows_per_file: int = ROWS_PER_FILE) -> dict[str, Any]:
        """Files for the first `boundary` rows of `served`, `rows_per_file` rows each."""
        steps = served.steps()
        key = (served.version, boundary, rows_per_file)
        with self._lock:
            got = self._built.get(served.path)
            if got is None or got[0] != key:
                names = self._build(served, boundary, rows_per_file)
                first_live = steps[boundary] if boundary < len(steps) else None
                got = self._built[served.path] = (key, names, first_live)
        _, names, first_live = got
        return {
            "parquetUrls": [self.storage.url(name) for name in names],
            "liveData": [] if first_live is None else [{"_step": first_live}],
        }

    def _build(self, served: ServedRun, boundary: int, rows_per_file: int) -> list[str]:
        prefix = f"{served.path}/history/"
        self.storage.delete_prefix(prefix)
        rows = served.rows(range(boundary)) if boundary else []
        names = []
        for index, exported in enumerate(export_files(rows, rows_per_file=rows_per_file)):
            name = f"{prefix}{index}.parquet"
            self.storage.put(name, exported.data)
            names.append(name)
        return names


def _mixes_ints_and_floats(values: list[Any]) -> bool:
    """Whether ints and floats meet at one place of the values (a column, a list, a struct field).

    >>> _mixes_ints_and_floats([1, 2.5]), _mixes_ints_and_floats([{"a": [1, 2]}, {"a": [0.5]}])
    (True, True)
    >>> _mixes_ints_and_floats([1, None, 3]), _mixes_ints_and_floats([{"a": 1}, {"b": 0.5}])
    (False, False)
    """
    top = set(map(type, values))
    if int in top and float in top:
        return True
    if dict not in top and list not in top:
        return False
    kinds: dict[str, set[type]] = {}
    stack: list[tuple[str, Any]] = [("", v) for v in values if isinstance(v, dict | list)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((f"{where}.{k}", v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{where}[]", v) for v in value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            seen = kinds.setdefault(where, set())
            seen.add(type(value))
            if len(seen) > 1:
                return True
    return False
