"""Apache Iceberg destination (``--to iceberg://PATH[?namespace=NS]``), through `pyiceberg`.

``pip install 'wandb-history-connector[iceberg]'``

``PATH`` is a local warehouse folder with a **SQL catalog on SQLite** (``PATH/catalog.db``, the
catalog named ``wandb_history``) and the tables of namespace ``NS`` (default ``wandb``):
``history`` (or ``history_long``), ``system_metrics``, ``runs`` and ``_wandb_export_state``. Any
Iceberg reader that can use a SQL catalog (pyiceberg, DuckDB, Spark with the JDBC catalog) reads
them; `read_table` is the short way::

    from connector.export.sinks.iceberg import read_table
    read_table("PATH", "history")            # a pyarrow.Table

**Exactly once.** Each chunk is **one Iceberg commit** (one transaction: schema evolution for new
keys, then an overwrite of the chunk's key range of that run, or an append when no row of it can
exist yet). The rows merge on ``(entity, project, run_id, _step)`` like the DuckDB sink's
``ON CONFLICT DO UPDATE``: the rows of the range are read back, the chunk's columns replace theirs,
the other columns are kept, and the merged rows replace the range in the same commit. The new
watermark is in the commit's **snapshot summary** (``wandb.export``: the states and new column
names). ``_wandb_export_state`` is a snapshot of every state, rewritten every `SNAPSHOT_EVERY`
commits and at the end, recording the sequence number of the last snapshot it covers per table;
opening the destination reads it and replays the summaries of every later snapshot. A crash
(``kill -9``) anywhere leaves either the rows and their watermark, or neither.

Schema evolution: a new key adds an optional column (``union_by_name``); types never change (other
types go to ``_extra``). Column names follow the Delta sink's rule (`connector.export.sinks.lake.safe_names`):
case-insensitive duplicates and characters Spark refuses are mapped, recorded in ``column_map``.

Not supported (refused before anything is written): ``--full-refresh``; a catalog other than
SQLite, or an object-store warehouse (pyiceberg can do both; this sink does not configure them).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pyarrow as pa

from ...errors import ConfigurationError
from ..tables import HISTORY_TABLE, RUN_COLUMNS, RUNS_TABLE, STATE_TABLE
from .lake import META_KEY, STATE_SCHEMA, CommitLog, LakeSink, check_stop

CATALOG_NAME = "wandb_history"
CATALOG_FILE = "catalog.db"
DEFAULT_NAMESPACE = "wandb"


def need_pyiceberg() -> Any:
    """The `pyiceberg` module, or an ImportError naming the extra."""
    try:
        import pyiceberg
        from pyiceberg.catalog.sql import SqlCatalog  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "Iceberg destinations need pyiceberg with SQLite: pip install 'wandb-history-connector[iceberg]'"
        ) from exc
    return pyiceberg


def split_target(target: str) -> tuple[str, str]:
    """(warehouse folder, namespace) of ``PATH[?namespace=NS]``.

    >>> split_target("/wh?namespace=ml"), split_target("wh")
    (('/wh', 'ml'), ('wh', 'wandb'))
    """
    path, _, query = target.partition("?")
    params = parse_qs(query)
    unknown = set(params) - {"namespace"}
    if unknown:
        raise ConfigurationError(f"iceberg:// accepts only ?namespace=..., got {sorted(unknown)}")
    namespace = (params.get("namespace") or [DEFAULT_NAMESPACE])[0]
    if "://" in path:
        raise ConfigurationError("iceberg:// takes a local warehouse folder (object-store warehouses are not supported yet)")
    return path, namespace


def open_catalog(warehouse: str | os.PathLike[str]) -> Any:
    """The SQLite SQL catalog of a warehouse folder (created on first use)."""
    need_pyiceberg()
    from pyiceberg.catalog.sql import SqlCatalog

    root = Path(warehouse).resolve()
    return SqlCatalog(CATALOG_NAME, uri=f"sqlite:///{root / CATALOG_FILE}", warehouse=root.as_uri())


def read_table(target: str | os.PathLike[str], table: str = HISTORY_TABLE) -> pa.Table:
    """One exported table as Arrow (strings as ``string``, not ``large_string``).

    >>> import tempfile
    >>> read_table(tempfile.mkdtemp()).num_rows
    0
    """
    path, namespace = split_target(os.fspath(target))
    if not (Path(path) / CATALOG_FILE).exists():
        return pa.table({})
    catalog = open_catalog(path)
    if not catalog.table_exists((namespace, table)):
        return pa.table({})
    return _small_types(catalog.load_table((namespace, table)).scan().to_arrow())


def _small_types(table: pa.Table) -> pa.Table:
    fields = [
        pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) else
                 pa.list_(pa.string()) if pa.types.is_large_list(f.type) or pa.types.is_list(f.type) else f.type, True)
        for f in table.schema
    ]  # fmt: skip
    return table.cast(pa.schema(fields))


def upsert_rows(old: pa.Table, new: pa.Table, keys: Sequence[str]) -> pa.Table:
    """`new` merged into `old` on `keys` as ``INSERT ... ON CONFLICT DO UPDATE`` does: a matched
    row takes `new`'s columns and keeps `old`'s other columns; unmatched rows of both are kept.

    >>> old = pa.table({"k": [1, 2], "a": [1.0, 2.0], "b": ["x", "y"]})
    >>> new = pa.table({"k": [2, 3], "a": [20.0, 30.0]})
    >>> upsert_rows(old, new, ["k"]).sort_by("k").to_pylist()
    [{'k': 1, 'a': 1.0, 'b': 'x'}, {'k': 2, 'a': 20.0, 'b': 'y'}, {'k': 3, 'a': 30.0, 'b': None}]
    """
    if old.num_rows == 0:
        return new
    keys = list(keys)
    other = [c for c in old.column_names if c not in new.column_names]
    matched = new.join(old.select([*keys, *other]), keys=keys, join_type="left outer") if other else new
    taken = set(zip(*(new.column(k).to_pylist() for k in keys), strict=True))
    mask = [t not in taken for t in zip(*(old.column(k).to_pylist() for k in keys), strict=True)]
    rest = old.filter(pa.array(mask, pa.bool_()))
    return pa.concat_tables([matched, rest], promote_options="default")


class IcebergSink(LakeSink):
    """Export into Iceberg tables of a SQLite-catalog warehouse (see the module docstring); the
    shared logic is `connector.export.sinks.lake.LakeSink`."""

    ENGINE = "Iceberg"

    def _open(self, target: str) -> None:
        need_pyiceberg()
        path, self.namespace = split_target(target)
        self.path = Path(path)
        self._catalog: Any = None
        self._open_folder(self.path, "an Iceberg warehouse is a folder")
        if (self.path / CATALOG_FILE).exists():
            self._load()

    # -- tables ----------------------------------------------------------------------------------
    @property
    def catalog(self) -> Any:
        if self._catalog is None:
            self._catalog = open_catalog(self.path)
            if not self.read_only:
                self._catalog.create_namespace_if_not_exists(self.namespace)
        return self._catalog

    def _table(self, name: str) -> Any:
        if not (self.path / CATALOG_FILE).exists():
            return None
        ident = (self.namespace, name)
        if not self.catalog.table_exists(ident):
            return None
        return self.catalog.load_table(ident)

    def _types(self, name: str) -> dict[str, pa.DataType]:
        existing = self._table(name)
        if existing is None:
            return {}
        return {f.name: f.type for f in _small_types(existing.schema().as_arrow().empty_table()).schema}

    def _version(self, name: str) -> int | None:
        table = self._table(name)
        current = table.current_snapshot() if table is not None else None
        return (current.sequence_number or 0) if current is not None else None

    def _stored(self, data: pa.Table) -> pa.Table:
        return _optional_table(data)

    # -- states ----------------------------------------------------------------------------------
    def _state_rows(self, snapshot: Any) -> list[dict[str, Any]]:
        return snapshot.scan().to_arrow().to_pylist()

    def _snapshot_doc(self, snapshot: Any) -> str | None:
        current = snapshot.current_snapshot()
        return _summary(current).get(META_KEY) if current is not None else None

    def _commits_since(self, table: Any, since: int) -> tuple[list[str], int]:
        docs: list[str] = []
        latest = since
        for snap in sorted(table.metadata.snapshots, key=lambda s: s.sequence_number or 0):
            seq = snap.sequence_number or 0
            if seq > since:
                doc = _summary(snap).get(META_KEY)
                if doc:
                    docs.append(doc)
                latest = max(latest, seq)
        return docs, latest

    def _write_snapshot(self, rows: list[dict[str, Any]], doc: str) -> None:
        schema = _optional(STATE_SCHEMA)
        data = pa.Table.from_pylist(rows, schema=schema)
        table = self._table(STATE_TABLE)
        if table is None:
            table = self.catalog.create_table((self.namespace, STATE_TABLE), schema=schema)
        table.overwrite(data, snapshot_properties={META_KEY: doc})

    # -- runs ------------------------------------------------------------------------------------
    def _run_filter(self, key: tuple[str, str, str]) -> Any:
        from pyiceberg.expressions import And, EqualTo

        return And(*(EqualTo(c, v) for c, v in zip(RUN_COLUMNS, key, strict=True)))  # type: ignore[call-arg, arg-type]  # pyiceberg takes (term, literal); mypy sees the pydantic fields

    def _delete(self, table: Any, where: Any, doc: str) -> None:
        table.delete(where, snapshot_properties={META_KEY: doc})

    def _write_runs(self, rows: pa.Table) -> None:
        self._write(RUNS_TABLE, _optional_table(rows), list(RUN_COLUMNS), False, CommitLog.document([]), None)
        self._committed(RUNS_TABLE, [], {})

    # -- chunks ----------------------------------------------------------------------------------
    def _commit_chunk(self, name: str, data: pa.Table, keys: list[str], append: bool, doc: str, stop: threading.Event | None) -> bool:
        if data.num_rows == 0:
            return False
        self._write(name, data, keys, append, doc, stop)
        return True

    def _write(self, name: str, data: pa.Table, keys: list[str], append: bool, doc: str, stop: threading.Event | None) -> None:
        from pyiceberg.expressions import (
            AlwaysTrue,
            And,
            BooleanExpression,
            EqualTo,
            GreaterThanOrEqual,
            LessThanOrEqual,
        )

        props = {META_KEY: doc}
        table = self._table(name)
        if table is None:
            table = self.catalog.create_table((self.namespace, name), schema=data.schema)
        if len(keys) > len(RUN_COLUMNS):
            import pyarrow.compute as pc

            run = data.slice(0, 1).select(list(RUN_COLUMNS)).to_pylist()[0]
            order = keys[len(RUN_COLUMNS)]
            column = data.column(order)
            parts: list[BooleanExpression] = [EqualTo(c, run[c]) for c in RUN_COLUMNS]  # type: ignore[call-arg, arg-type]  # pyiceberg takes (term, literal); mypy sees the pydantic fields
            parts += [GreaterThanOrEqual(order, pc.min(column).as_py()), LessThanOrEqual(order, pc.max(column).as_py())]  # type: ignore[call-arg, arg-type]  # pyiceberg takes (term, literal); mypy sees the pydantic fields
            where: Any = And(*parts)
        else:
            where = AlwaysTrue()
        old = None if append else _small_types(table.scan(row_filter=where).to_arrow())
        tx = table.transaction()
        new_columns = [f for f in data.schema if f.name not in table.schema().column_names]
        if new_columns:
            with tx.update_schema() as update:
                update.union_by_name(pa.schema(new_columns))
        full = _small_types(tx.table_metadata.schema().as_arrow().empty_table()).schema
        if old is not None and old.num_rows:
            merged = upsert_rows(old, data, keys)
            with warnings.catch_warnings():  # "did not match any records": a merged range's files
                warnings.simplefilter("ignore", UserWarning)
                tx.overwrite(_like(merged, full), overwrite_filter=where, snapshot_properties=props)
        else:
            tx.append(_like(data, full), snapshot_properties=props)
        check_stop(stop)
        tx.commit_transaction()

    # -- end -------------------------------------------------------------------------------------
    def _release(self) -> None:
        if self._catalog is not None:
            engine = getattr(self._catalog, "engine", None)
            if engine is not None:
                engine.dispose()
            self._catalog = None


def _summary(snapshot: Any) -> dict[str, str]:
    summary = getattr(snapshot, "summary", None)
    if summary is None:
        return {}
    return dict(getattr(summary, "additional_properties", {}) or {})


def _optional(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, f.type, True) for f in schema])


def _optional_table(table: pa.Table) -> pa.Table:
    return table.cast(_optional(table.schema))


def _like(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns (absent ones as nulls), in order."""
    arrays = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=_optional(schema))


__all__ = ["IcebergSink", "open_catalog", "read_table", "split_target", "upsert_rows"]
