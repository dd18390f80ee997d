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
types go to ``_extra``). Column names follow the Delta sink's rule (`connector.export.sinks.delta.safe_names`):
case-insensitive duplicates and characters Spark refuses are mapped, recorded in ``column_map``.

Not supported (refused before anything is written): ``--full-refresh``; a catalog other than
SQLite, or an object-store warehouse (pyiceberg can do both; this sink does not configure them).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs

import pyarrow as pa

from ...arrow import EXTRA_COLUMN, STEP_COLUMN
from ...errors import ConfigurationError, DestinationBusyError, DestinationError
from ..checkpoint import EVENTS, JsonStateStore, StateKey, StreamState, crash_point
from ..tables import (
    EVENTS_TABLE,
    HISTORY_TABLE,
    LONG_TABLE,
    RUN_COLUMNS,
    RUNS_TABLE,
    STATE_TABLE,
    TIMESTAMP_COLUMN,
    column_keys,
    conform,
    to_long,
)
from .base import Interrupted
from .delta import META_KEY, STATE_SCHEMA, CommitLog, merge_keys, plain, safe_names, target_table
from .dest import writable_place

CATALOG_NAME = "wandb_history"
CATALOG_FILE = "catalog.db"
DEFAULT_NAMESPACE = "wandb"
LOCK_FILE = ".wandb-export.lock"
DATA_TABLES = (HISTORY_TABLE, LONG_TABLE, EVENTS_TABLE, RUNS_TABLE)
SNAPSHOT_EVERY = 25


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
    >>> read_table(tempfile.mkdtemp()).num_rows  # doctest: +SKIP
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


