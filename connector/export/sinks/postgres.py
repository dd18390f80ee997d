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
name is longer gets the column ``<first bytes>~<8 hex of sha1(key)>`` (unique, never a truncation
that could collide); keys that would push ``history`` past `MAX_COLUMNS` go to ``history_long``
(one row per step and key) instead. Both are recorded in ``_wandb_column_map (table_name, key,
column_name, layout)``, written in the same transaction as the DDL.

The database password never leaves the connection: errors are scrubbed and the destination is shown
with ``***`` in its place.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from ...errors import ConfigurationError, ConnectorError
from ..tables import COLUMN_MAP_TABLE, RUNS_TABLE, STATE_TABLE
from .base import SqlSink, quote
from .dest import scrub

MAX_IDENTIFIER = 63
MAX_COLUMNS = 1600 - 16  # PostgreSQL's hard limit, less a margin for dropped columns
_TYPES = {"double": "DOUBLE PRECISION", "bool": "BOOLEAN", "string": "TEXT", "int64": "BIGINT"}
_FROM_SQL = {
    "double precision": pa.float64(),
    "boolean": pa.bool_(),
    "text": pa.string(),
    "bigint": pa.int64(),
}
_STAGE = "_wandb_stage"


def column_identifier(key: str) -> str:
    """The column name of `key` in PostgreSQL: the key itself when it fits in 63 bytes, else its
    longest prefix that fits with ``~`` and 8 hex digits of its SHA-1.

    >>> column_identifier("loss")
    'loss'
    >>> name = column_identifier("x" * 80); len(name.encode()), name[-9:-8]
    (63, '~')
    """
    raw = key.encode()
    if len(raw) <= MAX_IDENTIFIER:
        return key
    digest = hashlib.sha1(raw).hexdigest()[:8]
    prefix = raw[: MAX_IDENTIFIER - 9].decode("utf-8", "ignore")
    return f"{prefix}~{digest}"


class PostgresSink(SqlSink):
    """Export into PostgreSQL."""

    dialect = "postgres"
    types = _TYPES

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
            raise ConnectorError(
                f"cannot connect to {display}: {scrub(str(exc), self._password).splitlines()[0]}"
            ) from None
        self.cur = self.con.cursor()
        self.read_only = read_only
        self._map: dict[str, dict[str, tuple[str | None, str]]] = {}
        self._stages = itertools.count()
        if not read_only:
            self.ensure_tables()

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

    def invalidate(self) -> None:
        super().invalidate()
        self._map.clear()

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
            "WHERE table_schema = current_schema() AND table_name = $1",
            [table],
        )
        return {name: _FROM_SQL.get(typ, pa.string()) for name, typ in rows}

    def runs_ddl(self, table: str) -> str:
        return self.ddl("postgres_runs_table", table)

    def extra_ddl(self) -> None:
        self.execute(self.ddl("postgres_column_map", self.name(COLUMN_MAP_TABLE)))

    def load_states(self):  # type: ignore[no-untyped-def]
        if self.read_only and self.external is None:
            found = self.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() "
                "AND table_name = $1",
                [self.name(STATE_TABLE)],
            )
            if not found or not found[0][0]:
                return {}
        return super().load_states()

    # -- name map --------------------------------------------------------------------------------
    def _column_map(self, table: str) -> dict[str, tuple[str | None, str]]:
        if table not in self._map:
            rows = self.execute(
                f"SELECT key, column_name, layout FROM {quote(self.name(COLUMN_MAP_TABLE))} WHERE table_name = $1",
                [table],
            )
            self._map[table] = {key: (column, layout) for key, column, layout in rows}
        return self._map[table]

    def map_columns(self, table: str, names: list[str]) -> tuple[dict[str, str], list[str]]:
        existing = self._existing(table)
        if self.suffix and table.endswith(self.suffix):
            table = table[: -len(self.suffix)]  # the map names live tables, also during a refresh
        known = self._column_map(table)
        mapping: dict[str, str] = {}
        overflow: list[str] = []
        count = len(existing)
        for key in names:
            if key in known:
                column, layout = known[key]
                if layout == "long" or column is None:
                    overflow.append(key)
                else:
                    mapping[key] = column
                continue
            column = column_identifier(key)
            if column in existing:
                mapping[key] = column
                continue
            if count + 1 > MAX_COLUMNS:
                self._record(table, key, None, "long")
                overflow.append(key)
                continue
            count += 1
            if column != key:
                self._record(table, key, column, "wide")
            mapping[key] = column
        return mapping, overflow

    def _record(self, table: str, key: str, column: str | None, layout: str) -> None:
        self.execute(
            f"INSERT INTO {quote(self.name(COLUMN_MAP_TABLE))} (table_name, key, column_name, layout) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (table_name, key) DO NOTHING",
            [table, key, column, layout],
        )
        self._map.setdefault(table, {})[key] = (column, layout)

    # -- full refresh ----------------------------------------------------------------------------
    def swapped_tables(self) -> list[str]:
        return [*super().swapped_tables(), COLUMN_MAP_TABLE]

    def after_rename(self, base: str) -> None:
        self.execute(f"ALTER INDEX IF EXISTS {quote(self.name(base) + '_pkey')} RENAME TO {quote(base + '_pkey')}")

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

