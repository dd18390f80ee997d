"""Delta Lake destination (``--to delta://PATH``), through `deltalake` (delta-rs).

``pip install 'wandb-history-connector[delta]'``

A destination is a folder (local, or ``s3://bucket/prefix`` through ``delta+s3://bucket/prefix``)
holding one Delta table per exported table::

    PATH/history/_delta_log/...          wide rows (or history_long/ with --layout long)
    PATH/system_metrics/...              --include-system-metrics
    PATH/runs/...                        one row per run (RUNS_SCHEMA), merged at the end
    PATH/_wandb_export_state/...         a snapshot of the checkpoints (see below)
    PATH/.wandb-export.lock              local folders: one export at a time

**Exactly once.** Each chunk is **one Delta commit**: a ``MERGE`` on ``(entity, project, run_id,
_step)`` (``_timestamp`` for system metrics, plus ``key`` in the long layout; the chunk's columns
replace the target's, the other columns are kept — the DuckDB sink's ``ON CONFLICT DO UPDATE``), or a
plain append when no row of the chunk can exist yet. The chunk's new watermark is in **the same
commit**, in its ``commitInfo`` (``wandb.export``: the states and new column names). Delta has no
multi-table transaction, so ``_wandb_export_state`` is only a snapshot, rewritten every
`SNAPSHOT_EVERY` commits and at the end, recording the table versions it covers: opening the
destination reads the snapshot, then replays the ``wandb.export`` metadata of every commit made
after those versions. A crash (``kill -9``) anywhere leaves either the rows *and* their watermark,
or neither.

**Schema evolution**: a new key adds a column (``merge_schema``); a column never changes type
(values of another type go to ``_extra``, `connector.export.tables.conform`). Columns that differ
only in letter case from an existing one, or whose names Spark's Delta reader refuses (`` ,;{}()=``
and control characters), get the mapped name of `connector.export.tables.column_for_key`, recorded
in the snapshot's ``column_map``.

Reading: ``deltalake.DeltaTable("PATH/history").to_pyarrow_table()``, ``polars.read_delta``,
Spark, DuckDB's ``delta`` extension. Each chunk adds files: run ``DeltaTable.optimize.compact()``
from time to time.

Not supported (refused before anything is written): ``--full-refresh``. On S3 there is no
destination lock: run one export at a time per destination (Delta's own commit protocol still
protects the table). S3 settings come from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_REGION``,
``AWS_ENDPOINT_URL``, ``AWS_ALLOW_HTTP`` for a local server...), as delta-rs reads them.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

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
    column_for_key,
    column_keys,
    conform,
    fold_collisions,
    to_long,
)
from .base import Interrupted
from .dest import writable_place

META_KEY = "wandb.export"
LOCK_FILE = ".wandb-export.lock"
DATA_TABLES = (HISTORY_TABLE, LONG_TABLE, EVENTS_TABLE)
#: Data commits between two snapshots of the state table (the commits in between are replayed).
SNAPSHOT_EVERY = 25
#: Characters Spark's Delta reader refuses in column names without column mapping.
UNSAFE_CHARS = frozenset(" ,;{}()=\n\t")
STATE_SCHEMA = pa.schema(
    [
        pa.field("entity", pa.string(), nullable=False),
        pa.field("project", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("stream", pa.string(), nullable=False),
        pa.field("key_set", pa.string(), nullable=False),
        pa.field("state", pa.string(), nullable=False),
    ]
)


def need_deltalake() -> Any:
    """The `deltalake` module, or an ImportError naming the extra."""
    try:
        import deltalake
    except ImportError as exc:
        raise ImportError(
            "Delta destinations need deltalake: pip install 'wandb-history-connector[delta]'"
        ) from exc
    return deltalake


def is_remote(uri: str) -> bool:
    """True for ``scheme://`` URIs (object stores), False for local paths.

    >>> is_remote("s3://b/p"), is_remote("/tmp/x")
    (True, False)
    """
    return "://" in uri


def table_uri(root: str, table: str) -> str:
    """The URI of one table under the destination root.

    >>> table_uri("s3://b/wh/", "history"), table_uri("/tmp/wh", "runs")
    ('s3://b/wh/history', '/tmp/wh/runs')
    """
    return root.rstrip("/") + "/" + table


def safe_names(table: pa.Table, mapped: dict[str, str], existing: Sequence[str], fixed: Sequence[str]) -> tuple[pa.Table, dict[str, str]]:
    """Rename value columns that a lakehouse table cannot take as they are: names with characters
    Spark refuses (`UNSAFE_CHARS`) and names equal, ignoring case, to another column. Returns the
    table and the updated ``{column: key}`` map.

    >>> t = pa.table({"_step": [1], "a b": [1.0], "Loss": [2.0]})
    >>> safe_names(t, {}, ["_step", "loss"], ["_step"])[0].column_names
    ['_step', 'a_b~7dbde935', 'Loss~12e24a7d']
    """
    renames: dict[str, str] = {}
    for name in table.column_names:
        if name not in fixed and any(c in UNSAFE_CHARS for c in name):
            renamed = column_for_key(mapped.get(name, name), force=True)
            renames[name] = "".join("_" if c in UNSAFE_CHARS else c for c in renamed)
    if renames:
        mapped = {**{c: k for c, k in mapped.items() if c not in renames}, **{new: mapped.get(old, old) for old, new in renames.items()}}
        table = table.rename_columns([renames.get(n, n) for n in table.column_names])
    names = [n for n in table.column_names if n not in existing and n not in fixed]
    folded = fold_collisions(names, mapped, [*fixed, *existing])
    if folded:
        mapped = {**{c: k for c, k in mapped.items() if c not in folded}, **{new: mapped.get(old, old) for old, new in folded.items()}}
        table = table.rename_columns([folded.get(n, n) for n in table.column_names])
    return table, mapped


def plain(table: pa.Table) -> pa.Table:
    """`table` without schema or field metadata."""
    return table.cast(pa.schema([pa.field(f.name, f.type, f.nullable) for f in table.schema]))


def sql_literal(value: Any) -> str:
    """A SQL literal for a predicate.

    >>> sql_literal("it's"), sql_literal(3), sql_literal(1.5)
    ("'it''s'", '3', '1.5')
    """
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, float):
        return repr(value)
    return str(int(value))


def merge_keys(stream: str, layout: str) -> list[str]:
    """The primary key of the table a stream writes into."""
    if stream == EVENTS:
        return [*RUN_COLUMNS, TIMESTAMP_COLUMN]
    return [*RUN_COLUMNS, STEP_COLUMN] + (["key"] if layout == "long" else [])


def target_table(stream: str, layout: str) -> str:
    if stream == EVENTS:
        return EVENTS_TABLE
    return LONG_TABLE if layout == "long" else HISTORY_TABLE


class CommitLog:
    """The states and column names of a lakehouse destination, rebuilt from commit metadata.

    `apply` folds one commit's ``wandb.export`` document in; the caller applies commits in order.
    """

    def __init__(self) -> None:
        self.states: dict[StateKey, StreamState] = {}
        self.column_map: dict[str, dict[str, str]] = {}

    def apply(self, doc: dict[str, Any]) -> None:
        for obj in doc.get("states") or []:
            state = StreamState.from_json(obj)
            self.states[state.key] = state
        for table, names in (doc.get("column_map") or {}).items():
            known = self.column_map.setdefault(table, {})
            for column, key in names.items():
                known.setdefault(column, key)

    @staticmethod
    def document(states: Sequence[StreamState], column_map: dict[str, dict[str, str]] | None = None) -> str:
        return json.dumps(
            {"states": [s.to_json() for s in states], "column_map": column_map or {}},
            sort_keys=True, separators=(",", ":"),
        )  # fmt: skip


class DeltaSink:
    """Export into a folder of Delta tables (see the module docstring)."""

    def __init__(
        self,
        target: str,
        *,
        layout: str,
        full_refresh: bool = False,
        checkpoint: str | None = None,
        read_only: bool = False,
        storage_options: dict[str, str] | None = None,
    ) -> None:
        if full_refresh:
            raise ConfigurationError(
                "--full-refresh is not supported for Delta destinations yet: export into a new "
                "destination, or delete the runs' rows and checkpoints first"
            )
        self.deltalake = need_deltalake()
        self.root = target.rstrip("/") or target
        self.display = target
        self.layout = layout
        self.checkpoint = checkpoint
        self.read_only = read_only
        self.storage_options = storage_options
        self.external = JsonStateStore(checkpoint) if checkpoint else None
        self.lock = threading.RLock()
        self.prepared = False
        self.created = False
        self._lock_file: IO[str] | None = None
        self._runs: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._since_snapshot = 0
        self._dirty = False
        self.log = CommitLog()
        self.versions: dict[str, int] = {}
        if not is_remote(self.root):
            path = Path(self.root)
            if path.exists() and not path.is_dir():
                raise DestinationError(f"{path} is a file: a Delta destination is a folder of tables")
            if not path.exists():
                writable_place(path)
            elif not os.access(path, os.W_OK | os.X_OK) and not read_only:
                raise DestinationError(f"cannot write into {path} (permissions or a read-only mount)")
            self.created = not path.exists()
            if not read_only:
                self._take_lock(path)
        self._load()

    # -- helpers ---------------------------------------------------------------------------------
    def _take_lock(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        fh = open(path / LOCK_FILE, "a+")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise DestinationBusyError(
                f"another export is writing into {path} (its {LOCK_FILE} is locked); wait for it to finish"
            ) from None
        self._lock_file = fh

    def _table(self, name: str) -> Any:
        """The `DeltaTable` `name`, or None when it does not exist yet."""
        uri = table_uri(self.root, name)
        if not is_remote(uri) and not (Path(uri) / "_delta_log").exists():
            return None
        try:
            return self.deltalake.DeltaTable(uri, storage_options=self.storage_options)
        except self.deltalake.exceptions.TableNotFoundError:
            return None

    def _commit_properties(self, doc: str) -> Any:
        return self.deltalake.CommitProperties(custom_metadata={META_KEY: doc})

    # -- states ----------------------------------------------------------------------------------
    def _load(self) -> None:
        """Read the snapshot, then replay the commits made after it."""
        log = CommitLog()
        versions: dict[str, int] = {}
        snapshot = self._table(STATE_TABLE)
        try:
            if snapshot is not None:
                for row in snapshot.to_pyarrow_table().to_pylist():
                    state = StreamState.from_json(json.loads(row["state"]))
                    log.states[state.key] = state
                history = snapshot.history(limit=1)
                meta = json.loads(history[0].get(META_KEY) or "{}") if history else {}
                versions = {k: int(v) for k, v in (meta.get("versions") or {}).items()}
                log.apply({"column_map": meta.get("column_map") or {}})
            for name in (*DATA_TABLES, RUNS_TABLE):
                table = self._table(name)
                if table is None:
                    continue
                current = table.version()
                since = versions.get(name, -1)
                if current > since:
                    commits = sorted(table.history(limit=current - since), key=lambda c: c.get("version", 0))
                    for commit in commits:
                        if int(commit.get("version", -1)) > since and commit.get(META_KEY):
                            log.apply(json.loads(commit[META_KEY]))
                            self._since_snapshot += 1
                versions[name] = current
        except (ValueError, KeyError, TypeError) as exc:
            raise DestinationError(
                f"{self.display}: the export state in the Delta tables is unreadable ({type(exc).__name__}: {exc})"
            ) from None
        self.log = log
        self.versions = versions

    def load_states(self) -> dict[StateKey, StreamState]:
        if self.external is not None:
            return self.external.load()
        return dict(self.log.states)

    def _snapshot(self) -> None:
        """Rewrite ``_wandb_export_state`` with every state and the table versions it covers."""
        if self.read_only:
            return
        rows = [
            {"entity": k.entity, "project": k.project, "run_id": k.run_id, "stream": k.stream,
             "key_set": k.key_set, "state": json.dumps(s.to_json(), sort_keys=True)}
            for k, s in sorted(self.log.states.items())
        ]  # fmt: skip
        doc = json.dumps({"versions": self.versions, "column_map": self.log.column_map}, sort_keys=True)
        self.deltalake.write_deltalake(
            table_uri(self.root, STATE_TABLE), pa.Table.from_pylist(rows, schema=STATE_SCHEMA),
            mode="overwrite", schema_mode="overwrite", storage_options=self.storage_options,
            commit_properties=self._commit_properties(doc),
        )  # fmt: skip
        self._since_snapshot = 0
        self._dirty = False

    def _committed(self, table: str, states: Sequence[StreamState], column_map: dict[str, dict[str, str]]) -> None:
        """Bookkeeping after a data commit to `table` that carried `states`."""
        self.log.apply(json.loads(CommitLog.document(states, column_map)))
        current = self._table(table)
        if current is not None:
            self.versions[table] = current.version()
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
        key = (run_row["entity"], run_row["project"], run_row["run_id"])
        with self.lock:
            self._runs[key] = run_row
            if not reset:
                return
            predicate = " AND ".join(f"{c} = {sql_literal(v)}" for c, v in zip(RUN_COLUMNS, key, strict=True))
            doc = CommitLog.document(reset)
            deleted = False
            for name in (HISTORY_TABLE, LONG_TABLE):  # each delete commit carries the reset states
                table = self._table(name)
                if table is None:
                    continue
                table.delete(predicate, commit_properties=self._commit_properties(doc))
                deleted = True
                self._committed(name, reset, {})
            if not deleted:
                self.commit_state(reset)
            elif self.external is None:
                self._snapshot()  # both tables are clean now: the states no longer depend on a replay

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
        """Merge (or append) one chunk with its watermark in the commit's metadata: one commit."""
        del lo, hi
        name = target_table(stream, self.layout)
        keys = merge_keys(stream, self.layout)
        with self.lock:
            data, new_names = self._shape(name, stream, table)
            doc = CommitLog.document([state], {name: new_names} if new_names else {})
            crash_point("before-commit")
            if stop is not None and stop.is_set():
                raise Interrupted("interrupted before the chunk was committed")
            if data.num_rows:
                self._write(name, data, keys, fresh and self.external is None, doc)
            else:
                self.log.apply(json.loads(doc))
                self._snapshot()
                return 0
            crash_point("after-commit")
            self._committed(name, [state], {name: new_names} if new_names else {})
        return table.num_rows

    def _shape(self, name: str, stream: str, table: pa.Table) -> tuple[pa.Table, dict[str, str]]:
        """The chunk as the table stores it, and the new ``{column: key}`` names it records."""
        mapped = column_keys(table)
        if name == LONG_TABLE:
            return plain(to_long(table, mapped)), {}
        fixed = [*RUN_COLUMNS, TIMESTAMP_COLUMN if stream == EVENTS else STEP_COLUMN, EXTRA_COLUMN]
        types = self._types(name)
        known = self.log.column_map.get(name, {})
        by_key = {k: c for c, k in known.items()}
        # a key that already has a mapped column keeps it
        rename = {c: by_key[mapped.get(c, c)] for c in table.column_names if mapped.get(c, c) in by_key and c not in fixed}
        if rename:
            table = table.rename_columns([rename.get(n, n) for n in table.column_names])
            mapped = {rename.get(c, c): k for c, k in mapped.items()}
            mapped.update({new: known[new] for new in rename.values()})
        table, mapped = safe_names(table, mapped, list(types), fixed)
        data = plain(conform(table, types))
        new_names = {c: k for c, k in mapped.items() if c in data.column_names and known.get(c) != k}
        return data, new_names

    def _types(self, name: str) -> dict[str, pa.DataType]:
        table = self._table(name)
        if table is None:
            return {}
        schema = pa.schema(table.schema().to_arrow())
        return {f.name: f.type for f in schema}

    def _write(self, name: str, data: pa.Table, keys: list[str], append: bool, doc: str) -> None:
        uri = table_uri(self.root, name)
        table = self._table(name)
        props = self._commit_properties(doc)
        if table is None or append:
            self.deltalake.write_deltalake(
                uri, data, mode="append", schema_mode="merge", storage_options=self.storage_options,
                commit_properties=props,
            )  # fmt: skip
            return
        on = [f"t.`{k}` = s.`{k}`" for k in keys]
        if len(keys) > len(RUN_COLUMNS):  # one run's chunk: literals let the merge skip files
            import pyarrow.compute as pc

            run = data.slice(0, 1).select(list(RUN_COLUMNS)).to_pylist()[0]
            on += [f"t.`{c}` = {sql_literal(run[c])}" for c in RUN_COLUMNS]
            order = keys[len(RUN_COLUMNS)]
            column = data.column(order)
            on.append(f"t.`{order}` >= {sql_literal(pc.min(column).as_py())}")
            on.append(f"t.`{order}` <= {sql_literal(pc.max(column).as_py())}")
        (
            table.merge(
                data, " AND ".join(on), source_alias="s", target_alias="t", merge_schema=True,
                commit_properties=props,
            )  # fmt: skip
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )

    # -- end -------------------------------------------------------------------------------------
    def finish(self) -> None:
        from ...runs_table import RUNS_SCHEMA

        with self.lock:
            if self._runs:
                rows = pa.Table.from_pylist([self._runs[k] for k in sorted(self._runs)], schema=RUNS_SCHEMA)
                self._write(RUNS_TABLE, plain(rows), list(RUN_COLUMNS), False, CommitLog.document([]))
                current = self._table(RUNS_TABLE)
                if current is not None:
                    self.versions[RUNS_TABLE] = current.version()
                self._dirty = True
            if self._dirty and self.external is None:
                self._snapshot()

    def close(self) -> None:
        with self.lock:
            if self._dirty and self.external is None and not self.read_only:
                try:
                    self._snapshot()  # only an optimisation: the commits since are replayed anyway
                except Exception:  # noqa: BLE001 - never mask the export's own error
                    pass
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None
                if self.created and not self.prepared:  # made here for the lock, never written
                    path = Path(self.root)
                    (path / LOCK_FILE).unlink(missing_ok=True)
                    if path.exists() and not any(path.iterdir()):
                        shutil.rmtree(path, ignore_errors=True)


__all__ = ["DeltaSink", "CommitLog", "need_deltalake", "safe_names", "sql_literal", "table_uri"]
