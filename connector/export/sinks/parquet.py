"""Parquet dataset destination: hive-partitioned files per step range, state file replaced last.

Layout of a dataset folder ``D``::

    D/history/entity=<e>/project=<p>/run_id=<r>/part-000000000000-000000010000.parquet
    D/history_long/...            (--layout long: same partitions and names, long rows)
    D/system_metrics/.../part-ts-<first ms>-<last ms>.parquet
    D/runs/runs.parquet           (RUNS_SCHEMA, rewritten atomically at the end of each export)
    D/_wandb_export_state.json    (the checkpoint, unless --checkpoint PATH)

Partition values are percent-encoded (``urllib.parse.quote``); the files do not repeat the
partition columns. A history file covers the aligned step range ``[k*chunk_steps,
(k+1)*chunk_steps)`` named in it (``part-<key set>-...`` when ``--keys`` selected columns), so the
same chunk always has the same name. A chunk is written to a temp file (``.part-....tmp``, which no
``*.parquet`` glob matches), ``fsync``-ed and renamed into place; **then** the state file is replaced
atomically. A crash between the two leaves a file the state does not cover yet: the resumed export
rewrites the same chunk under the same name (a partly filled chunk is merged with the rows already
in its file, on ``_step``). A run exported afresh (no watermark, or rewound) first removes its old
files.

Columns may differ between files (a key that appears later, a run with other keys). Read the dataset
with DuckDB, unioning columns by name and taking the partition columns as text::

    SELECT * FROM read_parquet('D/history/**/*.parquet', hive_partitioning = true,
                               union_by_name = true, hive_types_autocast = false)

(`read_table` does exactly that.) A column keeps its first type across the whole dataset (the
state file records the types); later values of another type go to ``_extra``.

A full refresh builds ``D.__refresh__`` and swaps it in with two renames (``D`` → ``D.__old__``,
``D.__refresh__`` → ``D``), then removes ``D.__old__``; a crash between the renames is completed the
next time the dataset is opened.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote as urlquote

import pyarrow as pa
import pyarrow.parquet as pq

from ...arrow import STEP_COLUMN
from ..checkpoint import (
    ALL_KEYS,
    EVENTS,
    JsonStateStore,
    StateKey,
    StreamState,
    crash_point,
    write_atomic,
)
from ..tables import (
    EVENTS_TABLE,
    HISTORY_TABLE,
    LONG_TABLE,
    RUN_COLUMNS,
    RUNS_TABLE,
    conform,
    to_long,
)
from .base import Interrupted

STATE_FILE = "_wandb_export_state.json"
REFRESH, OLD = ".__refresh__", ".__old__"


def partition(root: Path, table: str, entity: str, project: str, run_id: str) -> Path:
    """The folder of one run's files in `table`."""
    return root / table / f"entity={urlquote(entity, safe='')}" / f"project={urlquote(project, safe='')}" / (
        f"run_id={urlquote(run_id, safe='')}"
    )


def chunk_file_name(key_set: str, lo: int, chunk_steps: int) -> str:
    """The deterministic name of the file holding the aligned chunk that contains step `lo`.

    >>> chunk_file_name("*", 12500, 10000)
    'part-000000010000-000000020000.parquet'
    """
    start = lo // chunk_steps * chunk_steps
    tag = "" if key_set == ALL_KEYS else f"{key_set}-"
    return f"part-{tag}{start:012d}-{start + chunk_steps:012d}.parquet"


def read_table(root: str | os.PathLike[str], table: str = HISTORY_TABLE) -> pa.Table:
    """Read one table of a dataset (columns unioned by name, partitions as text) as Arrow.

    >>> import tempfile
    >>> read_table(tempfile.mkdtemp()).num_rows
    0
    """
    import duckdb

    base = Path(root) / table
    if not any(base.glob("**/*.parquet")):
        return pa.table({})
    pattern = str(base / "**" / "*.parquet").replace("'", "''")
    con = duckdb.connect()
    try:
        return con.sql(
            f"SELECT * FROM read_parquet('{pattern}', hive_partitioning = true, union_by_name = true, "
            "hive_types_autocast = false)"
        ).to_arrow_table()
    finally:
        con.close()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover_swap(root: Path) -> None:
    """Complete a full-refresh swap that a crash interrupted (see the module docstring)."""
    refresh, old = Path(str(root) + REFRESH), Path(str(root) + OLD)
    if not root.exists() and old.exists() and refresh.exists():
        os.rename(refresh, root)
    if root.exists() and old.exists():
        shutil.rmtree(old)