class IcebergSink:
    """Export into Iceberg tables of a SQLite-catalog warehouse (see the module docstring)."""

    def __init__(
        self,
        target: str,
        *,
        layout: str,
        full_refresh: bool = False,
        checkpoint: str | None = None,
        read_only: bool = False,
    ) -> None:
        if full_refresh:
            raise ConfigurationError(
                "--full-refresh is not supported for Iceberg destinations yet: export into a new "
                "destination, or delete the runs' rows and checkpoints first"
            )
        need_pyiceberg()
        path, self.namespace = split_target(target)
        self.path = Path(path)
        self.display = target
        self.layout = layout
        self.read_only = read_only
        self.external = JsonStateStore(checkpoint) if checkpoint else None
        self.lock = threading.RLock()
        self.prepared = False
        self._lock_file: IO[str] | None = None
        self._runs: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._since_snapshot = 0
        self._dirty = False
        self.log = CommitLog()
        self.versions: dict[str, int] = {}
        if self.path.exists() and not self.path.is_dir():
            raise DestinationError(f"{self.path} is a file: an Iceberg warehouse is a folder")
        if not self.path.exists():
            writable_place(self.path)
        elif not read_only and not os.access(self.path, os.W_OK | os.X_OK):
            raise DestinationError(f"cannot write into {self.path} (permissions or a read-only mount)")
        self.created = not self.path.exists()
        self._catalog: Any = None
        if not read_only:
            self._take_lock()
        if (self.path / CATALOG_FILE).exists():
            self._load()

    def _take_lock(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        fh = open(self.path / LOCK_FILE, "a+")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise DestinationBusyError(
                f"another export is writing into {self.path} (its {LOCK_FILE} is locked); wait for it to finish"
            ) from None
        self._lock_file = fh

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

    # -- states ----------------------------------------------------------------------------------
    def _load(self) -> None:
        log = CommitLog()
        versions: dict[str, int] = {}
        try:
            snapshot = self._table(STATE_TABLE)
            if snapshot is not None:
                for row in snapshot.scan().to_arrow().to_pylist():
                    state = StreamState.from_json(json.loads(row["state"]))
                    log.states[state.key] = state
                current = snapshot.current_snapshot()
                meta = json.loads(_summary(current).get(META_KEY) or "{}") if current is not None else {}
                versions = {k: int(v) for k, v in (meta.get("versions") or {}).items()}
                log.apply({"column_map": meta.get("column_map") or {}})
            for name in DATA_TABLES:
                table = self._table(name)
                if table is None:
                    continue
                since = versions.get(name, -1)
                latest = since
                for snap in sorted(table.metadata.snapshots, key=lambda s: s.sequence_number or 0):
                    seq = snap.sequence_number or 0
                    if seq > since:
                        doc = _summary(snap).get(META_KEY)
                        if doc:
                            log.apply(json.loads(doc))
                            self._since_snapshot += 1
                        latest = max(latest, seq)
                versions[name] = latest
        except (ValueError, KeyError, TypeError) as exc:
            raise DestinationError(
                f"{self.display}: the export state in the Iceberg tables is unreadable ({type(exc).__name__}: {exc})"
            ) from None
        self.log = log
        self.versions = versions

    def load_states(self) -> dict[StateKey, StreamState]:
        if self.external is not None:
            return self.external.load()
        return dict(self.log.states)

    def _snapshot(self) -> None:
        if self.read_only:
            return
        rows = [
            {"entity": k.entity, "project": k.project, "run_id": k.run_id, "stream": k.stream,
             "key_set": k.key_set, "state": json.dumps(s.to_json(), sort_keys=True)}
            for k, s in sorted(self.log.states.items())
        ]  # fmt: skip
        schema = _optional(STATE_SCHEMA)
        data = pa.Table.from_pylist(rows, schema=schema)
        doc = json.dumps({"versions": self.versions, "column_map": self.log.column_map}, sort_keys=True)
        table = self._table(STATE_TABLE)
        if table is None:
            table = self.catalog.create_table((self.namespace, STATE_TABLE), schema=schema)
        table.overwrite(data, snapshot_properties={META_KEY: doc})
        self._since_snapshot = 0
        self._dirty = False

    def _committed(self, name: str, states: Sequence[StreamState], column_map: dict[str, dict[str, str]]) -> None:
        self.log.apply(json.loads(CommitLog.document(states, column_map)))
        table = self._table(name)
        current = table.current_snapshot() if table is not None else None
        if current is not None:
            self.versions[name] = current.sequence_number or 0
        self._dirty = True
        self._since_snapshot += 1
        if self.external is not None:
            self.external.commit(states)
        elif self._since_snapshot >= SNAPSHOT_EVERY:
            self._snapshot()

    def commit_state(self, states: Sequence[StreamState]) -> None:
        with self.lock:
            if self.external is not None:
                self.external.commit(states)
                return
            self.log.apply(json.loads(CommitLog.document(states)))
            self._snapshot()

    def prepare(self) -> None:
        self.prepared = True

    # -- runs ------------------------------------------------------------------------------------
    def begin_run(self, run_row: dict[str, Any], reset: Sequence[StreamState] = ()) -> None:
        from pyiceberg.expressions import And, EqualTo

        key = (run_row["entity"], run_row["project"], run_row["run_id"])
        with self.lock:
            self._runs[key] = run_row
            if not reset:
                return
            predicate = And(*(EqualTo(c, v) for c, v in zip(RUN_COLUMNS, key, strict=True)))
            doc = CommitLog.document(reset)
            deleted = False
            for name in (HISTORY_TABLE, LONG_TABLE):
                table = self._table(name)
                if table is None:
                    continue
                table.delete(predicate, snapshot_properties={META_KEY: doc})
                deleted = True
                self._committed(name, reset, {})
            if not deleted:
                self.commit_state(reset)
            elif self.external is None:
                self._snapshot()

    # -- chunks ----------------------------------------------------------------------------------
    def write_chunk(
        self,
        stream: str,
        table: pa.Table,
        state: StreamState,
        *,
        lo: float,
        hi: float,
        stop: threading.Event | None = None,
        fresh: bool = False,
    ) -> int:
        """Merge one chunk and carry its watermark in the snapshot summary: one commit."""
        del lo, hi
        name = target_table(stream, self.layout)
        keys = merge_keys(stream, self.layout)
        with self.lock:
            data, new_names = self._shape(name, stream, table)
            column_map = {name: new_names} if new_names else {}
            doc = CommitLog.document([state], column_map)
            if data.num_rows == 0:
                self.log.apply(json.loads(doc))
                self._snapshot()
                return 0
            self._write(name, data, keys, fresh and self.external is None, doc, stop)
            crash_point("after-commit")
            self._committed(name, [state], column_map)
        return table.num_rows

    def _shape(self, name: str, stream: str, table: pa.Table) -> tuple[pa.Table, dict[str, str]]:
        mapped = column_keys(table)
        if name == LONG_TABLE:
            return _optional_table(plain(to_long(table, mapped))), {}
        fixed = [*RUN_COLUMNS, TIMESTAMP_COLUMN if stream == EVENTS else STEP_COLUMN, EXTRA_COLUMN]
        existing = self._table(name)
        types = {f.name: f.type for f in _small_types(existing.schema().as_arrow().empty_table()).schema} if existing is not None else {}
        known = self.log.column_map.get(name, {})
        by_key = {k: c for c, k in known.items()}
        rename = {c: by_key[mapped.get(c, c)] for c in table.column_names if mapped.get(c, c) in by_key and c not in fixed}
        if rename:
            table = table.rename_columns([rename.get(n, n) for n in table.column_names])
            mapped = {rename.get(c, c): k for c, k in mapped.items()}
            mapped.update({new: known[new] for new in rename.values()})
        table, mapped = safe_names(table, mapped, list(types), fixed)
        data = _optional_table(plain(conform(table, types)))
        return data, {c: k for c, k in mapped.items() if c in data.column_names and known.get(c) != k}

    def _write(self, name: str, data: pa.Table, keys: list[str], append: bool, doc: str, stop: threading.Event | None) -> None:
        from pyiceberg.expressions import (
            AlwaysTrue,
            And,
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
            parts = [EqualTo(c, run[c]) for c in RUN_COLUMNS]
            parts += [GreaterThanOrEqual(order, pc.min(column).as_py()), LessThanOrEqual(order, pc.max(column).as_py())]
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
        crash_point("before-commit")
        if stop is not None and stop.is_set():
            raise Interrupted("interrupted before the chunk was committed")
        tx.commit_transaction()

    # -- end -------------------------------------------------------------------------------------
    def finish(self) -> None:
        from ...runs_table import RUNS_SCHEMA

        with self.lock:
            if self._runs:
                rows = pa.Table.from_pylist([self._runs[k] for k in sorted(self._runs)], schema=RUNS_SCHEMA)
                self._write(RUNS_TABLE, _optional_table(rows), list(RUN_COLUMNS), False, CommitLog.document([]), None)
                self._committed(RUNS_TABLE, [], {})
            if self._dirty and self.external is None:
                self._snapshot()

    def close(self) -> None:
        with self.lock:
            if self._dirty and self.external is None and not self.read_only:
                try:
                    self._snapshot()
                except Exception:  # noqa: BLE001 - never mask the export's own error
                    pass
            if self._catalog is not None:
                engine = getattr(self._catalog, "engine", None)
                if engine is not None:
                    engine.dispose()
                self._catalog = None
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None
                if self.created and not self.prepared:
                    (self.path / LOCK_FILE).unlink(missing_ok=True)
                    try:
                        self.path.rmdir()
                    except OSError:
                        pass


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
