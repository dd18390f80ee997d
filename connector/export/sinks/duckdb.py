"""DuckDB destination: rows and watermark in one transaction, in one database file.

Tables (in the ``main`` schema): ``history`` (wide) or ``history_long`` (long), ``system_metrics``,
``runs`` (`sql/runs_table.sql`, the DDL shared with the SQL layer) and ``_wandb_export_state``.
Chunks arrive as Arrow tables, registered as a view and merged with
``INSERT ... ON CONFLICT (entity, project, run_id, _step) DO UPDATE``; DuckDB's DDL is
transactional, so a column added for a new key disappears with a rolled-back chunk.

A full refresh writes ``<table>__refresh`` tables (resumable) and renames them over the live tables
in one transaction at the end.

>>> import tempfile, os
>>> sink = DuckDBSink(os.path.join(tempfile.mkdtemp(), "x.duckdb"), layout="wide")
>>> sorted(sink.load_states())
[]
>>> sink.close()
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from ...sqlfiles import sql_text
from .base import SqlSink, quote

_TYPES = {"double": "DOUBLE", "bool": "BOOLEAN", "string": "VARCHAR", "int64": "BIGINT"}
_FROM_SQL = {"DOUBLE": pa.float64(), "BOOLEAN": pa.bool_(), "VARCHAR": pa.string(), "BIGINT": pa.int64()}


class DuckDBSink(SqlSink):
    """Export into a DuckDB database file."""

    dialect = "duckdb"
    types = _TYPES

    def __init__(
        self,
        path: str,
        *,
        layout: str,
        full_refresh: bool = False,
        checkpoint: str | None = None,
        read_only: bool = False,
    ) -> None:
        super().__init__(layout=layout, suffix="__refresh" if full_refresh else "", checkpoint=checkpoint)
        import duckdb

        self.path = path
        self.display = path
        self.read_only = read_only
        if read_only and not os.path.exists(path):
            self.con = duckdb.connect(":memory:")
        else:
            if os.path.dirname(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
            self.con = duckdb.connect(path, read_only=read_only)
        self._names = itertools.count()
        if not read_only:
            self.ensure_tables()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        cur = self.con.execute(sql, params) if params is not None else self.con.execute(sql)
        try:
            return cur.fetchall()
        except Exception:  # statements without a result set
            return []

    def begin(self) -> None:
        self.con.begin()

    def commit(self) -> None:
        self.con.commit()

    def rollback(self) -> None:
        try:
            self.con.rollback()
        except Exception:  # no transaction open
            pass

    def stage(self, table: pa.Table, target: str) -> tuple[str, list[str]]:
        name = f"_wandb_chunk_{next(self._names)}"
        self.con.register(name, table)
        return quote(name), [quote(c) for c in table.column_names]

    def unstage(self, name: str) -> None:
        self.con.unregister(name.strip('"'))

    def table_columns(self, table: str) -> dict[str, pa.DataType]:
        rows = self.con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ?",
            [table],
        ).fetchall()
        return {name: _FROM_SQL.get(typ, pa.string()) for name, typ in rows}

    def runs_ddl(self, table: str) -> str:
        return sql_text("runs_table").replace("CREATE TABLE IF NOT EXISTS runs (", f"CREATE TABLE IF NOT EXISTS {quote(table)} (")

    def load_states(self):  # type: ignore[no-untyped-def]
        if self.read_only:
            exists = self.con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [self.name("_wandb_export_state")]
            ).fetchone()
            if not exists or not exists[0]:
                return {} if self.external is None else self.external.load()
        return super().load_states()

    def close(self) -> None:
        self.con.close()
