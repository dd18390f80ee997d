"""``wandb-history status DEST``: what an export destination holds, read without changing anything.

DEST is what ``export --to`` took: a DuckDB file, a ``postgresql://`` URL or a Parquet dataset folder.
The checkpoints are read with the exporter's own readers (the ``_wandb_export_state`` table through
`connector.export.sinks.base.state_from_row`, the dataset's ``_wandb_export_state.json`` — or
``--checkpoint PATH`` — through `connector.export.checkpoint.JsonStateStore`), and the rows are
counted per run and table. One line per (run, table, key set): the covered steps ``min_step..
watermark``, the rows and distinct steps the run has in that table, the run's state when last
committed, when that state was written, and ``deleted_at`` for runs gone upstream.

**Read-only**: nothing is created, migrated or locked. A DuckDB file is opened with
``read_only=True`` (a file an export is writing right now is reported as busy, exit 4: DuckDB allows
one writer and no reader beside it); PostgreSQL is read in a read-only session without the export's
advisory lock; a Parquet dataset's lock file is never taken and an interrupted full refresh is not
completed. A destination that does not exist or holds no export state is an error (exit 2).

>>> import tempfile, os
>>> destination_status(os.path.join(tempfile.mkdtemp(), "none.duckdb"))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
connector.errors.DestinationError: ...none.duckdb does not exist (status never creates a destination)
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DestinationBusyError, DestinationError
from .checkpoint import EVENTS, HISTORY_LONG, JsonStateStore, StreamState
from .sinks.base import quote, state_from_row
from .sinks.dest import parse_destination
from .tables import EVENTS_TABLE, HISTORY_TABLE, LONG_TABLE, RUNS_TABLE, STATE_TABLE

STATE_COLUMNS = (
    "entity", "project", "run_id", "stream", "key_set", "watermark", "last_step", "line_count",
    "run_state", "rewinds", "deleted_at", "keys", "layout", "chunk_steps", "min_step",
)  # fmt: skip  -- the order state_from_row reads
TABLE_OF_STREAM = {"history": HISTORY_TABLE, HISTORY_LONG: LONG_TABLE, EVENTS: EVENTS_TABLE}
STEP_TABLES = (HISTORY_TABLE, LONG_TABLE)
Counts = dict[tuple[str, str, str], tuple[int, int | None]]  # (e, p, r) -> (rows, distinct steps)


@dataclass(frozen=True)
class StateStatus:
    """One checkpoint: a (run, table, key set) and what the destination holds for it."""

    entity: str
    project: str
    run_id: str
    table: str
    layout: str
    key_set: str
    keys: list[str] | None
    min_step: int | None
    watermark: float | int | None
    rows: int | None
    steps: int | None
    last_step: int | None
    line_count: int | None
    run_state: str | None
    rewinds: int
    updated_at: str | None
    deleted_at: str | None

    @property
    def run(self) -> str:
        return f"{self.entity}/{self.project}/{self.run_id}"


@dataclass
class DestinationStatus:
    """What `destination_status` found: totals, then one `StateStatus` per checkpoint."""

    destination: str
    kind: str
    tables: dict[str, int] = field(default_factory=dict)
    states: list[StateStatus] = field(default_factory=list)
    last_export: str | None = None

    @property
    def runs(self) -> int:
        return len({s.run for s in self.states})

    @property
    def deleted_runs(self) -> int:
        return len({s.run for s in self.states if s.deleted_at})

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``status --json`` prints)."""
        return {
            "destination": self.destination,
            "kind": self.kind,
            "runs": self.runs,
            "deleted_runs": self.deleted_runs,
            "last_export": self.last_export,
            "tables": dict(self.tables),
            "states": [{"run": s.run, **asdict(s)} for s in self.states],
        }

    def render(self) -> str:
        """The human-readable report: a header, then an aligned table of the checkpoints.

        >>> st = DestinationStatus("d.duckdb", "duckdb", {"history": 3}, [StateStatus(
        ...     "e", "p", "r", "history", "wide", "*", None, 0, 2, 3, 3, 2, 3, "finished", 0, "2024-01-01T00:00:00Z", None)])
        >>> print(st.render())  # doctest: +NORMALIZE_WHITESPACE
        destination  d.duckdb (duckdb)
        runs         1
        last export  -
        tables       history 3 rows
        <BLANKLINE>
        run    table    keys  covered  watermark  rows  steps  state     updated               deleted_at
        e/p/r  history  all   0..2     2          3     3      finished  2024-01-01T00:00:00Z  -
        """
        deleted = f" ({self.deleted_runs} deleted upstream)" if self.deleted_runs else ""
        tables = ", ".join(f"{name} {n} rows" for name, n in self.tables.items()) or "-"
        head = [
            f"destination  {self.destination} ({self.kind})",
            f"runs         {self.runs}{deleted}",
            f"last export  {self.last_export or '-'}",
            f"tables       {tables}",
        ]
        if not self.states:
            return "\n".join([*head, "", "no checkpoints: nothing exported yet"])
        header = ["run", "table", "keys", "covered", "watermark", "rows", "steps", "state", "updated", "deleted_at"]
        body = [[
            s.run, s.table, "all" if s.keys is None else ",".join(s.keys),
            _covered(s), _text(s.watermark), _text(s.rows), _text(s.steps), _text(s.run_state),
            _text(s.updated_at), _text(s.deleted_at),
        ] for s in self.states]  # fmt: skip
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [header, *body]]
        return "\n".join([*head, "", *lines])


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _covered(s: StateStatus) -> str:
    if s.watermark is None:
        return "-"
    if s.table == EVENTS_TABLE:
        return f"..{_text(s.watermark)}"
    return f"{s.min_step or 0}..{_text(s.watermark)}"


