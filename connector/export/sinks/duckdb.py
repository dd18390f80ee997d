"""DuckDB destination: rows and watermark in one transaction, in one database file.

Tables (in the ``main`` schema): ``history`` (wide) or ``history_long`` (long), ``system_metrics``,
``runs`` (`sql/runs_table.sql`, the DDL shared with the SQL layer) and ``_wandb_export_state``.
Chunks arrive as Arrow tables, registered as a view and merged with
``INSERT ... ON CONFLICT (entity, project, run_id, _step) DO UPDATE``; DuckDB's DDL is
transactional, so a column added for a new key disappears with a rolled-back chunk.

A full refresh writes the runs it exports into ``<table>__refresh`` tables and swaps them in for
those runs only, in one transaction at the end (see `connector.export.sinks.base`).

Before anything is written the path is checked (`check_duckdb_path`): a folder, a file that is not
a DuckDB database, a parent that is a file or an unwritable place are refused in one line, and a
database another process holds open (another export) raises `DestinationBusyError`. A file this
sink created and never wrote to is removed again by `close`.

>>> import tempfile, os
>>> sink = DuckDBSink(os.path.join(tempfile.mkdtemp(), "x.duckdb"), layout="wide")
>>> sorted(sink.load_states())
[]
>>> sink.close()
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from ...errors import DestinationBusyError, DestinationError
from .base import SqlSink, quote
from .dest import writable_place

_TYPES = {"double": "DOUBLE", "bool": "BOOLEAN", "string": "VARCHAR", "int64": "BIGINT"}
_FROM_SQL: dict[str, pa.DataType] = {"DOUBLE": pa.float64(), "BOOLEAN": pa.bool_(), "VARCHAR": pa.string(), "BIGINT": pa.int64()}
_MAGIC = b"DUCK"  # bytes 8..12 of every DuckDB database file


def check_duckdb_path(path: str) -> None:
    """Refuse paths that are not, and cannot become, a DuckDB database file.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> check_duckdb_path(os.path.join(d, "new.duckdb"))
    >>> check_duckdb_path(d)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    connector.errors.DestinationError: ... is a folder, not a DuckDB database file
    """
    p = Path(path)
    if p.is_dir():
        raise DestinationError(f"{path} is a folder, not a DuckDB database file")
    if p.exists():
        try:
            with open(p, "rb") as fh:
                head = fh.read(12)
        except OSError as exc:
            raise DestinationError(f"cannot read {path}: {exc.strerror}") from None
        if head[8:12] != _MAGIC:
            raise DestinationError(f"{path} exists and is not a DuckDB database file (refusing to touch it)")
        if not os.access(p, os.W_OK):
            raise DestinationError(f"{path} is not writable (permissions or a read-only mount)")
        return
    writable_place(p)


class DuckDBSink(SqlSink):
    """Export into a DuckDB database file."""

    dialect = "duckdb"
    types = _TYPES
    fold_case = True

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
        check_duckdb_path(path)
        self.created = not Path(path).exists()
        try:
            if read_only and self.created:
                self.con = duckdb.connect(":memory:")
            else:
                if not read_only:
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                self.con = duckdb.connect(path, read_only=read_only)
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "lock" in first.lower():
                holder = re.search(r"PID \d+", first)
                raise DestinationBusyError(
                    f"another export (or program) holds {path}"
                    + (f" ({holder.group(0)})" if holder else "")
                    + "; wait for it to finish"
                ) from None
            raise DestinationError(f"cannot open {path} as a DuckDB database: {first}") from None
        self._names = itertools.count()

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
            "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            [table],
        ).fetchall()
        return {name: _FROM_SQL.get(typ, pa.string()) for name, typ in rows}

    def table_exists(self, table: str) -> bool:
        rows = self.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?",
            [table],
        )
        return bool(rows and rows[0][0])

    def runs_ddl(self, table: str) -> str:
        return self.ddl("runs_table", table)

    def close(self) -> None:
        self.con.close()
        if self.created and not self.prepared and not self.read_only:
            for leftover in (self.path, self.path + ".wal"):  # created here, never written: ours
                Path(leftover).unlink(missing_ok=True)
