"""Apache Iceberg destination (``--to iceberg://PATH[?namespace=NS]``, or with the warehouse on S3
``--to iceberg+s3://BUCKET/PREFIX?catalog=LOCAL_FILE[&namespace=NS]``), through `pyiceberg`.

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

**A warehouse on S3** (``iceberg+s3://BUCKET/PREFIX?catalog=FILE``, or ``iceberg://s3://...``):
the data and metadata files go to ``s3://BUCKET/PREFIX/NS.db/<table>/``, the SQLite catalog stays in
the local file ``FILE`` (required: it *is* the destination's identity — the tables exist only
through it; keep it, back it up, give every export of that warehouse the same one). An Iceberg
commit is the catalog's compare-and-swap of the table's metadata pointer, so files written before
a crash are never visible; the catalog file is locked (``FILE.lock``) for one export at a time, and
its namespace records its warehouse (a catalog given with another warehouse is refused). S3
settings come from the usual AWS environment: ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) and
``AWS_REGION`` (or ``AWS_DEFAULT_REGION``) become pyiceberg's ``s3.endpoint`` / ``s3.region``;
credentials are read by pyarrow's S3 client from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``
/ ``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` or the instance role, never by this module. From Python,
``storage_options`` (pyiceberg FileIO properties, e.g. ``{"s3.endpoint": ...}``) override them.

**Full refresh** (`connector.export.sinks.lake`): the runs go to the ``<table>__refresh`` tables of
the namespace; each live table is then replaced for exactly those runs by **one** transaction (a
delete filtered on those runs, then appends of the staged rows, streamed in batches), carrying the
new states. Staging tables are dropped with their files (``purge_table``) afterwards.

Not supported: a catalog other than SQLite, a warehouse on another object store.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pyarrow as pa

from ...errors import ConfigurationError, DestinationError
from ..tables import HISTORY_TABLE, RUN_COLUMNS, RUNS_TABLE, STATE_TABLE
from .dest import FolderLock, writable_place
from .lake import META_KEY, REFRESH_SUFFIX, STATE_SCHEMA, CommitLog, LakeSink, check_stop

CATALOG_NAME = "wandb_history"
CATALOG_FILE = "catalog.db"
DEFAULT_NAMESPACE = "wandb"
#: Staged rows per append of a full refresh's swap (all of them in one transaction).
SWAP_BATCH_ROWS = 500_000


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


@dataclass(frozen=True)
class Warehouse:
    """A parsed Iceberg target: the warehouse (a local folder or ``s3://BUCKET/PREFIX``), the
    namespace and the SQLite catalog file."""

    location: str
    namespace: str
    catalog: Path

    @property
    def remote(self) -> bool:
        return "://" in self.location


def parse_target(target: str) -> Warehouse:
    """``PATH[?namespace=NS][&catalog=FILE]`` or ``s3://BUCKET/PREFIX?catalog=FILE[&namespace=NS]``.

    >>> w = parse_target("s3://lake/wh/?catalog=/var/lib/wh.db&namespace=ml")
    >>> w.location, w.namespace, str(w.catalog), w.remote
    ('s3://lake/wh', 'ml', '/var/lib/wh.db', True)
    >>> str(parse_target("/wh").catalog)
    '/wh/catalog.db'
    """
    path, _, query = target.partition("?")
    params = parse_qs(query)
    unknown = set(params) - {"namespace", "catalog"}
    if unknown:
        raise ConfigurationError(f"iceberg:// accepts only ?namespace=...&catalog=..., got {sorted(unknown)}")
    namespace = (params.get("namespace") or [DEFAULT_NAMESPACE])[0]
    catalog: str | None = (params.get("catalog") or [""])[0] or None
    if "://" in path:
        scheme = path.split("://", 1)[0].lower()
        if scheme not in ("s3", "s3a"):
            raise ConfigurationError(f"iceberg:// takes a local folder or an s3:// warehouse, not {scheme}://")
        bucket = path.split("://", 1)[1].strip("/")
        if not bucket:
            raise ConfigurationError("iceberg+s3:// needs a bucket: iceberg+s3://BUCKET/PREFIX?catalog=FILE")
        if not catalog:
            raise ConfigurationError(
                f"--to iceberg+s3://{bucket}: a warehouse on S3 needs its local SQLite catalog file: add "
                "?catalog=/path/to/catalog.db (keep that file: the tables exist only through it)"
            )
        if "://" in catalog:
            raise ConfigurationError(f"?catalog={catalog}: the SQLite catalog is a local file path")
        return Warehouse(f"s3://{bucket}", namespace, Path(catalog).expanduser())
    return Warehouse(path, namespace, Path(catalog).expanduser() if catalog else Path(path) / CATALOG_FILE)


def split_target(target: str) -> tuple[str, str]:
    """(warehouse, namespace) of an Iceberg target (see `parse_target`).

    >>> split_target("/wh?namespace=ml"), split_target("wh")
    (('/wh', 'ml'), ('wh', 'wandb'))
    """
    w = parse_target(target)
    return w.location, w.namespace


def s3_properties(options: dict[str, str] | None = None, environ: Any = None) -> dict[str, str]:
    """pyiceberg FileIO properties for S3 from the AWS environment (endpoint and region; the
    credentials stay with pyarrow's S3 client, which reads them itself), then `options`.

    >>> s3_properties(environ={"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_DEFAULT_REGION": "eu-west-1"})
    {'s3.endpoint': 'http://127.0.0.1:9000', 's3.region': 'eu-west-1'}
    """
    env = os.environ if environ is None else environ
    props: dict[str, str] = {}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        props["s3.endpoint"] = endpoint
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        props["s3.region"] = region
    props.update(options or {})
    return props


def open_catalog(warehouse: str | os.PathLike[str], catalog: Path | None = None, properties: dict[str, str] | None = None) -> Any:
    """The SQLite SQL catalog of a warehouse (created on first use): a local folder (catalog file
    ``catalog.db`` in it by default) or an ``s3://`` location with a local `catalog` file."""
    need_pyiceberg()
    from pyiceberg.catalog.sql import SqlCatalog

    location = os.fspath(warehouse)
    if "://" in location:
        assert catalog is not None, "an object-store warehouse needs a local catalog file"
        file = catalog.expanduser().resolve()
        return SqlCatalog(CATALOG_NAME, uri=f"sqlite:///{file}", warehouse=location, **s3_properties(properties))
    root = Path(location).resolve()
    file = (catalog or root / CATALOG_FILE).expanduser().resolve()
    return SqlCatalog(CATALOG_NAME, uri=f"sqlite:///{file}", warehouse=root.as_uri(), **(properties or {}))


def read_table(target: str | os.PathLike[str], table: str = HISTORY_TABLE, storage_options: dict[str, str] | None = None) -> pa.Table:
    """One exported table as Arrow (strings as ``string``, not ``large_string``); `target` as in
    ``--to iceberg://TARGET`` (a folder, or ``s3://BUCKET/PREFIX?catalog=FILE``).

    >>> import tempfile
    >>> read_table(tempfile.mkdtemp()).num_rows
    0
    """
    w = parse_target(os.fspath(target))
    if not w.catalog.exists():
        return pa.table({})
    catalog = open_catalog(w.location, w.catalog, storage_options)
    try:
        if not catalog.table_exists((w.namespace, table)):
            return pa.table({})
        return _small_types(catalog.load_table((w.namespace, table)).scan().to_arrow())
    finally:
        engine = getattr(catalog, "engine", None)
        if engine is not None:
            engine.dispose()


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

    def __init__(self, target: str, *, storage_options: dict[str, str] | None = None, **options: Any) -> None:
        """`options`: those of `LakeSink` (``layout``, ``full_refresh``, ``checkpoint``, ``read_only``);
        `storage_options`: pyiceberg FileIO properties (S3: over the AWS environment)."""
        self.storage_options = storage_options
        super().__init__(target, **options)

    def _open(self, target: str) -> None:
        need_pyiceberg()
        self.warehouse = parse_target(target)
        self.namespace = self.warehouse.namespace
        self.catalog_file = self.warehouse.catalog
        self._catalog: Any = None
        if not self.warehouse.remote:
            self._open_folder(Path(self.warehouse.location), "an Iceberg warehouse is a folder")
        else:
            self._open_catalog_file()
        if self.catalog_file.exists():
            self._check_namespace()
            self._load()

    def _open_catalog_file(self) -> None:
        """Check the local catalog file of a remote warehouse, then lock it (unless read-only)."""
        file = self.catalog_file
        if file.is_dir():
            raise DestinationError(f"?catalog={file} is a folder: the SQLite catalog is a file (e.g. {file / CATALOG_FILE})")
        self.created = not file.exists()
        if self.created:
            writable_place(file)
        if not self.read_only:
            self._folder_lock = FolderLock(file.parent, name=file.name + ".lock")

    def _namespace_location(self) -> str:
        return f"{self.warehouse.location.rstrip('/')}/{self.namespace}.db"

    def _check_namespace(self) -> None:
        """Refuse a catalog whose namespace lives in another warehouse (a remote one records it)."""
        from pyiceberg.exceptions import NoSuchNamespaceError

        try:
            location = self.catalog.load_namespace_properties(self.namespace).get("location")
        except NoSuchNamespaceError:
            return
        if location and self.warehouse.remote and location.rstrip("/") != self._namespace_location():
            raise DestinationError(
                f"{self.display}: the catalog {self.catalog_file} keeps namespace {self.namespace!r} in "
                f"{location}, not in {self.warehouse.location}: give the catalog of that warehouse"
            )

    # -- tables ----------------------------------------------------------------------------------
    @property
    def catalog(self) -> Any:
        if self._catalog is None:
            w = self.warehouse
            self._catalog = open_catalog(w.location, w.catalog, self.storage_options)
            if not self.read_only:
                props = {"location": self._namespace_location()} if w.remote else {}
                self._catalog.create_namespace_if_not_exists(self.namespace, properties=props)
        return self._catalog

    def _table(self, name: str) -> Any:
        if not self.catalog_file.exists():
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

    def _write_snapshot(self, rows: list[dict[str, Any]], doc: str, name: str = STATE_TABLE) -> None:
        schema = _optional(STATE_SCHEMA)
        data = pa.Table.from_pylist(rows, schema=schema)
        table = self._table(name)
        if table is None:
            table = self.catalog.create_table((self.namespace, name), schema=schema)
        table.overwrite(data, snapshot_properties={META_KEY: doc})

    # -- runs ------------------------------------------------------------------------------------
    def _run_filter(self, key: tuple[str, str, str]) -> Any:
        from pyiceberg.expressions import And, EqualTo

        return And(*(EqualTo(c, v) for c, v in zip(RUN_COLUMNS, key, strict=True)))  # type: ignore[call-arg, arg-type]  # pyiceberg takes (term, literal); mypy sees the pydantic fields

    def _delete(self, table: Any, where: Any, doc: str) -> None:
        table.delete(where, snapshot_properties={META_KEY: doc})

    def _write_runs(self, rows: pa.Table, name: str = RUNS_TABLE) -> None:
        self._write(name, _optional_table(rows), list(RUN_COLUMNS), False, CommitLog.document([]), None)

    # -- full refresh ----------------------------------------------------------------------------
    def _runs_expr(self, runs: Sequence[tuple[str, str, str]]) -> Any:
        """A row filter matching the rows of exactly `runs`."""
        from pyiceberg.expressions import And, BooleanExpression, EqualTo, In, Or

        groups: dict[tuple[str, str], list[str]] = {}
        for entity, project, run_id in runs:
            groups.setdefault((entity, project), []).append(run_id)
        parts: list[BooleanExpression] = [
            And(EqualTo("entity", e), EqualTo("project", p), In("run_id", ids))  # type: ignore[call-arg, arg-type]  # pyiceberg takes (term, literal); mypy sees the pydantic fields
            for (e, p), ids in sorted(groups.items())
        ]
        return parts[0] if len(parts) == 1 else Or(*parts)

    def _swap_table(self, name: str, runs: Sequence[tuple[str, str, str]], doc: str) -> bool:
        live = self._table(name)
        staged = self._table(name + REFRESH_SUFFIX)
        if live is None and staged is None:
            return False
        props = {META_KEY: doc}
        if live is None:
            schema = _optional(_small_types(staged.schema().as_arrow().empty_table()).schema)
            live = self.catalog.create_table((self.namespace, name), schema=schema)
        tx = live.transaction()
        if staged is not None:
            new_columns = [f for f in _small_types(staged.schema().as_arrow().empty_table()).schema
                           if f.name not in live.schema().column_names]  # fmt: skip
            if new_columns:
                with tx.update_schema() as update:
                    update.union_by_name(pa.schema(new_columns))
        full = _small_types(tx.table_metadata.schema().as_arrow().empty_table()).schema
        with warnings.catch_warnings():  # "did not match any records": the runs were not there yet
            warnings.simplefilter("ignore", UserWarning)
            tx.delete(self._runs_expr(runs), snapshot_properties=props)
        if staged is not None:
            pending: list[pa.RecordBatch] = []
            rows = 0
            for batch in staged.scan().to_arrow_batch_reader():
                pending.append(batch)
                rows += batch.num_rows
                if rows >= SWAP_BATCH_ROWS:
                    tx.append(_like(_small_types(pa.Table.from_batches(pending)), full), snapshot_properties=props)
                    pending, rows = [], 0
            if rows:
                tx.append(_like(_small_types(pa.Table.from_batches(pending)), full), snapshot_properties=props)
        tx.commit_transaction()
        return True

    def _drop(self, name: str) -> None:
        if not self.catalog_file.exists():
            return
        ident = (self.namespace, name)
        if not self.catalog.table_exists(ident):
            return
        location = self.catalog.load_table(ident).location()
        self.catalog.purge_table(ident)
        if self.warehouse.remote:  # purge_table deletes the files; S3 keeps pyarrow's folder markers
            from urllib.parse import urlsplit

            from pyiceberg.io.pyarrow import PyArrowFileIO

            parts = urlsplit(location)
            fs = PyArrowFileIO(properties=dict(self.catalog.properties)).fs_by_scheme(parts.scheme, parts.netloc)
            try:
                fs.delete_dir(f"{parts.netloc}{parts.path}")
            except (FileNotFoundError, OSError):
                pass

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


__all__ = ["IcebergSink", "Warehouse", "open_catalog", "parse_target", "read_table", "s3_properties", "split_target", "upsert_rows"]
