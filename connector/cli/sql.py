"""`wandb-history sql "SELECT ..."`: one DuckDB query with `wandb_history()` / `wandb_runs()` registered.

The query (an argument, ``-f FILE``, or ``-`` / piped stdin) runs once on an in-memory DuckDB
connection (see `connector.duckdb` for the SQL surface); the result is printed as a table (DuckDB's
box rendering, long results elided in the middle) or written as CSV, JSON Lines (one object per
line, nested values kept nested: JSON columns such as ``config`` are objects, lists are arrays; NaN
and ±inf become null) or Parquet, to ``--output FILE`` or stdout (Parquet needs ``--output``). With
``--output`` and no ``--format`` the format follows the file's extension (``.parquet``, ``.csv``,
``.json`` / ``.jsonl`` / ``.ndjson``); any other extension is an error. The server and key come from
the environment (`WANDB_BASE_URL`, `WANDB_API_KEY`, ``~/.netrc``), as for every command. The macros
and views are dropped and the connection closed before the command returns, on success or failure.

    wandb-history sql "SELECT count(*) FROM wandb_history('e/p/r', keys := ['loss'])"
    wandb-history sql "SELECT * FROM wandb_runs('e/p')" -o runs.parquet
    wandb-history sql -f report.sql -o report.csv;  echo "SELECT 1" | wandb-history sql -
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .. import errors
from ..errors import ConfigurationError, ConnectorError
from .options import add_timeout

if TYPE_CHECKING:
    from ..api import Api

FORMATS = ("table", "csv", "json", "parquet")
EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
}
_WRAPPED = re.compile(r"^.*?exporting a stream from the object registered as '[^']*' failed: ", re.S)
_INTERNAL = re.compile(r"__wandb_history_long|__wandb_runs")


def clean_error(message: str) -> str:
    """DuckDB's message without the wrapper it puts around an error raised by a Python source.

    >>> clean_error("Invalid Input Error: exporting a stream from the object registered as "
    ...             "'wandb_history' failed: ConfigurationError: unknown key 'x'")
    "ConfigurationError: unknown key 'x'"
    """
    text = _WRAPPED.sub("", message, count=1)
    return _INTERNAL.sub(lambda m: "wandb_history" if "history" in m.group(0) else "wandb_runs", text)


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
    if name in ("NoSuchPathError", "LocalFileError") and sep:
        return errors.LocalFileError(rest)
    return ConfigurationError(message)


def output_format(fmt: str | None, output: str | None) -> str:
    """The format to write: `fmt` when given, else the one `output`'s extension names, else ``table``.

    >>> output_format(None, None), output_format(None, "x.PARQUET"), output_format(None, "x.ndjson")
    ('table', 'parquet', 'json')
    >>> output_format("csv", "x.txt")
    'csv'
    >>> output_format(None, "x.txt")
    Traceback (most recent call last):
    ...
    connector.errors.ConfigurationError: cannot tell the format of --output x.txt from its extension: use .parquet, .csv, .json, .jsonl or .ndjson, or give --format
    """
    if fmt is not None:
        if fmt not in FORMATS:
            raise ConfigurationError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        return fmt
    if output is None:
        return "table"
    found = EXTENSIONS.get(Path(output).suffix.lower())
    if found is None:
        known = [e for e in EXTENSIONS if e != ".pq"]
        raise ConfigurationError(
            f"cannot tell the format of --output {output} from its extension: use "
            f"{', '.join(known[:-1])} or {known[-1]}, or give --format"
        )
    return found


def read_query(query: str | None, file: str | None, stdin: TextIO | None = None) -> str:
    """The SQL text: `query`, the contents of `file`, or stdin for ``-`` (either) or a piped stdin.

    >>> import io
    >>> read_query("SELECT 1", None), read_query("-", None, io.StringIO("SELECT 2\\n"))
    ('SELECT 1', 'SELECT 2\\n')
    """
    stream = stdin or sys.stdin
    if query is not None and file is not None:
        raise ConfigurationError("give the query as an argument or with -f FILE, not both")
    if file == "-" or query == "-":
        text = stream.read()
    elif file is not None:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigurationError(f"-f {file}: not UTF-8 text ({exc.reason})") from None
    elif query is not None:
        text = query
    elif stream is not None and not stream.isatty():
        text = stream.read()
    else:
        raise ConfigurationError('no query: give "SELECT ...", -f FILE, or - to read it from stdin')
    if not text.strip():
        raise ConfigurationError("the query is empty")
    return text


def run_sql(
    query: str,
    *,
    fmt: str | None = None,
    output: str | None = None,
    api: Api | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Run `query` with everything registered and write its result; returns the row count.

    `fmt` None infers the format from `output` (`output_format`).

    >>> import io
    >>> out = io.StringIO()
    >>> run_sql("SELECT '{\\"lr\\": 0.1}'::JSON AS config", fmt="json", stdout=out)
    1
    >>> out.getvalue()
    '{"config":{"lr":0.1}}\\n'
    """
    import duckdb

    from ..engines.duckdb import register, unregister

    fmt = output_format(fmt, output)
    if fmt == "parquet" and output is None:
        raise ConfigurationError("--format parquet needs --output FILE")
    out = stdout or sys.stdout
    con = duckdb.connect()
    try:
        register(con, api)
        try:
            relation = con.sql(query)
            table = relation.to_arrow_table() if relation is not None else None
            types = [str(t) for t in relation.types] if relation is not None else []
        except duckdb.Error as exc:
            raise _typed_error(clean_error(str(exc))) from exc
        if table is None:
            return 0
        result = con.from_arrow(table)
        if fmt == "table":
            _write_text(str(result), output, out)
        elif fmt == "json":
            _write_json(table, types, output, out)
        else:
            _write_file(result, fmt, output, out)
        return table.num_rows
    finally:
        unregister(con)
        con.close()


