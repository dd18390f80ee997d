"""What a destination must do, and the transactional logic DuckDB and PostgreSQL share.

A sink receives, per run: `begin_run` (the run's metadata row; optionally a reset of a rewound run),
then `write_chunk` for each step range in order (rows + the new watermark, committed together), and
`commit_state` when only the state changes. `finish` completes the export (a full refresh swaps its
staging tables in); `close` releases connections.

Opening a sink checks the destination and takes its lock, and creates nothing else: `prepare`
creates the tables once the runs are listed, so an export that fails before (an unreachable
server, a typo) leaves no empty destination behind (`close` removes what it created).

**Ownership**: a sink only deletes, replaces or truncates rows of the runs this export exports.
A full refresh (``--full-refresh``) writes those runs into ``<table>__refresh`` staging tables
(dropped and rebuilt by every full refresh: they are the exporter's own) and, in one transaction at
the end, deletes the live rows and checkpoints **of those runs only**, inserts the refreshed ones
(adding columns the live tables lack) and drops the staging tables. Other runs, projects and tables
are never touched.

`SqlSink` implements one chunk as one transaction::

    BEGIN
      ALTER TABLE ... ADD COLUMN (new keys, wide layout)     -- transactional DDL in both engines
      stage the Arrow chunk; INSERT ... ON CONFLICT (pk) DO UPDATE
      upsert the watermark in _wandb_export_state
      [crash point 'before-commit'; a pending Ctrl-C rolls back here]
    COMMIT
      [crash point 'after-commit']

so a crash or Ctrl-C anywhere leaves either the rows *and* their watermark, or neither (exactly once).
With ``--checkpoint PATH`` the watermark goes to a JSON file after the COMMIT instead: a crash
between the two re-exports that chunk, and the merge on the primary key absorbs it (at least once,
no duplicates).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from ...core.arrow import EXTRA_COLUMN, STEP_COLUMN
from ...core.columns import column_for_key, fold_collisions
from ...errors import ConnectorError
from ...sqlfiles import sql_text
from ..checkpoint import EVENTS, STEP_STREAMS, JsonStateStore, StateKey, StreamState, crash_point
from ..tables import (
    COLUMN_MAP_TABLE,
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


class Interrupted(ConnectorError):
    """The export was interrupted (Ctrl-C); the open transaction was rolled back."""


class Sink(Protocol):
    """A destination of an export."""

    display: str  # where it writes, with any password removed

    def load_states(self) -> dict[StateKey, StreamState]: ...

    def prepare(self) -> None: ...

    def begin_run(self, run_row: dict[str, Any], reset: Sequence[StreamState] = ()) -> None: ...

    def write_chunk(
        self, stream: str, table: pa.Table, state: StreamState, *, lo: float, hi: float,
        stop: threading.Event | None = None, fresh: bool = False,
    ) -> int:
        """Write one chunk and its watermark atomically. `fresh`: no row of it can exist yet."""
        ...

    def commit_state(self, states: Sequence[StreamState]) -> None: ...

    def finish(self) -> None: ...

    def close(self) -> None: ...


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def state_params(state: StreamState) -> list[Any]:
    k = state.key
    return [
        k.entity, k.project, k.run_id, k.stream, k.key_set,
        None if state.watermark is None else float(state.watermark),
        state.last_step, state.line_count, state.run_state, state.rewinds, state.deleted_at,
        json.dumps(list(state.keys)) if state.keys is not None else None,
        state.layout, state.chunk_steps, state.min_step, now_iso(),
    ]  # fmt: skip


def state_from_row(row: Sequence[Any]) -> StreamState:
    (entity, project, run_id, stream, key_set, watermark, last_step, line_count, run_state, rewinds,
     deleted_at, keys, layout, chunk_steps, min_step) = row  # fmt: skip
    if watermark is not None and stream in STEP_STREAMS:
        watermark = int(watermark)
    return StreamState(
        StateKey(entity, project, run_id, stream, key_set),
        watermark=watermark,
        last_step=last_step,
        line_count=line_count,
        run_state=run_state,
        rewinds=rewinds or 0,
        deleted_at=deleted_at,
        keys=tuple(json.loads(keys)) if keys else None,
        layout=layout or "wide",
        chunk_steps=chunk_steps,
        min_step=min_step,
    )


def quote(name: str) -> str:
    """A double-quoted SQL identifier.

    >>> quote('train.loss'), quote('a"b')
    ('"train.loss"', '"a""b"')
    """
    return '"' + name.replace('"', '""') + '"'


class SqlSink:
    """Shared logic of the DuckDB and PostgreSQL sinks; subclasses provide the dialect."""

    dialect = "sql"
    types: dict[str, str] = {}
    display = ""
    max_identifier: int | None = None  # bytes (PostgreSQL: 63)
    max_columns: int | None = None  # wide columns before keys spill to the long table
    fold_case = False  # identifiers that differ only in case are one column (DuckDB)

    def __init__(self, *, layout: str, suffix: str = "", checkpoint: str | None = None) -> None:
        self.layout = layout
        self.suffix = suffix
        self.lock = threading.RLock()
        self.checkpoint = checkpoint
        # A full refresh keeps its own checkpoint file until the swap.
        self.external = JsonStateStore(checkpoint + suffix) if checkpoint else None
        self._columns: dict[str, dict[str, pa.DataType]] = {}
        self._map: dict[str, dict[str, tuple[str | None, str]]] = {}
        self.prepared = False

    # -- dialect hooks ---------------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def begin(self) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def rollback(self) -> None:
        raise NotImplementedError

    def stage(self, table: pa.Table, target: str) -> tuple[str, list[str]]:
        """Make `table` readable by SQL; return (source name, its column expressions in order)."""
        raise NotImplementedError

    def unstage(self, name: str) -> None:
        pass

    def table_columns(self, table: str) -> dict[str, pa.DataType]:
        raise NotImplementedError

    def table_exists(self, table: str) -> bool:
        raise NotImplementedError

    def map_key(self, key: str) -> str:
        """The map's text for `key` (PostgreSQL text cannot hold NUL)."""
        return key

    # -- names -----------------------------------------------------------------------------------
    def name(self, base: str) -> str:
        return base + self.suffix

    def ddl(self, file: str, table: str) -> str:
        return sql_text(file).format(table=quote(table))

    def _create_tables(self, suffix: str) -> None:
        prefix = self.dialect
        self.execute(self.ddl(f"{prefix}_export_state", STATE_TABLE + suffix))
        self.execute(self.ddl("export_state_migrate", STATE_TABLE + suffix))
        self.execute(self.runs_ddl(RUNS_TABLE + suffix))
        self.execute(self.ddl(f"{prefix}_history", HISTORY_TABLE + suffix))
        self.execute(self.ddl(f"{prefix}_history_long", LONG_TABLE + suffix))
        self.execute(self.ddl(f"{prefix}_system_metrics", EVENTS_TABLE + suffix))
        self.execute(self.ddl("export_column_map", COLUMN_MAP_TABLE + suffix))

    def prepare(self) -> None:
        """Create the tables (a full refresh: fresh staging tables too). Called once, before writes."""
        with self.lock:
            self.begin()
            try:
                self._create_tables("")
                if self.suffix:
                    for base in self.swapped_tables():
                        self.execute(f"DROP TABLE IF EXISTS {quote(self.name(base))}")
                    self._create_tables(self.suffix)
                self.commit()
            except BaseException:
                self.rollback()
                raise
        if self.external is not None and self.suffix and Path(self.external.path).exists():
            Path(self.external.path).unlink()  # the refresh starts clean: that file is the exporter's own
            self.external = JsonStateStore(self.external.path)
        self.invalidate()
        self.prepared = True

    def runs_ddl(self, table: str) -> str:
        raise NotImplementedError

    # -- states ----------------------------------------------------------------------------------
    def load_states(self) -> dict[StateKey, StreamState]:
        """The committed (live) states; a full refresh plans from scratch and ignores them."""
        if self.checkpoint:
            return JsonStateStore(self.checkpoint).load()
        with self.lock:
            if not self.table_exists(STATE_TABLE):
                return {}
            rows = self.execute(sql_text("export_state_select").format(table=quote(STATE_TABLE)))
        return {s.key: s for s in map(state_from_row, rows)}

    def _upsert_states(self, states: Iterable[StreamState]) -> None:
        if self.external is not None:
            return
        sql = sql_text("export_state_upsert").format(table=quote(self.name(STATE_TABLE)))
        for state in states:
            self.execute(sql, state_params(state))

    def _after_commit(self, states: Sequence[StreamState]) -> None:
        if self.external is not None:
            self.external.commit(states)

    def commit_state(self, states: Sequence[StreamState]) -> None:
        with self.lock:
            self.begin()
            try:
                self._upsert_states(states)
                self.commit()
            except BaseException:
                self.rollback()
                raise
            self._after_commit(states)

    # -- runs ------------------------------------------------------------------------------------
    def begin_run(self, run_row: dict[str, Any], reset: Sequence[StreamState] = ()) -> None:
        from ...runs_table import RUNS_SCHEMA

        table = pa.Table.from_pylist([run_row], schema=RUNS_SCHEMA)
        with self.lock:
            self.begin()
            try:
                self._merge(self.name(RUNS_TABLE), table, list(RUN_COLUMNS))
                if reset:
                    params = [run_row["entity"], run_row["project"], run_row["run_id"]]
                    for base in (HISTORY_TABLE, LONG_TABLE):
                        self.execute(sql_text("export_delete_run").format(table=quote(self.name(base))), params)
                    self._upsert_states(reset)
                self.commit()
            except BaseException:
                self.rollback()
                self.invalidate()
                raise
            if reset:
                self._after_commit(reset)

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
        """Merge one chunk (with run columns) and its watermark in one transaction.

        A `fresh` chunk is inserted without the merge, but only when the watermark lives in this
        database (committed with the rows): with an external checkpoint file rows may exist above
        the recorded watermark, so every chunk merges. A wrong `fresh` fails on the primary key.
        """
        del lo, hi
        insert_only = fresh and self.external is None
        keys = column_keys(table)
        with self.lock:
            self.begin()
            try:
                written = self._write(stream, table, insert_only, keys)
                self._upsert_states([state])
                crash_point("before-commit")
                if stop is not None and stop.is_set():
                    raise Interrupted("interrupted: the open transaction was rolled back")
                self.commit()
            except BaseException:
                self.rollback()
                self.invalidate()  # DDL of the rolled-back transaction is gone too
                raise
            crash_point("after-commit")
            self._after_commit([state])
        return written

    def _write(self, stream: str, table: pa.Table, insert_only: bool, keys: dict[str, str]) -> int:
        if table.num_rows == 0:
            return 0
        if stream == EVENTS:
            return self._write_wide(self.name(EVENTS_TABLE), table, [*RUN_COLUMNS, TIMESTAMP_COLUMN], False, keys)
        if self.layout == "long":
            long = self.long_rows(to_long(table, keys))
            self._merge(self.name(LONG_TABLE), long, [*RUN_COLUMNS, STEP_COLUMN, "key"], insert_only)
            return table.num_rows
        return self._write_wide(
            self.name(HISTORY_TABLE), table, [*RUN_COLUMNS, STEP_COLUMN], insert_only, keys
        )

    def long_rows(self, table: pa.Table) -> pa.Table:
        """Long rows as this engine can store them (PostgreSQL: no NUL in text)."""
        return table

    def misfit_text(self, table: pa.Table, key: list[str]) -> pa.Table:
        """Move values this engine's text type cannot hold to ``_extra`` (PostgreSQL: NUL)."""
        return table

    def invalidate(self) -> None:
        """Forget cached table shapes and name maps (after a rollback)."""
        self._columns.clear()
        self._map.clear()

    def _existing(self, table: str) -> dict[str, pa.DataType]:
        if table not in self._columns:
            self._columns[table] = self.table_columns(table)
        return self._columns[table]

    # -- name map --------------------------------------------------------------------------------
    def _column_map(self, table: str) -> dict[str, tuple[str | None, str]]:
        if table not in self._map:
            rows = self.execute(
                f"SELECT key, column_name, layout FROM {quote(self.name(COLUMN_MAP_TABLE))} WHERE table_name = $1",
                [table],
            )
            self._map[table] = {key: (column, layout) for key, column, layout in rows}
        return self._map[table]

    def map_columns(
        self, table: str, names: list[str], keys: dict[str, str] | None = None
    ) -> tuple[dict[str, str], list[str]]:
        """(name -> column identifier, names that must go to the long table instead).

        `names` are the chunk's columns, already named by `column_for_key` (`keys` maps the renamed
        ones to their keys); a name longer than the engine allows is named again from its key.
        Every key whose column is not itself is recorded in ``_wandb_column_map`` in the same
        transaction as the DDL that adds its column.
        """
        keys = keys or {}
        existing = self._existing(table)
        live_table = table[: -len(self.suffix)] if self.suffix and table.endswith(self.suffix) else table
        known = self._column_map(live_table)
        mapping: dict[str, str] = {}
        overflow: list[str] = []
        count = len(existing)
        limit = self.max_identifier
        for name in names:
            key = keys.get(name, name)
            mkey = self.map_key(key)
            if mkey in known:
                column, layout = known[mkey]
                if layout == "long" or column is None:
                    overflow.append(name)
                else:
                    mapping[name] = column
                continue
            column = name if limit is None or len(name.encode()) <= limit else column_for_key(key, limit)
            if self.fold_case and column not in existing:
                taken = [*existing, *mapping.values()]
                column = fold_collisions([column], {column: key}, taken).get(column, column)
            if column in existing:
                mapping[name] = column
                continue
            if self.max_columns is not None and count + 1 > self.max_columns:
                self._record(live_table, mkey, None, "long")
                overflow.append(name)
                continue
            count += 1
            if column != key:
                self._record(live_table, mkey, column, "wide")
            mapping[name] = column
        return mapping, overflow

    def _record(self, table: str, key: str, column: str | None, layout: str) -> None:
        self.execute(
            f"INSERT INTO {quote(self.name(COLUMN_MAP_TABLE))} (table_name, key, column_name, layout) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (table_name, key) DO NOTHING",
            [table, key, column, layout],
        )
        self._map.setdefault(table, {})[key] = (column, layout)

    def _write_wide(
        self, target: str, table: pa.Table, key: list[str], insert_only: bool = False,
        keys: dict[str, str] | None = None,
    ) -> int:  # fmt: skip
        existing = self._existing(target)
        mapping, overflow = self.map_columns(
            target, [n for n in table.column_names if n not in key and n != EXTRA_COLUMN], keys
        )
        types = dict(existing)
        if self.suffix and target.endswith(self.suffix) and self.table_exists(target[: -len(self.suffix)]):
            types.update(self._existing(target[: -len(self.suffix)]))  # the swap inserts into live types
        by_key = {k: types[c] for k, c in mapping.items() if c in types}
        table = conform(table, by_key)
        overflow = [n for n in overflow if n in table.column_names]
        if overflow:
            spill = table.select([*RUN_COLUMNS, STEP_COLUMN, *overflow])
            table = table.drop_columns(overflow)
            self._merge(self.name(LONG_TABLE), self.long_rows(to_long(spill, keys)), [*RUN_COLUMNS, STEP_COLUMN, "key"])
        table = self.misfit_text(table, key)
        for name in table.column_names:
            column = mapping.get(name, name)
            if column not in existing:
                sql_type = self.types[str(table.schema.field(name).type)]
                self.execute(
                    sql_text("export_add_column").format(table=quote(target), column=quote(column), type=sql_type)
                )
                existing[column] = table.schema.field(name).type
        renamed = table.rename_columns([mapping.get(n, n) for n in table.column_names])
        self._merge(target, renamed, key, insert_only)
        return table.num_rows

    def _merge(self, target: str, table: pa.Table, key: list[str], insert_only: bool = False) -> None:
        source, source_columns = self.stage(table, target)
        try:
            columns = [quote(c) for c in table.column_names]
            if insert_only:
                self.execute(
                    sql_text("export_insert").format(
                        table=quote(target),
                        columns=", ".join(columns),
                        source_columns=", ".join(source_columns),
                        source=source,
                    )
                )
            else:
                updates = [f"{quote(c)} = EXCLUDED.{quote(c)}" for c in table.column_names if c not in key]
                if not updates:  # nothing but the key: make the conflict a no-op update
                    updates = [f"{quote(key[-1])} = EXCLUDED.{quote(key[-1])}"]
                sql = sql_text("export_merge").format(
                    table=quote(target),
                    columns=", ".join(columns),
                    source_columns=", ".join(source_columns),
                    source=source,
                    key=", ".join(quote(k) for k in key),
                    updates=", ".join(updates),
                )
                self.execute(sql)
        except BaseException:
            try:  # in an aborted transaction the clean-up may fail too: keep the first error
                self.unstage(source)
            except Exception:
                pass
            raise
        self.unstage(source)

    # -- full refresh ----------------------------------------------------------------------------
    def swap_in(self) -> None:
        """Replace the live rows of the refreshed runs by the staged ones in one transaction.

        Only runs in ``runs__refresh`` (the runs of this export) are deleted; columns the live
        tables lack are added; the staging tables are dropped.
        """
        if not self.suffix:
            return
        crash_point("before-swap")
        scope_runs = quote(self.name(RUNS_TABLE))
        with self.lock:
            self.begin()
            try:
                for base in (HISTORY_TABLE, LONG_TABLE, EVENTS_TABLE, RUNS_TABLE, STATE_TABLE):
                    self._swap_table(base, scope_runs)
                self.execute(
                    f"INSERT INTO {quote(COLUMN_MAP_TABLE)} SELECT * FROM {quote(self.name(COLUMN_MAP_TABLE))} "
                    "ON CONFLICT (table_name, key) DO NOTHING"
                )
                for base in self.swapped_tables():
                    self.execute(f"DROP TABLE IF EXISTS {quote(self.name(base))}")
                self.commit()
            except BaseException:
                self.rollback()
                raise
        self.invalidate()
        if self.external is not None and self.checkpoint:
            self._swap_checkpoint_file()

    def _swap_table(self, base: str, scope_runs: str) -> None:
        live, staged = quote(base), quote(self.name(base))
        live_columns = self.table_columns(base)
        staged_columns = self.table_columns(self.name(base))
        for column, typ in staged_columns.items():
            if column not in live_columns:
                sql_type = self.types[str(typ)]
                self.execute(sql_text("export_add_column").format(table=live, column=quote(column), type=sql_type))
        self.execute(
            f"DELETE FROM {live} WHERE EXISTS (SELECT 1 FROM {scope_runs} AS s WHERE s.entity = {live}.entity "
            f"AND s.project = {live}.project AND s.run_id = {live}.run_id)"
        )
        columns = ", ".join(quote(c) for c in staged_columns)
        self.execute(f"INSERT INTO {live} ({columns}) SELECT {columns} FROM {staged}")

    def _swap_checkpoint_file(self) -> None:
        assert self.external is not None and self.checkpoint
        refreshed = self.external.load()
        runs = {(k.entity, k.project, k.run_id) for k in refreshed}
        live = JsonStateStore(self.checkpoint)
        kept = {k: s for k, s in live.load().items() if (k.entity, k.project, k.run_id) not in runs}
        fresh = JsonStateStore(self.checkpoint + ".swap")
        fresh.commit([*kept.values(), *refreshed.values()])
        os.replace(fresh.path, self.checkpoint)
        Path(self.external.path).unlink()

    def swapped_tables(self) -> list[str]:
        return [STATE_TABLE, RUNS_TABLE, HISTORY_TABLE, LONG_TABLE, EVENTS_TABLE, COLUMN_MAP_TABLE]

    def finish(self) -> None:
        self.swap_in()

    def close(self) -> None:
        pass


__all__ = ["EXTRA_COLUMN", "Interrupted", "Sink", "SqlSink", "quote"]
