"""What the lakehouse destinations (`connector.export.sinks.delta`, `connector.export.sinks.iceberg`)
share: the states rebuilt from commit metadata (`CommitLog`), the ``_wandb_export_state`` snapshot
and its replay, the destination lock, the column naming rules, and `LakeSink`, the sink logic written
once over a few engine hooks (how a table is opened, read, merged and committed).

**Exactly once.** Each chunk is one commit of the engine that carries the chunk's new watermark in
its metadata (``wandb.export``: the states and new column names). ``_wandb_export_state`` is only a
snapshot, rewritten every `SNAPSHOT_EVERY` commits and at the end, recording the table versions it
covers: opening the destination reads the snapshot, then replays the ``wandb.export`` metadata of
every commit made after those versions.

Nothing here imports an engine: the modules import without their extras.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from ...core.arrow import EXTRA_COLUMN, STEP_COLUMN
from ...core.columns import column_for_key, fold_collisions
from ...errors import ConfigurationError, DestinationError
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
from .dest import FolderLock, check_folder

META_KEY = "wandb.export"
LOCK_FILE = FolderLock.NAME
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


def check_stop(stop: threading.Event | None) -> None:
    """The last moment before a commit: the crash point, then the interruption check."""
    crash_point("before-commit")
    if stop is not None and stop.is_set():
        raise Interrupted("interrupted before the chunk was committed")


class LakeSink:
    """The sink protocol over a folder of lakehouse tables; subclasses supply the engine hooks:

    - `_open` (the end of ``__init__``: the engine, the folder, `_load`);
    - `_table` (a table, or None when it does not exist yet), `_types` (its column types),
      `_version` (its current version, or None);
    - `_state_rows` and `_snapshot_doc` (read the state snapshot), `_commits_since` (the
      ``wandb.export`` documents of a table's commits after a version), `_write_snapshot`;
    - `_run_filter` and `_delete` (a run's rows), `_commit_chunk` (one chunk's commit),
      `_write_runs` (the runs table at the end);
    - optionally `_stored` (the chunk as the table stores it) and `_release` (at close).
    """

    #: The engine's name in messages.
    ENGINE = ""

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
                f"--full-refresh is not supported for {self.ENGINE} destinations yet: export into a new "
                "destination, or delete the runs' rows and checkpoints first"
            )
        self.display = target
        self.layout = layout
        self.checkpoint = checkpoint
        self.read_only = read_only
        self.external = JsonStateStore(checkpoint) if checkpoint else None
        self.lock = threading.RLock()
        self.prepared = False
        self.created = False
        self._folder_lock: FolderLock | None = None
        self._runs: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._since_snapshot = 0
        self._dirty = False
        self.log = CommitLog()
        self.versions: dict[str, int] = {}
        self._open(target)

    # -- engine hooks ----------------------------------------------------------------------------
    def _open(self, target: str) -> None:
        """Open the destination (the engine, its folder and lock) and read its states."""
        raise NotImplementedError

    def _table(self, name: str) -> Any:
        raise NotImplementedError

    def _types(self, name: str) -> dict[str, pa.DataType]:
        raise NotImplementedError

    def _version(self, name: str) -> int | None:
        raise NotImplementedError

    def _state_rows(self, snapshot: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _snapshot_doc(self, snapshot: Any) -> str | None:
        raise NotImplementedError

    def _commits_since(self, table: Any, since: int) -> tuple[list[str], int]:
        raise NotImplementedError

    def _write_snapshot(self, rows: list[dict[str, Any]], doc: str) -> None:
        raise NotImplementedError

    def _run_filter(self, key: tuple[str, str, str]) -> Any:
        raise NotImplementedError

    def _delete(self, table: Any, where: Any, doc: str) -> None:
        raise NotImplementedError

    def _commit_chunk(self, name: str, data: pa.Table, keys: list[str], append: bool, doc: str, stop: threading.Event | None) -> bool:
        """Commit one chunk's rows with `doc`; False when there was nothing to commit."""
        raise NotImplementedError

    def _write_runs(self, rows: pa.Table) -> None:
        raise NotImplementedError

    def _stored(self, data: pa.Table) -> pa.Table:
        return data

    def _release(self) -> None:
        pass

    # -- folder and lock -------------------------------------------------------------------------
    def _open_folder(self, path: Path, is_file: str) -> None:
        """Check a local destination folder, then lock it (unless read-only)."""
        self.created = not check_folder(path, is_file, writable=not self.read_only)
        if not self.read_only:
            self._folder_lock = FolderLock(path)

    # -- states ----------------------------------------------------------------------------------
    def _load(self) -> None:
        """Read the snapshot, then replay the commits made after it."""
        try:
            self._rebuild(self._table(STATE_TABLE))
        except (ValueError, KeyError, TypeError) as exc:
            raise self._unreadable(exc) from None

    def _unreadable(self, exc: Exception) -> DestinationError:
        return DestinationError(
            f"{self.display}: the export state in the {self.ENGINE} tables is unreadable ({type(exc).__name__}: {exc})"
        )

    def _rebuild(self, snapshot: Any) -> None:
        log = CommitLog()
        versions: dict[str, int] = {}
        if snapshot is not None:
            for row in self._state_rows(snapshot):
                state = StreamState.from_json(json.loads(row["state"]))
                log.states[state.key] = state
            meta = json.loads(self._snapshot_doc(snapshot) or "{}")
            versions = {k: int(v) for k, v in (meta.get("versions") or {}).items()}
            log.apply({"column_map": meta.get("column_map") or {}})
        for name in (*DATA_TABLES, RUNS_TABLE):
            table = self._table(name)
            if table is None:
                continue
            docs, versions[name] = self._commits_since(table, versions.get(name, -1))
            for doc in docs:
                log.apply(json.loads(doc))
                self._since_snapshot += 1
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
        self._write_snapshot(rows, doc)
        self._since_snapshot = 0
        self._dirty = False

    def _note_version(self, name: str) -> None:
        version = self._version(name)
        if version is not None:
            self.versions[name] = version

    def _committed(self, name: str, states: Sequence[StreamState], column_map: dict[str, dict[str, str]]) -> None:
        """Bookkeeping after a data commit to table `name` that carried `states`."""
        self.log.apply(json.loads(CommitLog.document(states, column_map)))
        self._note_version(name)
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
            where = self._run_filter(key)
            doc = CommitLog.document(reset)
            deleted = False
            for name in (HISTORY_TABLE, LONG_TABLE):  # each delete commit carries the reset states
                table = self._table(name)
                if table is None:
                    continue
                self._delete(table, where, doc)
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
            column_map = {name: new_names} if new_names else {}
            doc = CommitLog.document([state], column_map)
            if not self._commit_chunk(name, data, keys, fresh and self.external is None, doc, stop):
                self.log.apply(json.loads(doc))
                self._snapshot()
                return 0
            crash_point("after-commit")
            self._committed(name, [state], column_map)
        return table.num_rows

    def _shape(self, name: str, stream: str, table: pa.Table) -> tuple[pa.Table, dict[str, str]]:
        """The chunk as the table stores it, and the new ``{column: key}`` names it records."""
        mapped = column_keys(table)
        if name == LONG_TABLE:
            return self._stored(plain(to_long(table, mapped))), {}
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
        data = self._stored(plain(conform(table, types)))
        new_names = {c: k for c, k in mapped.items() if c in data.column_names and known.get(c) != k}
        return data, new_names

    # -- end -------------------------------------------------------------------------------------
    def finish(self) -> None:
        from ...runs_table import RUNS_SCHEMA

        with self.lock:
            if self._runs:
                rows = pa.Table.from_pylist([self._runs[k] for k in sorted(self._runs)], schema=RUNS_SCHEMA)
                self._write_runs(rows)
            if self._dirty and self.external is None:
                self._snapshot()

    def close(self) -> None:
        with self.lock:
            if self._dirty and self.external is None and not self.read_only:
                try:
                    self._snapshot()  # only an optimisation: the commits since are replayed anyway
                except Exception:  # noqa: BLE001 - never mask the export's own error
                    pass
            self._release()
            if self._folder_lock is not None:  # a folder made for the lock, never written: ours
                self._folder_lock.release(remove_folder=self.created and not self.prepared)
                self._folder_lock = None


__all__ = [
    "LakeSink", "CommitLog", "check_stop", "merge_keys", "plain", "safe_names", "target_table",
    "META_KEY", "LOCK_FILE", "SNAPSHOT_EVERY", "STATE_SCHEMA",
]  # fmt: skip
