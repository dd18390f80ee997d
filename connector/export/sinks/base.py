"""What a destination must do, and the transactional logic DuckDB and PostgreSQL share.

A sink receives, per run: `begin_run` (the run's metadata row; optionally a reset of a rewound run),
then `write_chunk` for each step range in order (rows + the new watermark, committed together), and
`commit_state` when only the state changes. `finish` completes the export (a full refresh swaps its
staging tables in); `close` releases connections.

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
from typing import Any, Protocol

import pyarrow as pa

from ...arrow import EXTRA_COLUMN, STEP_COLUMN
from ...errors import ConnectorError
from ...sqlfiles import sql_text
from ..checkpoint import EVENTS, HISTORY, JsonStateStore, StateKey, StreamState, crash_point
from ..tables import (
    EVENTS_TABLE,
    HISTORY_TABLE,
    LONG_TABLE,
    RUN_COLUMNS,
    RUNS_TABLE,
    STATE_TABLE,
    TIMESTAMP_COLUMN,
    conform,
    to_long,
)


class Interrupted(ConnectorError):
    """The export was interrupted (Ctrl-C); the open transaction was rolled back."""


class Sink(Protocol):
    """A destination of an export."""

    display: str  # where it writes, with any password removed

    def load_states(self) -> dict[StateKey, StreamState]: ...

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


def state_params(state: StreamState, table: str) -> list[Any]:
    k = state.key
    return [
        k.entity, k.project, k.run_id, k.stream, k.key_set,
        None if state.watermark is None else float(state.watermark),
        state.last_step, state.line_count, state.run_state, state.rewinds, state.deleted_at,
        json.dumps(list(state.keys)) if state.keys is not None else None,
        state.layout, state.chunk_steps, now_iso(),
    ]  # fmt: skip


def state_from_row(row: Sequence[Any]) -> StreamState:
    (entity, project, run_id, stream, key_set, watermark, last_step, line_count, run_state, rewinds,
     deleted_at, keys, layout, chunk_steps) = row  # fmt: skip
    if watermark is not None and stream == HISTORY:
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

    def __init__(self, *, layout: str, suffix: str = "", checkpoint: str | None = None) -> None:
        self.layout = layout
        self.suffix = suffix
        self.lock = threading.RLock()
        self.checkpoint = checkpoint
        # A full refresh keeps its own checkpoint file until the swap.
        self.external = JsonStateStore(checkpoint + suffix) if checkpoint else None
        self._columns: dict[str, dict[str, pa.DataType]] = {}

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

    def map_columns(self, table: str, names: list[str]) -> tuple[dict[str, str], list[str]]:
        """(key -> column identifier, keys that must go to the long table instead)."""
        return {n: n for n in names}, []

    # -- names -----------------------------------------------------------------------------------
    def name(self, base: str) -> str:
        return base + self.suffix

    def ddl(self, file: str, table: str) -> str:
        return sql_text(file).format(table=quote(table))

    def ensure_tables(self) -> None:
        prefix = self.dialect
        with self.lock:
            self.begin()
            try:
                self.execute(self.ddl(f"{prefix}_export_state", self.name(STATE_TABLE)))
                self.execute(self.runs_ddl(self.name(RUNS_TABLE)))
                self.execute(self.ddl(f"{prefix}_history", self.name(HISTORY_TABLE)))
                self.execute(self.ddl(f"{prefix}_history_long", self.name(LONG_TABLE)))
                self.execute(self.ddl(f"{prefix}_system_metrics", self.name(EVENTS_TABLE)))
                self.extra_ddl()
                self.commit()
            except BaseException:
                self.rollback()
                raise

    def runs_ddl(self, table: str) -> str:
        raise NotImplementedError

    def extra_ddl(self) -> None:
        pass

    # -- states ----------------------------------------------------------------------------------
    def load_states(self) -> dict[StateKey, StreamState]:
        if self.external is not None:
            return self.external.load()
        with self.lock:
            rows = self.execute(sql_text("export_state_select").format(table=quote(self.name(STATE_TABLE))))
        return {s.key: s for s in map(state_from_row, rows)}

    def _upsert_states(self, states: Iterable[StreamState]) -> None:
        if self.external is not None:
            return
        sql = sql_text("export_state_upsert").format(table=quote(self.name(STATE_TABLE)))
        for state in states:
            self.execute(sql, state_params(state, self.name(STATE_TABLE)))

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
        with self.lock:
            self.begin()
            try:
                written = self._write(stream, table, insert_only)
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

    def _write(self, stream: str, table: pa.Table, insert_only: bool = False) -> int:
        if table.num_rows == 0:
            return 0
        if stream == EVENTS:
            return self._write_wide(self.name(EVENTS_TABLE), table, [*RUN_COLUMNS, TIMESTAMP_COLUMN])
        if self.layout == "long":
            long = to_long(table)
            self._merge(self.name(LONG_TABLE), long, [*RUN_COLUMNS, STEP_COLUMN, "key"], insert_only)
            return table.num_rows
        return self._write_wide(
            self.name(HISTORY_TABLE), table, [*RUN_COLUMNS, STEP_COLUMN], insert_only
        )

    def invalidate(self) -> None:
        """Forget cached table shapes (after a rollback)."""
        self._columns.clear()

    def _existing(self, table: str) -> dict[str, pa.DataType]:
        if table not in self._columns:
            self._columns[table] = self.table_columns(table)
        return self._columns[table]

    def _write_wide(
        self, target: str, table: pa.Table, key: list[str], insert_only: bool = False
    ) -> int:
        existing = self._existing(target)
        mapping, overflow = self.map_columns(target, [n for n in table.column_names if n not in key])
        by_key = {k: existing[c] for k, c in mapping.items() if c in existing}
        table = conform(table, by_key)
        overflow = [n for n in overflow if n in table.column_names]
        if overflow:
            spill = table.select([*RUN_COLUMNS, STEP_COLUMN, *overflow])
            table = table.drop_columns(overflow)
            self._merge(self.name(LONG_TABLE), to_long(spill), [*RUN_COLUMNS, STEP_COLUMN, "key"])
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
                return
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
        finally:
            self.unstage(source)

    # -- full refresh ----------------------------------------------------------------------------
    def swap_in(self) -> None:
        """Replace the live tables by the refreshed ones in one transaction (never drops first)."""
        if not self.suffix:
            return
        crash_point("before-swap")
        with self.lock:
            self.begin()
            try:
                for base in self.swapped_tables():
                    self.execute(f"DROP TABLE IF EXISTS {quote(base)}")
                    self.execute(f"ALTER TABLE {quote(self.name(base))} RENAME TO {quote(base)}")
                    self.after_rename(base)
                self.commit()
            except BaseException:
                self.rollback()
                raise
            if self.external is not None and self.checkpoint and os.path.exists(self.checkpoint + self.suffix):
                os.replace(self.checkpoint + self.suffix, self.checkpoint)

    def after_rename(self, base: str) -> None:
        pass

    def swapped_tables(self) -> list[str]:
        return [STATE_TABLE, RUNS_TABLE, HISTORY_TABLE, LONG_TABLE, EVENTS_TABLE]

    def finish(self) -> None:
        self.swap_in()

    def close(self) -> None:
        pass


__all__ = ["EXTRA_COLUMN", "Interrupted", "Sink", "SqlSink", "quote"]
