"""`wandb-history sql "SELECT ..."`: one DuckDB query with `wandb_history()` / `wandb_runs()` registered.

The query runs once on an in-memory DuckDB connection (see `connector.duckdb` for the SQL surface);
the result is printed as a table (DuckDB's box rendering, long results elided in the middle) or
written as CSV, JSON (one object per line; NaN and ±inf become null) or Parquet, to ``--output FILE`` or stdout (Parquet needs
``--output``). The server and key come from the environment (`WANDB_BASE_URL`, `WANDB_API_KEY`,
``~/.netrc``), as for every command. The macros and views are dropped and the connection closed
before the command returns, on success or failure.

    wandb-history sql "SELECT count(DISTINCT _step) FROM wandb_history('e/p/r', keys := ['loss'])"
    wandb-history sql "SELECT * FROM wandb_runs('e/p')" --format csv --output runs.csv
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from . import errors
from .errors import ConfigurationError, ConnectorError

if TYPE_CHECKING:
    from .api import Api

FORMATS = ("table", "csv", "json", "parquet")
_WRAPPED = re.compile(r"^.*?exporting a stream from the object registered as '[^']*' failed: ", re.S)


def clean_error(message: str) -> str:
    """DuckDB's message without the wrapper it puts around an error raised by a Python source.

    >>> clean_error("Invalid Input Error: exporting a stream from the object registered as "
    ...             "'__wandb_history_long' failed: ConfigurationError: unknown key 'x'")
    "ConfigurationError: unknown key 'x'"
    """
    return _WRAPPED.sub("", message, count=1)


def _typed_error(message: str) -> ConnectorError:
    """The connector error a DuckDB message names (``TransportError: ...``), else a `ConfigurationError`.

    DuckDB keeps only the text of an error raised by a Python source; its type decides the exit status.

    >>> e = _typed_error("TransportError: gave up after 9s and 4 attempts: connection refused to x")
    >>> type(e).__name__, e.exit_code, str(e)[:12]
    ('TransportError', 3, 'gave up afte')
    """
    name, sep, rest = message.partition(": ")
    cls = getattr(errors, name, None) if sep and name.isidentifier() else None
    if isinstance(cls, type) and issubclass(cls, ConnectorError):
        try:
            return cls(rest)
        except TypeError:
            pass
    return ConfigurationError(message)


def run_sql(
    query: str,
    *,
    fmt: str = "table",
    output: str | None = None,
    api: Api | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Run `query` with everything registered and write its result; returns the row count."""
    import duckdb

    from .duckdb import register, unregister

    if fmt not in FORMATS:
        raise ConfigurationError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "parquet" and output is None:
        raise ConfigurationError("--format parquet needs --output FILE")
    out = stdout or sys.stdout
    con = duckdb.connect()
    try:
        register(con, api)
        try:
            relation = con.sql(query)
            table = relation.to_arrow_table() if relation is not None else None
        except duckdb.Error as exc:
            raise _typed_error(clean_error(str(exc))) from exc
        if table is None:
            return 0
        result = con.from_arrow(table)
        if fmt == "table":
            _write_text(str(result), output, out)
        else:
            _write_file(result, table, fmt, output, out)
        return table.num_rows
    finally:
        unregister(con)
        con.close()


def _write_text(text: str, output: str | None, out: TextIO) -> None:
    if output is None:
        out.write(text if text.endswith("\n") else text + "\n")
    else:
        Path(output).write_text(text, encoding="utf-8")


def _write_file(result: Any, table: Any, fmt: str, output: str | None, out: TextIO) -> None:
    if fmt == "json":  # one object per line; NaN and ±inf become null (JSON has no such numbers)
        import polars as pl

        frame = pl.from_arrow(table)
        if output is None:
            out.write(frame.write_ndjson())  # type: ignore[union-attr]
        else:
            frame.write_ndjson(output)  # type: ignore[union-attr]
        return
    if fmt == "parquet":
        result.write_parquet(output)
        return
    if output is not None:
        result.write_csv(output)
        return
    tmpdir = tempfile.mkdtemp(prefix="wandb-history-sql-")
    try:
        target = os.path.join(tmpdir, "result.csv")
        result.write_csv(target)
        with open(target, encoding="utf-8") as handle:
            shutil.copyfileobj(handle, out)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _api(timeout: float) -> Api | None:
    """``Api()`` from the environment retrying for at most `timeout` seconds per request.

    None when the environment is unusable (a malformed ``WANDB_BASE_URL``): the macros then make
    ``Api()`` at their first remote query and raise that error there, so local-only queries still run.
    """
    from .api import Api
    from .transport import RetryPolicy

    try:
        return Api(retry=RetryPolicy(deadline=timeout))
    except ConfigurationError:
        return None


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `sql` sub-command (auto-loaded by `connector.cli`)."""
    p = sub.add_parser(
        "sql",
        help="run a DuckDB query with wandb_history() and wandb_runs() registered",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("query", help="the SQL to run, e.g. \"SELECT * FROM wandb_runs('e/p')\"")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    p.add_argument("--output", "-o", default=None, metavar="FILE", help="write here instead of stdout")
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long to keep retrying an unreachable or failing W&B API before giving up "
        "(exit 3; default 120)",
    )

    def run(args: argparse.Namespace) -> int:
        run_sql(args.query, fmt=args.format, output=args.output, api=_api(args.timeout))
        return 0

    p.set_defaults(func=run)