def _status(state: StreamState, counts: dict[str, Counts], updated_at: str | None) -> StateStatus:
    k = state.key
    table = TABLE_OF_STREAM.get(k.stream, k.stream)
    rows, steps = counts.get(table, {}).get((k.entity, k.project, k.run_id), (0, 0))
    return StateStatus(
        k.entity, k.project, k.run_id, table, state.layout, k.key_set,
        list(state.keys) if state.keys is not None else None, state.min_step,
        state.watermark, rows, steps if table in STEP_TABLES else None, state.last_step,
        state.line_count, state.run_state, state.rewinds, updated_at, state.deleted_at,
    )  # fmt: skip


def _sorted(states: list[StateStatus]) -> list[StateStatus]:
    return sorted(states, key=lambda s: (s.entity, s.project, s.run_id, s.table, s.key_set))


# -- SQL destinations (DuckDB, PostgreSQL) --------------------------------------------------------


def _sql_status(
    display: str,
    kind: str,
    execute: Callable[[str], list[tuple[Any, ...]]],
    columns_of: Callable[[str], list[str]],
    external: str | None,
) -> DestinationStatus:
    status = DestinationStatus(display, kind)
    tables = [t for t in (HISTORY_TABLE, LONG_TABLE, EVENTS_TABLE, RUNS_TABLE) if columns_of(t)]
    state_columns = columns_of(STATE_TABLE)
    if not state_columns and external is None:
        raise DestinationError(
            f"{display} holds no {STATE_TABLE} table: it was not written by wandb-history export "
            "(or its checkpoint lives in a --checkpoint file: pass it with --checkpoint)"
        )
    counts: dict[str, Counts] = {}
    for table in tables:
        status.tables[table] = int(execute(f"SELECT count(*) FROM {quote(table)}")[0][0])
        if table == RUNS_TABLE:
            continue
        steps = "count(DISTINCT _step)" if table in STEP_TABLES else "NULL"
        rows = execute(
            f"SELECT entity, project, run_id, count(*), {steps} FROM {quote(table)} "
            "GROUP BY entity, project, run_id"
        )
        counts[table] = {(e, p, r): (int(n), None if s is None else int(s)) for e, p, r, n, s in rows}
    if external is not None:
        store = JsonStateStore(external)
        states: list[tuple[StreamState, str | None]] = [(s, None) for s in store.load().values()]
        status.last_export = _mtime(Path(external))
    else:
        have = set(state_columns)
        select = ", ".join(c if c in have else "NULL" for c in (*STATE_COLUMNS, "updated_at"))
        found = execute(f"SELECT {select} FROM {quote(STATE_TABLE)}")
        states = [(state_from_row(row[: len(STATE_COLUMNS)]), row[-1]) for row in found]
        status.last_export = max((u for _, u in states if u), default=None)
    status.states = _sorted([_status(s, counts, u) for s, u in states])
    return status


def _duckdb_status(path: str, external: str | None) -> DestinationStatus:
    import duckdb

    p = Path(path)
    if not p.exists():
        raise DestinationError(f"{path} does not exist (status never creates a destination)")
    if not p.is_file():
        raise DestinationError(f"{path} is not a DuckDB database file")
    try:
        con = duckdb.connect(path, read_only=True)
    except duckdb.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "lock" in first.lower():
            raise DestinationBusyError(
                f"{path} is open for writing by another process (an export?); try again when it is done"
            ) from None
        raise DestinationError(f"cannot open {path} as a DuckDB database: {first}") from None
    try:

        def execute(sql: str) -> list[tuple[Any, ...]]:
            return con.execute(sql).fetchall()

        def columns_of(table: str) -> list[str]:
            rows = con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = ? ORDER BY ordinal_position",
                [table],
            ).fetchall()
            return [name for (name,) in rows]

        return _sql_status(path, "duckdb", execute, columns_of, external)
    finally:
        con.close()


