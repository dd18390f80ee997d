"""PostgreSQL destination through ADBC (`adbc-driver-postgresql`, the optional extra ``postgres``).

Why ADBC and not psycopg: the chunks are Arrow already, and ADBC's bulk ingest sends an Arrow table
with ``COPY ... (FORMAT binary)`` without a Python loop per value, keeping types (NaN and ±inf
included) exact. (DuckDB's ``postgres`` extension needs a download, so it is not used.)

One chunk is one transaction (exactly once)::

    BEGIN
      ALTER TABLE history ADD COLUMN ... (new keys)
      DROP TABLE IF EXISTS pg_temp._wandb_stage; COPY the chunk into it (adbc_ingest, temporary)
      INSERT INTO history (...) SELECT ... FROM _wandb_stage
        ON CONFLICT (entity, project, run_id, _step) DO UPDATE SET ...
      INSERT INTO _wandb_export_state ... ON CONFLICT DO UPDATE    -- the watermark
    COMMIT

COPY straight into the target cannot merge, hence the staging table. The staging columns are named
``c0, c1, ...`` so no key name meets an identifier limit there.

PostgreSQL limits: identifiers are at most 63 bytes and a table at most 1,600 columns. A key whose
name is longer gets the column ``<first bytes>~<8 hex of sha1(key)>`` (`connector.export.tables.
column_for_key`, the rule of every destination; never a truncation that could collide); keys that
would push ``history`` past `MAX_COLUMNS` go to ``history_long`` (one row per step and key)
instead. Both are recorded in ``_wandb_column_map (table_name, key, column_name, layout)``, written
in the same transaction as the DDL.

Text cannot hold NUL characters in PostgreSQL: a string value holding NUL goes to ``_extra`` as
JSON (``\\u0000`` escapes, lossless); in the long layout such a value is stored as its JSON string
literal, and a key holding NUL is recorded (in ``key`` columns and the name map) as its JSON string
literal.

One export at a time per schema: the sink holds a session-level advisory lock
(`pg_try_advisory_lock`) from open to close; a second export into the same schema fails at once
with `DestinationBusyError`.

The database password never leaves the connection: errors are scrubbed and the destination is shown
with ``***`` in its place.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ...core.arrow import EXTRA_COLUMN
from ...core.columns import column_for_key
from ...errors import ConfigurationError, ConnectorError, DestinationBusyError, DestinationError
from ..tables import RUNS_TABLE, _merge_extra
from .base import SqlSink
from .dest import scrub

MAX_IDENTIFIER = 63
MAX_COLUMNS = 1600 - 16  # PostgreSQL's hard limit, less a margin for dropped columns
_TYPES = {"double": "DOUBLE PRECISION", "bool": "BOOLEAN", "string": "TEXT", "int64": "BIGINT"}
_FROM_SQL: dict[str, pa.DataType] = {
    "double precision": pa.float64(),
    "boolean": pa.bool_(),
    "text": pa.string(),
    "bigint": pa.int64(),
}
_STAGE = "_wandb_stage"


def column_identifier(key: str) -> str:
    """The column name of `key` in PostgreSQL (`column_for_key` with the 63-byte limit).

    >>> column_identifier("loss")
    'loss'
    >>> name = column_identifier("x" * 80); len(name.encode()), name[-9:-8]
    (63, '~')
    """
    return column_for_key(key, MAX_IDENTIFIER)


def _has_nul(column: pa.ChunkedArray) -> bool:
    return bool(pa.types.is_string(column.type) and pc.any(pc.match_substring(column, "\x00")).as_py())


class PostgresSink(SqlSink):
    """Export into PostgreSQL."""

    dialect = "postgres"
    types = _TYPES
    max_identifier = MAX_IDENTIFIER
    max_columns = MAX_COLUMNS

    def __init__(
        self,
        url: str,
        *,
        display: str,
        layout: str,
        full_refresh: bool = False,
        checkpoint: str | None = None,
        read_only: bool = False,
    ) -> None:
        super().__init__(layout=layout, suffix="__refresh" if full_refresh else "", checkpoint=checkpoint)
        self.display = display
        self._password = _password(url)
        try:
            import adbc_driver_postgresql.dbapi as pg
        except ImportError as exc:
            raise ConfigurationError(
                "PostgreSQL destinations need the 'postgres' extra: pip install 'wandb-history-connector[postgres]'"
            ) from exc
        try:
            self.con = pg.connect(url)
        except Exception as exc:
            raise DestinationError(
                f"cannot connect to {display}: {scrub(str(exc), self._password).splitlines()[0]}"
            ) from None
        self.cur = self.con.cursor()
        self.read_only = read_only
        if not read_only:
            self._lock_destination()

    def _lock_destination(self) -> None:
        row = self.execute(
            "SELECT pg_try_advisory_lock(hashtextextended('wandb-history-export:' || current_schema(), 0))"
        )
        self.commit()
        if not row or not row[0][0]:
            self.close()
            raise DestinationBusyError(
                f"another export is writing into {self.display} (schema lock held); wait for it to finish"
            )

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        sql = sql.strip().rstrip(";")  # ADBC wraps queries in COPY (...): no trailing semicolon
        try:
            if params is not None:
                self.cur.execute(sql, params)
            else:
                self.cur.execute(sql)
            if self.cur.description is None:
                return []
            return self.cur.fetchall()
        except Exception as exc:
            raise ConnectorError(f"PostgreSQL ({self.display}): {scrub(str(exc), self._password)}") from None

    def begin(self) -> None:
        pass  # the ADBC connection is not in autocommit mode: a transaction is always open

    def commit(self) -> None:
        self.con.commit()

    def rollback(self) -> None:
        try:
            self.con.rollback()
        except Exception:
            pass

    def stage(self, table: pa.Table, target: str) -> tuple[str, list[str]]:
        names = [f"c{i}" for i in range(table.num_columns)]
        staged = table.rename_columns(names)
        self.execute(f"DROP TABLE IF EXISTS pg_temp.{_STAGE}")
        try:
            self.cur.adbc_ingest(_STAGE, staged, mode="create", temporary=True)
        except Exception as exc:
            raise ConnectorError(f"PostgreSQL ({self.display}): {scrub(str(exc), self._password)}") from None
        exprs = []
        for name, column in zip(names, table.column_names, strict=True):
            if target.startswith(RUNS_TABLE) and column in ("config", "summary"):
                exprs.append(f"{name}::jsonb")
            else:
                exprs.append(name)
        return _STAGE, exprs

    def table_columns(self, table: str) -> dict[str, pa.DataType]:
        rows = self.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            [table],
        )
        return {name: _FROM_SQL.get(typ, pa.string()) for name, typ in rows}

    def table_exists(self, table: str) -> bool:
        found = self.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_name = $1",
            [table],
        )
        return bool(found and found[0][0])

    def runs_ddl(self, table: str) -> str:
        return self.ddl("postgres_runs_table", table)

    # -- NUL characters --------------------------------------------------------------------------
    def map_key(self, key: str) -> str:
        return json.dumps(key) if "\x00" in key else key

    def misfit_text(self, table: pa.Table, key: list[str]) -> pa.Table:
        misfits: dict[str, list[Any]] = {}
        for name in table.column_names:
            if name in key or name == EXTRA_COLUMN or not _has_nul(table.column(name)):
                continue
            values = table.column(name).to_pylist()
            misfits[name] = [v if isinstance(v, str) and "\x00" in v else None for v in values]
            kept = [None if isinstance(v, str) and "\x00" in v else v for v in values]
            table = table.set_column(table.column_names.index(name), table.schema.field(name), pa.array(kept, pa.string()))
        return _merge_extra(table, misfits) if misfits else table

    def long_rows(self, table: pa.Table) -> pa.Table:
        for name in ("key", "value_text"):
            column = table.column(name)
            if _has_nul(column):
                values = [json.dumps(v) if isinstance(v, str) and "\x00" in v else v for v in column.to_pylist()]
                table = table.set_column(table.column_names.index(name), table.schema.field(name), pa.array(values, pa.string()))
        return table

    def close(self) -> None:
        try:
            self.cur.close()
            self.con.close()
        except Exception:
            pass


def _password(url: str) -> str | None:
    from urllib.parse import unquote, urlsplit

    password = urlsplit(url).password
    return unquote(password) if password else None