class ParquetSink:
    """Export into a hive-partitioned Parquet dataset folder."""

    def __init__(
        self,
        target: str,
        *,
        layout: str,
        full_refresh: bool = False,
        checkpoint: str | None = None,
        read_only: bool = False,
    ) -> None:
        self.final = Path(target)
        self.display = str(target)
        self.layout = layout
        self.full_refresh = full_refresh
        if not read_only:
            recover_swap(self.final)
        self.root = Path(str(self.final) + REFRESH) if full_refresh else self.final
        self.checkpoint = checkpoint
        state_path = Path(checkpoint + (REFRESH if full_refresh else "")) if checkpoint else self.root / STATE_FILE
        self.store = JsonStateStore(state_path)
        self.read_only = read_only
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._fresh_done: set[StateKey] = set()

    # -- state -----------------------------------------------------------------------------------
    def load_states(self) -> dict[StateKey, StreamState]:
        return self.store.load()

    def commit_state(self, states: Sequence[StreamState]) -> None:
        self.store.commit(states)

    def _types(self, table: str) -> dict[str, pa.DataType]:
        names = (self.store.meta.get("columns") or {}).get(table) or {}
        return {name: _type_from_str(t) for name, t in names.items()}

    # -- runs ------------------------------------------------------------------------------------
    def begin_run(self, run_row: dict[str, Any], reset: Sequence[StreamState] = ()) -> None:
        key = (run_row["entity"], run_row["project"], run_row["run_id"])
        with self._lock:
            self._runs[key] = run_row
        if reset:
            self.store.commit(reset)  # the watermark goes first: the files are then only leftovers
            for state in reset:
                self._remove_files(state.key)

    def _remove_files(self, key: StateKey) -> None:
        prefix = "part-" + ("" if key.key_set == ALL_KEYS else f"{key.key_set}-")
        for table in (HISTORY_TABLE, LONG_TABLE):
            folder = partition(self.root, table, key.entity, key.project, key.run_id)
            if not folder.exists():
                continue
            for f in folder.glob("*.parquet"):
                rest = f.name[len(prefix):] if f.name.startswith(prefix) else ""
                if rest[:1].isdigit() and not f.name.startswith("part-ts-"):
                    f.unlink()
        self._fresh_done.add(key)

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
        del fresh  # chunk files have deterministic names: a rewrite replaces, never duplicates
        key = state.key
        if stream == EVENTS:
            return self._write_events(table, state, stop)
        committed = self.store.load().get(key)
        if (committed is None or committed.watermark is None) and key not in self._fresh_done:
            self._remove_files(key)
        long = self.layout == "long"
        name = LONG_TABLE if long else HISTORY_TABLE
        folder = partition(self.root, name, key.entity, key.project, key.run_id)
        assert state.chunk_steps is not None
        path = folder / chunk_file_name(key.key_set, int(lo), state.chunk_steps)
        data = table.drop_columns(list(RUN_COLUMNS))
        with self._lock:
            new_types: dict[str, str] = {}
            if long:
                data = to_long(table).drop_columns(list(RUN_COLUMNS))
            else:
                types = self._types(name)
                data = conform(table, types).drop_columns(list(RUN_COLUMNS))
                new_types = {f.name: str(f.type) for f in data.schema if f.name not in types}
        data = _plain(data)
        start = int(lo) // state.chunk_steps * state.chunk_steps
        if int(lo) > start and path.exists():
            old = pq.read_table(path)
            steps = old.column(STEP_COLUMN)
            import pyarrow.compute as pc

            keep = pc.or_(pc.less(steps, int(lo)), pc.greater_equal(steps, int(hi)))
            data = pa.concat_tables([old.filter(keep), data], promote_options="default")
            sort = [(STEP_COLUMN, "ascending")] + ([("key", "ascending")] if long else [])
            data = data.sort_by(sort)
        self._replace(path, data, stop)
        meta = None
        if new_types:
            with self._lock:
                columns = dict(self.store.meta.get("columns") or {})
                merged = dict(columns.get(name) or {})
                for k, v in new_types.items():
                    merged.setdefault(k, v)
                columns[name] = merged
                meta = {"columns": columns}
        self.store.commit([state], meta=meta)
        crash_point("after-commit")
        return table.num_rows

    def _replace(self, path: Path, data: pa.Table, stop: threading.Event | None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
        if data.num_rows:
            pq.write_table(data, tmp, compression="zstd")
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        try:
            crash_point("before-commit")
            if stop is not None and stop.is_set():
                raise Interrupted("interrupted before the chunk was renamed into place")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if data.num_rows:
            os.replace(tmp, path)
        else:
            path.unlink(missing_ok=True)
        _fsync_dir(path.parent)
        crash_point("after-data")

    def _write_events(self, table: pa.Table, state: StreamState, stop: threading.Event | None) -> int:
        key = state.key
        folder = partition(self.root, EVENTS_TABLE, key.entity, key.project, key.run_id)
        committed = self.store.load().get(key)
        floor = committed.watermark if committed is not None and committed.watermark is not None else None
        if folder.exists():  # files past the committed watermark are leftovers of a crash
            for f in folder.glob("part-ts-*.parquet"):
                first = int(f.name.split("-")[2])
                if floor is None or first > int(floor * 1000):
                    f.unlink()
        ts = table.column("_timestamp").to_pylist()
        with self._lock:
            types = self._types(EVENTS_TABLE)
            data = _plain(conform(table, types).drop_columns(list(RUN_COLUMNS)))
            new_types = {f.name: str(f.type) for f in data.schema if f.name not in types}
        path = folder / f"part-ts-{int(min(ts) * 1000):015d}-{int(max(ts) * 1000):015d}.parquet"
        self._replace(path, data, stop)
        meta = None
        if new_types:
            with self._lock:
                columns = dict(self.store.meta.get("columns") or {})
                columns[EVENTS_TABLE] = {**new_types, **(columns.get(EVENTS_TABLE) or {})}
                meta = {"columns": columns}
        self.store.commit([state], meta=meta)
        crash_point("after-commit")
        return table.num_rows

    # -- end -------------------------------------------------------------------------------------
    def finish(self) -> None:
        from ...runs_table import RUNS_SCHEMA

        path = self.root / RUNS_TABLE / "runs.parquet"
        rows: dict[tuple[str, str, str], dict[str, Any]] = {}
        if path.exists():
            for row in pq.read_table(path).to_pylist():
                rows[(row["entity"], row["project"], row["run_id"])] = row
        rows.update(self._runs)
        if rows or path.exists():
            table = pa.Table.from_pylist([rows[k] for k in sorted(rows)], schema=RUNS_SCHEMA)
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, compression="zstd")
            write_atomic(path, sink.getvalue().to_pybytes())
        if self.full_refresh:
            self._swap()

    def _swap(self) -> None:
        crash_point("before-swap")
        old = Path(str(self.final) + OLD)
        if self.final.exists():
            os.rename(self.final, old)
        os.rename(self.root, self.final)
        if old.exists():
            shutil.rmtree(old)
        if self.checkpoint and os.path.exists(self.checkpoint + REFRESH):
            os.replace(self.checkpoint + REFRESH, self.checkpoint)

    def close(self) -> None:
        pass


def _plain(table: pa.Table) -> pa.Table:
    """`table` without field metadata (the JSON tags are for conversion only)."""
    return table.cast(pa.schema([pa.field(f.name, f.type, f.nullable) for f in table.schema]))


def _type_from_str(text: str) -> pa.DataType:
    return {"double": pa.float64(), "bool": pa.bool_(), "string": pa.string(), "int64": pa.int64()}.get(
        text, pa.string()
    )