def _postgres_status(url: str, display: str, external: str | None) -> DestinationStatus:
    from .sinks.postgres import PostgresSink

    sink = PostgresSink(url, display=display, layout="wide", read_only=True)  # no advisory lock
    try:
        sink.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        sink.commit()

        def columns_of(table: str) -> list[str]:
            rows = sink.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                f"AND table_name = '{table}' ORDER BY ordinal_position"
            )
            return [name for (name,) in rows]

        return _sql_status(display, "postgres", sink.execute, columns_of, external)
    finally:
        sink.rollback()
        sink.close()


# -- Parquet datasets -----------------------------------------------------------------------------


def _mtime(path: Path) -> str | None:
    try:
        stamp = path.stat().st_mtime
    except OSError:
        return None
    return _dt.datetime.fromtimestamp(stamp, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parquet_counts(root: Path, table: str, states: Sequence[StreamState]) -> Counts:
    import pyarrow.parquet as pq

    from .sinks.parquet import partition

    out: Counts = {}
    for e, p, r in sorted({(s.key.entity, s.key.project, s.key.run_id) for s in states}):
        folder = partition(root, table, e, p, r)
        files = sorted(f for f in folder.glob("*.parquet") if not f.name.startswith(".")) if folder.is_dir() else []
        if not files:
            continue
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        steps: int | None = None
        if table in STEP_TABLES:
            seen: set[int] = set()
            for f in files:
                seen.update(pq.read_table(f, columns=["_step"]).column(0).to_pylist())  # type: ignore[arg-type]  # _step is non-nullable
            steps = len(seen)
        out[(e, p, r)] = (rows, steps)
    return out


def _parquet_status(folder: str, external: str | None) -> DestinationStatus:
    import pyarrow.parquet as pq

    from .sinks.parquet import STATE_FILE

    root = Path(folder)
    if not root.exists():
        raise DestinationError(f"{folder} does not exist (status never creates a destination)")
    if not root.is_dir():
        raise DestinationError(f"{folder} is not a folder: a Parquet dataset written by export is a folder")
    state_path = Path(external) if external else root / STATE_FILE
    if not state_path.is_file():
        raise DestinationError(
            f"{folder} holds no {STATE_FILE}: it is not a dataset written by wandb-history export "
            "(or its checkpoint lives in a --checkpoint file: pass it with --checkpoint)"
        )
    states = list(JsonStateStore(state_path).load().values())
    status = DestinationStatus(folder, "parquet", last_export=_mtime(state_path))
    counts: dict[str, Counts] = {}
    for table in (HISTORY_TABLE, LONG_TABLE, EVENTS_TABLE):
        if (root / table).is_dir():
            counts[table] = _parquet_counts(root, table, states)
            status.tables[table] = sum(n for n, _ in counts[table].values())
    runs_file = root / RUNS_TABLE / "runs.parquet"
    if runs_file.is_file():
        status.tables[RUNS_TABLE] = pq.ParquetFile(runs_file).metadata.num_rows
    status.states = _sorted([_status(s, counts, None) for s in states])
    return status


# -- entry points ---------------------------------------------------------------------------------


def destination_status(dest: str | os.PathLike[str], *, checkpoint: str | None = None) -> DestinationStatus:
    """Read what `dest` holds (module doc); `checkpoint` is the export's ``--checkpoint`` file, if any."""
    parsed = parse_destination(dest)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise DestinationError(f"--checkpoint {checkpoint} does not exist")
    if parsed.kind == "duckdb":
        return _duckdb_status(parsed.target, checkpoint)
    if parsed.kind == "postgres":
        return _postgres_status(parsed.target, parsed.display, checkpoint)
    return _parquet_status(parsed.target, checkpoint)


def print_status(dest: str, *, as_json: bool = False, checkpoint: str | None = None) -> int:
    """``wandb-history status``: print the report (or ``--json``); returns the exit status (0)."""
    status = destination_status(dest, checkpoint=checkpoint)
    if as_json:
        print(json.dumps(status.to_json(), indent=1, sort_keys=False, default=str))
    else:
        print(status.render())
    return 0