def _write_text(text: str, output: str | None, out: TextIO) -> None:
    if output is None:
        out.write(text if text.endswith("\n") else text + "\n")
    else:
        Path(output).write_text(text, encoding="utf-8")


def _json_default(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "backslashreplace")
    return str(value)


def json_lines(table: Any, types: list[str]) -> Iterator[bytes]:
    """One JSON object per row: JSON columns parsed (nested), maps as objects, NaN/±inf as null.

    >>> import pyarrow as pa
    >>> t = pa.table({"c": ['{"a": [1, NaN]}'], "x": [float("inf")]})
    >>> list(json_lines(t, ["JSON", "DOUBLE"]))
    [b'{"c":{"a":[1,null]},"x":null}\\n']
    """
    import orjson
    import pyarrow as pa

    names = table.column_names
    parsed = {n for n, t in zip(names, types, strict=False) if t == "JSON"}
    maps = {f.name for f in table.schema if pa.types.is_map(f.type)}
    for batch in table.to_batches():
        for row in batch.to_pylist():
            for name in parsed:
                if isinstance(row.get(name), str):
                    row[name] = json.loads(row[name])  # accepts W&B's NaN / Infinity tokens
            for name in maps:
                if row.get(name) is not None:
                    row[name] = {str(k): v for k, v in row[name]}
            yield orjson.dumps(row, default=_json_default, option=orjson.OPT_NON_STR_KEYS) + b"\n"


def _write_json(table: Any, types: list[str], output: str | None, out: TextIO) -> None:
    if output is None:
        for line in json_lines(table, types):
            out.write(line.decode("utf-8"))
        return
    with open(output, "wb") as handle:
        for line in json_lines(table, types):
            handle.write(line)


def _write_file(result: Any, fmt: str, output: str | None, out: TextIO) -> None:
    if fmt == "parquet":
        result.write_parquet(output)
        return
    if output is not None:
        result.write_csv(output)
        return
    tmpdir = tempfile.mkdtemp(prefix="wandb-history-sql-")
    try:
        target = str(Path(tmpdir) / "result.csv")
        result.write_csv(target)
        with open(target, encoding="utf-8") as handle:
            shutil.copyfileobj(handle, out)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _api(timeout: float) -> Api | None:
    """`connector.api.default_api` retrying for at most `timeout` seconds per request.

    None when the environment is unusable (a malformed ``WANDB_BASE_URL``): the macros then make
    the default `Api` at their first remote query and raise that error there, so local-only queries
    still run.
    """
    from ..api import default_api
    from ..remote.transport import RetryPolicy

    try:
        return default_api(retry=RetryPolicy(deadline=timeout))
    except ConfigurationError:
        return None


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `sql` sub-command (auto-loaded by `connector.cli`)."""
    p = sub.add_parser(
        "sql",
        help="run a DuckDB query with wandb_history() and wandb_runs() registered",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument(
        "query",
        nargs="?",
        default=None,
        help="the SQL to run, e.g. \"SELECT * FROM wandb_runs('e/p')\"; - reads it from stdin",
    )
    p.add_argument("--file", "-f", default=None, metavar="FILE", help="read the SQL from FILE (- for stdin)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="output format (default: from --output's extension, else table)",
    )
    p.add_argument("--output", "-o", default=None, metavar="FILE", help="write here instead of stdout")
    add_timeout(p)

    def run(args: argparse.Namespace) -> int:
        query = read_query(args.query, args.file)
        fmt = output_format(args.format, args.output)  # a bad extension fails before any request
        run_sql(query, fmt=fmt, output=args.output, api=_api(args.timeout))
        return 0

    p.set_defaults(func=run)
