"""What the lakehouse destinations (`connector.export.sinks.delta`, `connector.export.sinks.iceberg`)
share: the states rebuilt from commit metadata (`CommitLog`), the ``_wandb_export_state`` snapshot
and its replay, the destination lock, the column naming rules, and `LakeSink`, the sink logic written
once over a few engine hooks (how a table is opened, read, merged and committed).

**Exactly once.** Each chunk is one commit of the engine that carries the chunk's new watermark in
its metadata (``wandb.export``: the states and new column names). ``_wandb_export_state`` is only a
snapshot, rewritten every `SNAPSHOT_EVERY` commits and at the end, recording the table versions it
covers: opening the destination reads the snapshot, then replays the ``wandb.export`` metadata of
every commit made after those versions.

**Full refresh** (``--full-refresh``): the runs this export lists are exported into staging tables
(``<table>__refresh``, the exporter's own: dropped and rebuilt by every full refresh), with their
states kept in memory. At the end the staged runs table and ``_wandb_export_state__refresh`` (the
new states, and in its commit metadata the list of refreshed runs: the **journal**) are written,
then each live table gets **one commit** that deletes the rows of exactly those runs and appends
their staged rows (Delta: an overwrite with a predicate on those runs; Iceberg: a delete and appends
in one transaction). Each such commit carries the new states and ``replace_runs`` (the states of
those runs, every stream and key set, are replaced, as DuckDB's swap does). Then the state snapshot
is rewritten, the journal dropped, and the staging tables dropped. A crash before the journal
leaves the live tables untouched (a later full refresh starts over); a crash after it is completed
when the destination is next opened for writing (each table's swap is idempotent: delete those
runs, append the staged rows again), and a read-only open reports the states as they will be.
Rows of other runs, projects and commands are never touched.

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
from ...errors import DestinationError
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
#: The suffix of the staging tables of a full refresh.
REFRESH_SUFFIX = "__refresh"
LOCK_FILE = FolderLock.NAME
DATA_TABLES = (HISTORY_TABLE, LONG_TABLE, EVENTS_TABLE)
#: The tables a full refresh swaps, in order (DuckDB's swap replaces the same ones).
REFRESHED_TABLES = (*DATA_TABLES, RUNS_TABLE)
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
        """Fold in one document: ``replace_runs`` (a full refresh: forget every state of those runs)
        first, then ``states`` and ``column_map``.

        >>> from connector.export.checkpoint import StateKey, StreamState
        >>> log, k = CommitLog(), StateKey("e", "p", "r", "history", "*")
        >>> k1 = StateKey("e", "p", "r", "history", "k1")
        >>> log.apply({"states": [StreamState(k, watermark=9).to_json(), StreamState(k1, watermark=5).to_json()]})
        >>> log.apply({"replace_runs": [["e", "p", "r"]], "states": [StreamState(k, watermark=3).to_json()]})
        >>> [(s.key.key_set, s.watermark) for s in log.states.values()]
        [('*', 3)]
        """
        replaced = {tuple(r) for r in doc.get("replace_runs") or []}
        if replaced:
            self.states = {k: s for k, s in self.states.items() if (k.entity, k.project, k.run_id) not in replaced}
        for obj in doc.get("states") or []:
            state = StreamState.from_json(obj)
            self.states[state.key] = state
        for table, names in (doc.get("column_map") or {}).items():
            known = self.column_map.setdefault(table, {})
            for column, key in names.items():
                known.setdefault(column, key)

    @staticmethod
    def document(
        states: Sequence[StreamState], column_map: dict[str, dict[str, str]] | None = None,
        replace_runs: Sequence[Sequence[str]] | None = None,
    ) -> str:  # fmt: skip
        doc: dict[str, Any] = {"states": [s.to_json() for s in states], "column_map": column_map or {}}
        if replace_runs:
            doc["replace_runs"] = [list(r) for r in replace_runs]
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))


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
    - for ``--full-refresh``: `_swap_table` (one commit replacing some runs' rows by the staged
      ones) and `_drop` (drop a staging table);
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
        self.display = target
        self.layout = layout
        self.checkpoint = checkpoint
        self.read_only = read_only
        self.full_refresh = full_refresh
        self.suffix = REFRESH_SUFFIX if full_refresh else ""
        self.external = JsonStateStore(checkpoint) if checkpoint else None
        self.lock = threading.RLock()
        self.prepared = False
        self.created = False
        self._folder_lock: FolderLock | None = None
        self._runs: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._since_snapshot = 0
        self._dirty = False
        self.log = CommitLog()
        self.refresh_log = CommitLog()  # a full refresh: the staged states, swapped in at the end
        self.versions: dict[str, int] = {}
        self._open(target)
        self._pending_refresh()

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

    def _write_snapshot(self, rows: list[dict[str, Any]], doc: str, name: str = STATE_TABLE) -> None:
        raise NotImplementedError

    def _run_filter(self, key: tuple[str, str, str]) -> Any:
        raise NotImplementedError

    def _delete(self, table: Any, where: Any, doc: str) -> None:
        raise NotImplementedError

    def _commit_chunk(self, name: str, data: pa.Table, keys: list[str], append: bool, doc: str, stop: threading.Event | None) -> bool:
        """Commit one chunk's rows with `doc`; False when there was nothing to commit."""
        raise NotImplementedError

    def _write_runs(self, rows: pa.Table, name: str = RUNS_TABLE) -> None:
        raise NotImplementedError

    def _swap_table(self, name: str, runs: Sequence[tuple[str, str, str]], doc: str) -> bool:
        """One commit (carrying `doc`) of live table `name`: delete the rows of `runs`, append the
        rows of its staging table; False when neither table exists (nothing committed)."""
        raise NotImplementedError

    def _drop(self, name: str) -> None:
        """Drop table `name` (a staging table) and its files, if it exists."""
        raise NotImplementedError

    def _stored(self, data: pa.Table) -> pa.Table:
        return data

    def _release(self) -> None:
        pass

    # -- names -----------------------------------------------------------------------------------
    def name(self, base: str) -> str:
        """The table this export writes for `base` (a full refresh: its staging table)."""
        return base + self.suffix

    @property
    def work(self) -> CommitLog:
        """The log that chunks commit into (a full refresh: `refresh_log`)."""
        return self.refresh_log if self.suffix else self.log

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
        rows = self._state_table_rows(self.log.states)
        doc = json.dumps({"versions": self.versions, "column_map": self.log.column_map}, sort_keys=True)
        self._write_snapshot(rows, doc)
        self._since_snapshot = 0
        self._dirty = False

    @staticmethod
    def _state_table_rows(states: dict[StateKey, StreamState]) -> list[dict[str, Any]]:
        return [
            {"entity": k.entity, "project": k.project, "run_id": k.run_id, "stream": k.stream,
             "key_set": k.key_set, "state": json.dumps(s.to_json(), sort_keys=True)}
            for k, s in sorted(states.items())
        ]  # fmt: skip

    def _note_version(self, name: str) -> None:
        version = self._version(name)
        if version is not None:
            self.versions[name] = version

    def _committed(self, name: str, states: Sequence[StreamState], column_map: dict[str, dict[str, str]]) -> None:
        """Bookkeeping after a data commit to table `name` that carried `states`."""
        if self.suffix:  # a staging table: the states wait for the swap
            self.refresh_log.apply(json.loads(CommitLog.document(states, column_map)))
            return
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
            if self.suffix:
                self.refresh_log.apply(json.loads(CommitLog.document(states)))
                return
            if self.external is not None:
                self.external.commit(states)
                return
            self.log.apply(json.loads(CommitLog.document(states)))
            self._snapshot()

    def prepare(self) -> None:
        if self.suffix and not self.read_only:
            # the staging area is the exporter's own: a refresh starts clean (a pending journal
            # was completed when the destination was opened; it goes first)
            self._drop(self.name(STATE_TABLE))
            for base in REFRESHED_TABLES:
                self._drop(self.name(base))
            self.refresh_log = CommitLog()
            self.refresh_log.apply({"column_map": self.log.column_map})  # keep the live names
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
            for base in (HISTORY_TABLE, LONG_TABLE):  # each delete commit carries the reset states
                name = self.name(base)
                table = self._table(name)
                if table is None:
                    continue
                self._delete(table, where, doc)
                deleted = True
                self._committed(name, reset, {})
            if not deleted:
                self.commit_state(reset)
            elif self.external is None and not self.suffix:
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
        base = target_table(stream, self.layout)
        name = self.name(base)
        keys = merge_keys(stream, self.layout)
        with self.lock:
            data, new_names = self._shape(base, stream, table)
            column_map = {base: new_names} if new_names else {}
            doc = CommitLog.document([state], column_map)
            if not self._commit_chunk(name, data, keys, fresh and self.external is None, doc, stop):
                if self.suffix:
                    self.refresh_log.apply(json.loads(doc))
                    return 0
                self.log.apply(json.loads(doc))
                self._snapshot()
                return 0
            crash_point("after-commit")
            self._committed(name, [state], column_map)
        return table.num_rows

    def _shape(self, base: str, stream: str, table: pa.Table) -> tuple[pa.Table, dict[str, str]]:
        """The chunk as table `base` stores it, and the new ``{column: key}`` names it records.

        A full refresh writes into the staging table with the live table's names and types (the
        swap appends into the live table), plus those its staging table added.
        """
        mapped = column_keys(table)
        if base == LONG_TABLE:
            return self._stored(plain(to_long(table, mapped))), {}
        fixed = [*RUN_COLUMNS, TIMESTAMP_COLUMN if stream == EVENTS else STEP_COLUMN, EXTRA_COLUMN]
        types = self._types(base)
        if self.suffix:
            types = {**self._types(self.name(base)), **types}
        known = self.work.column_map.get(base, {})
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

    # -- full refresh ----------------------------------------------------------------------------
    def _pending_refresh(self) -> None:
        """A full refresh that wrote its journal but did not finish swapping: complete it (or,
        read-only, report the states as they will be)."""
        journal = self._table(STATE_TABLE + REFRESH_SUFFIX)
        if journal is None:
            return
        try:
            meta = json.loads(self._snapshot_doc(journal) or "{}")
            refresh = meta.get("refresh")
            if not refresh:
                return  # staging tables of a refresh that never finished: the next one drops them
            states = [StreamState.from_json(json.loads(row["state"])) for row in self._state_rows(journal)]
            runs = [(str(e), str(p), str(r)) for e, p, r in refresh["runs"]]
            column_map = meta.get("column_map") or {}
        except (ValueError, KeyError, TypeError) as exc:
            raise self._unreadable(exc) from None
        if self.read_only:
            self.log.apply(json.loads(CommitLog.document(states, column_map, runs)))
            return
        self._complete_refresh(runs, states, column_map, refresh.get("checkpoint"))

    def _finish_refresh(self) -> None:
        """Write the staged runs table and the journal, then swap (see the module docstring)."""
        from ...runs_table import RUNS_SCHEMA

        runs = sorted(self._runs)
        if runs:
            rows = pa.Table.from_pylist([self._runs[k] for k in runs], schema=RUNS_SCHEMA)
            self._write_runs(plain(rows), self.name(RUNS_TABLE))
        column_map = self.refresh_log.column_map
        doc = json.dumps(
            {"refresh": {"runs": [list(r) for r in runs], "checkpoint": self.checkpoint}, "column_map": column_map},
            sort_keys=True,
        )  # fmt: skip
        self._write_snapshot(self._state_table_rows(self.refresh_log.states), doc, self.name(STATE_TABLE))
        crash_point("before-swap")
        self._complete_refresh(runs, list(self.refresh_log.states.values()), column_map, self.checkpoint)

    def _complete_refresh(
        self, runs: Sequence[tuple[str, str, str]], states: Sequence[StreamState],
        column_map: dict[str, dict[str, str]], checkpoint: str | None,
    ) -> None:  # fmt: skip
        """Swap the staged runs in, table by table (idempotent), then the states; drop the staging."""
        doc = CommitLog.document(states, column_map, runs)
        if runs:
            for base in REFRESHED_TABLES:
                if self._swap_table(base, runs, doc):
                    self._note_version(base)
                crash_point("after-swap-table")
        self.log.apply(json.loads(doc))
        if checkpoint:
            _swap_checkpoint_file(checkpoint, set(runs), states)
        else:
            self._snapshot()
        self._drop(STATE_TABLE + REFRESH_SUFFIX)  # the journal first: staging tables alone are leftovers
        for base in REFRESHED_TABLES:
            self._drop(base + REFRESH_SUFFIX)

    # -- end -------------------------------------------------------------------------------------
    def finish(self) -> None:
        from ...runs_table import RUNS_SCHEMA

        with self.lock:
            if self.suffix:
                self._finish_refresh()
                return
            if self._runs:
                rows = pa.Table.from_pylist([self._runs[k] for k in sorted(self._runs)], schema=RUNS_SCHEMA)
                self._write_runs(plain(rows))
                self._note_version(RUNS_TABLE)
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
            self._release()
            if self._folder_lock is not None:  # a folder made for the lock, never written: ours
                self._folder_lock.release(remove_folder=self.created and not self.prepared)
                self._folder_lock = None


def _swap_checkpoint_file(path: str, runs: set[tuple[str, str, str]], states: Sequence[StreamState]) -> None:
    """Replace the states of `runs` in the ``--checkpoint`` file by `states` (atomically)."""
    import os

    live = JsonStateStore(path)
    kept = [s for k, s in live.load().items() if (k.entity, k.project, k.run_id) not in runs]
    fresh = JsonStateStore(path + ".swap")
    Path(fresh.path).unlink(missing_ok=True)
    fresh.commit([*kept, *states], meta=dict(live.meta))
    os.replace(fresh.path, path)


__all__ = [
    "LakeSink", "CommitLog", "check_stop", "merge_keys", "plain", "safe_names", "target_table",
    "META_KEY", "LOCK_FILE", "REFRESH_SUFFIX", "SNAPSHOT_EVERY", "STATE_SCHEMA",
]  # fmt: skip
