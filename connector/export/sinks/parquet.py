"""Parquet dataset destination: hive-partitioned files per step range, state file replaced last.

Layout of a dataset folder ``D``::

    D/history/entity=<e>/project=<p>/run_id=<r>/part-000000000000-000000010000.parquet
    D/history_long/...            (--layout long: same partitions and names, long rows)
    D/system_metrics/.../part-ts-<first ms>-<last ms>.parquet
    D/runs/runs.parquet           (RUNS_SCHEMA, rewritten atomically at the end of each export)
    D/_wandb_export_state.json    (the checkpoint, unless --checkpoint PATH)
    D/.wandb-export.lock          (held while an export writes: one export at a time)
    D/_wandb_refresh/             (a full refresh in progress: the exporter's own staging area)

Partition values are percent-encoded (``urllib.parse.quote``); the files do not repeat the
partition columns. A history file covers the aligned step range ``[k*chunk_steps,
(k+1)*chunk_steps)`` named in it, so the same chunk always has the same name. Every key set
(``--keys``) writes into the same files: a chunk merges with the rows already in its file on
``_step`` (its own columns replaced, the other columns kept), so a (run, ``_step``) is one row
whatever options exported it. A chunk is written to a temp file (``.part-....tmp``, which no
``*.parquet`` glob matches), ``fsync``-ed and renamed into place; **then** the state file is
replaced atomically. A crash between the two leaves a file the state does not cover yet: the
resumed export rewrites the same chunk under the same name (merging on ``_step`` again).

**Ownership**: the sink refuses a folder whose table folders (``history/``, ``history_long/``,
``system_metrics/``, ``runs/``) hold anything it does not recognise, and never touches anything
outside them but its state, lock and staging files. A full refresh stages the runs it exports under
``D/_wandb_refresh/`` and swaps **those runs' partitions** in at the end through a journal
(``swap.json``: move the live partitions out, move the staged ones in, merge the state and the runs
table, clean up; a crash anywhere is completed when the dataset is next opened). Other runs,
projects and files are never touched.

Columns may differ between files (a key that appears later, a run with other keys); the state file
records the dataset-wide schema (`dataset_schema`). Read the dataset as one table with DuckDB,
unioning columns by name and taking the partition columns as text::

    SELECT * FROM read_parquet('D/history/**/*.parquet', hive_partitioning = true,
                               union_by_name = true, hive_types_autocast = false)

(`read_table` does exactly that), or with Polars, giving it the dataset schema so that columns a
file lacks come back as nulls (`scan_dataset` does exactly that)::

    pl.scan_parquet("D/history/**/*.parquet", hive_partitioning=True, schema=dataset_schema("D"),
                    missing_columns="insert", hive_schema={"entity": pl.String, ...})

Reading without ``union_by_name`` (DuckDB) or without the schema (Polars) takes the first file's
columns and silently drops the others. A column keeps its first type across the whole dataset (the
state file records the types); later values of another type go to ``_extra``. Keys whose name is
not a plain column name (`connector.core.columns.column_for_key`) are recorded in the state file's
``column_map``.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote as urlquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ...core.arrow import EXTRA_COLUMN, STEP_COLUMN
from ...core.columns import fold_collisions
from ...errors import DestinationError
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
    column_keys,
    conform,
    to_long,
)
from .base import Interrupted
from .dest import FolderLock, check_folder

STATE_FILE = "_wandb_export_state.json"
LOCK_FILE = FolderLock.NAME
STAGING = "_wandb_refresh"
JOURNAL = "swap.json"
REFRESH = ".__refresh__"
PARTITIONED = (HISTORY_TABLE, LONG_TABLE, EVENTS_TABLE)


def partition(root: Path, table: str, entity: str, project: str, run_id: str) -> Path:
    """The folder of one run's files in `table`."""
    return root / table / f"entity={urlquote(entity, safe='')}" / f"project={urlquote(project, safe='')}" / (
        f"run_id={urlquote(run_id, safe='')}"
    )


def chunk_file_name(lo: int, chunk_steps: int) -> str:
    """The deterministic name of the file holding the aligned chunk that contains step `lo`.

    >>> chunk_file_name(12500, 10000)
    'part-000000010000-000000020000.parquet'
    """
    start = lo // chunk_steps * chunk_steps
    return f"part-{start:012d}-{start + chunk_steps:012d}.parquet"


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


def dataset_schema(root: str | os.PathLike[str], table: str = HISTORY_TABLE) -> pa.Schema:
    """The dataset-wide Arrow schema of `table`'s files (every column any file has), from the
    state file; the partition columns are not in the files.

    >>> import tempfile
    >>> dataset_schema(tempfile.mkdtemp()).names
    []
    """
    if table == LONG_TABLE:
        from ..tables import LONG_SCHEMA

        return pa.schema([f for f in LONG_SCHEMA if f.name not in RUN_COLUMNS])
    store = JsonStateStore(Path(root) / STATE_FILE)
    store.load()
    columns = (store.meta.get("columns") or {}).get(table) or {}
    return pa.schema([pa.field(name, _type_from_str(typ)) for name, typ in columns.items()])


def scan_dataset(root: str | os.PathLike[str], table: str = HISTORY_TABLE) -> Any:
    """A Polars LazyFrame over one table of a dataset: every column of every file (nulls where a
    file lacks one), the partition columns as text.

    >>> import tempfile
    >>> scan_dataset(tempfile.mkdtemp()).collect().height
    0
    """
    import polars as pl

    base = Path(root) / table
    if not any(base.glob("**/*.parquet")):
        return pl.LazyFrame()
    schema = pl.Schema(pl.from_arrow(dataset_schema(root, table).empty_table()).schema)  # type: ignore[union-attr]  # a Table converts to a DataFrame
    return pl.scan_parquet(
        str(base / "**" / "*.parquet"), hive_partitioning=True, schema=schema,
        missing_columns="insert", hive_schema={c: pl.String for c in RUN_COLUMNS},
    )  # fmt: skip


def check_dataset_folder(root: Path) -> None:
    """Refuse a destination that is not (and cannot become) a dataset folder of this exporter.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "notes.txt").write_text("mine")
    4
    >>> check_dataset_folder(d)   # files outside the layout are fine (and never touched)
    >>> (d / "history").mkdir(); (d / "history" / "data.csv").write_text("x")
    1
    >>> check_dataset_folder(d)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    connector.errors.DestinationError: ... is not part of a wandb-history dataset...
    """
    if not check_folder(root, "a Parquet dataset needs a folder"):
        return
    for table in (*PARTITIONED, RUNS_TABLE):
        base = root / table
        if not base.exists():
            continue
        unknown = _unknown_entry(base, table)
        if unknown is not None:
            raise DestinationError(
                f"{unknown} is not part of a wandb-history dataset; refusing to write into {root} "
                "(move it away, or export into another folder)"
            )


def _unknown_entry(base: Path, table: str) -> Path | None:
    if not base.is_dir():
        return base
    if table == RUNS_TABLE:
        for entry in base.iterdir():
            if not (entry.name == "runs.parquet" or (entry.name.startswith(".runs.parquet.") and entry.name.endswith(".tmp"))):
                return entry
        return None
    levels = ("entity=", "project=", "run_id=")
    stack: list[tuple[Path, int]] = [(base, 0)]
    while stack:
        folder, depth = stack.pop()
        for entry in folder.iterdir():
            if depth < 3:
                if not (entry.is_dir() and entry.name.startswith(levels[depth])):
                    return entry
                stack.append((entry, depth + 1))
            elif not (
                entry.is_file()
                and (
                    (entry.name.startswith("part-") and entry.name.endswith(".parquet"))
                    or (entry.name.startswith(".part-") and entry.name.endswith(".tmp"))
                )
            ):
                return entry
    return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _staged_state_path(final: Path, checkpoint: str | None) -> Path:
    return Path(checkpoint + REFRESH) if checkpoint else final / STAGING / STATE_FILE


def complete_swap(final: Path, checkpoint: str | None = None) -> None:
    """Finish a full-refresh swap from its journal (idempotent; see the module docstring)."""
    staging = final / STAGING
    journal_path = staging / JOURNAL
    if not journal_path.exists():
        return
    journal = json.loads(journal_path.read_text(encoding="utf-8"))
    runs = [tuple(r) for r in journal["runs"]]
    old = staging / "old"
    if journal["phase"] == "out":
        _move_partitions(runs, final, old)
        journal["phase"] = "in"
        write_atomic(journal_path, json.dumps(journal).encode())
    if journal["phase"] == "in":
        _move_partitions(runs, staging, final)
        _merge_states(final, checkpoint, set(runs))
        _merge_runs_file(final, staging)
        journal["phase"] = "clean"
        write_atomic(journal_path, json.dumps(journal).encode())
    staged_state = _staged_state_path(final, checkpoint)
    if checkpoint:
        staged_state.unlink(missing_ok=True)
    shutil.rmtree(staging, ignore_errors=True)


def _move_partitions(runs: list[tuple[Any, ...]], source: Path, target: Path) -> None:
    """Rename each run's partition folders from `source` to `target` (idempotent: a partition
    already moved is no longer in `source`)."""
    for table in PARTITIONED:
        for e, p, r in runs:
            here = partition(source, table, e, p, r)
            if here.exists():
                there = partition(target, table, e, p, r)
                there.parent.mkdir(parents=True, exist_ok=True)
                Path(here).rename(there)


def _merge_states(final: Path, checkpoint: str | None, runs: set[tuple[Any, ...]]) -> None:
    staged = JsonStateStore(_staged_state_path(final, checkpoint))
    new_states = staged.load()
    live_path = Path(checkpoint) if checkpoint else final / STATE_FILE
    live = JsonStateStore(live_path)
    kept = [s for k, s in live.load().items() if (k.entity, k.project, k.run_id) not in runs]
    meta = dict(live.meta)
    for name in ("columns", "column_map"):
        merged = {t: dict(v) for t, v in (meta.get(name) or {}).items()}
        for table, values in (staged.meta.get(name) or {}).items():
            for k, v in values.items():
                merged.setdefault(table, {}).setdefault(k, v)
        meta[name] = merged
    fresh = JsonStateStore(live_path.with_name(live_path.name + ".swap"))
    fresh.commit([*kept, *new_states.values()], meta=meta)
    os.replace(fresh.path, live_path)


def _merge_runs_file(final: Path, staging: Path) -> None:
    from ...runs_table import RUNS_SCHEMA

    staged = staging / RUNS_TABLE / "runs.parquet"
    if not staged.exists():
        return
    rows = _runs_rows(final / RUNS_TABLE / "runs.parquet")
    rows.update(_runs_rows(staged))
    _write_runs(final / RUNS_TABLE / "runs.parquet", rows, RUNS_SCHEMA)


def _runs_rows(path: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    if not path.exists():
        return {}
    return {(r["entity"], r["project"], r["run_id"]): r for r in pq.read_table(path).to_pylist()}


def _write_runs(path: Path, rows: dict[tuple[str, str, str], dict[str, Any]], schema: pa.Schema) -> None:
    table = pa.Table.from_pylist([rows[k] for k in sorted(rows)], schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    write_atomic(path, sink.getvalue().to_pybytes())


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
        self.checkpoint = checkpoint
        self.read_only = read_only
        self.prepared = False
        self._folder_lock: FolderLock | None = None
        check_dataset_folder(self.final)
        self.created = not self.final.exists()
        if not read_only:
            self._folder_lock = FolderLock(self.final)
            complete_swap(self.final, checkpoint)
        self.root = self.final / STAGING if full_refresh else self.final
        self.live = JsonStateStore(Path(checkpoint) if checkpoint else self.final / STATE_FILE)
        self.live.load()  # a corrupt state file is refused now, before any API work
        self.store = JsonStateStore(_staged_state_path(self.final, checkpoint)) if full_refresh else self.live
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, str, str], dict[str, Any]] = {}

    # -- state -----------------------------------------------------------------------------------
    def load_states(self) -> dict[StateKey, StreamState]:
        return self.live.load()

    def prepare(self) -> None:
        if self.full_refresh:  # the staging area is the exporter's own: a refresh starts clean
            shutil.rmtree(self.final / STAGING, ignore_errors=True)
            _staged_state_path(self.final, self.checkpoint).unlink(missing_ok=True)
            self.store = JsonStateStore(_staged_state_path(self.final, self.checkpoint))
        self.prepared = True

    def commit_state(self, states: Sequence[StreamState]) -> None:
        self.store.commit(states)

    def _meta(self, name: str, table: str) -> dict[str, Any]:
        out = dict(((self.live.meta.get(name) or {}).get(table)) or {})
        if self.store is not self.live:
            out.update(((self.store.meta.get(name) or {}).get(table)) or {})
        return out

    def _types(self, table: str) -> dict[str, pa.DataType]:
        return {name: _type_from_str(t) for name, t in self._meta("columns", table).items()}

    def _record_meta(self, table: str, types: dict[str, str], names: dict[str, str]) -> dict[str, Any] | None:
        """The state-file meta after adding column types and mapped names (None: unchanged)."""
        if not types and not names:
            return None
        meta: dict[str, Any] = {}
        for name, new in (("columns", types), ("column_map", names)):
            current = {t: dict(v) for t, v in (self.store.meta.get(name) or {}).items()}
            merged = current.setdefault(table, {})
            for k, v in new.items():
                merged.setdefault(k, v)
            meta[name] = current
        return meta

    # -- runs ------------------------------------------------------------------------------------
    def begin_run(self, run_row: dict[str, Any], reset: Sequence[StreamState] = ()) -> None:
        key = (run_row["entity"], run_row["project"], run_row["run_id"])
        with self._lock:
            self._runs[key] = run_row
        if reset:
            self.store.commit(reset)  # the watermarks go first: the files are then only leftovers
            for table in (HISTORY_TABLE, LONG_TABLE):
                folder = partition(self.root, table, *key)
                for f in folder.glob("part-*.parquet") if folder.exists() else ():
                    f.unlink()

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
        del fresh  # chunk files have deterministic names: a rewrite merges, never duplicates
        if stream == EVENTS:
            return self._write_events(table, state, stop)
        key = state.key
        long = self.layout == "long"
        name = LONG_TABLE if long else HISTORY_TABLE
        folder = partition(self.root, name, key.entity, key.project, key.run_id)
        assert state.chunk_steps is not None
        path = folder / chunk_file_name(int(lo), state.chunk_steps)
        fixed = (*RUN_COLUMNS, STEP_COLUMN, EXTRA_COLUMN)
        mapped = column_keys(table)
        new_types: dict[str, str] = {}
        with self._lock:
            if not long:
                table, mapped = _fold_names(table, mapped, [*fixed, *self._types(name)])
            names = [n for n in table.column_names if n not in fixed]
            replaced = None if key.key_set == ALL_KEYS else {mapped.get(n, n) if long else n for n in names}
            if long:
                data = to_long(table, mapped).drop_columns(list(RUN_COLUMNS))
                mapped = {}
            else:
                types = self._types(name)
                data = conform(table, types).drop_columns(list(RUN_COLUMNS))
                new_types = {f.name: str(f.type) for f in data.schema if f.name not in types}
        data = _plain(data)
        if path.exists():
            data = _merge_file(pq.read_table(path), data, int(lo), int(hi), long, replaced)
        self._replace(path, data, stop)
        self.store.commit([state], meta=self._record_meta(name, new_types, mapped))
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
        ts: list[float] = table.column("_timestamp").to_pylist()  # type: ignore[assignment]  # events_table drops rows without one
        mapped = column_keys(table)
        with self._lock:
            table, mapped = _fold_names(table, mapped, [*RUN_COLUMNS, "_timestamp", EXTRA_COLUMN, *self._types(EVENTS_TABLE)])
            types = self._types(EVENTS_TABLE)
            data = _plain(conform(table, types).drop_columns(list(RUN_COLUMNS)))
            new_types = {f.name: str(f.type) for f in data.schema if f.name not in types}
        path = folder / f"part-ts-{int(min(ts) * 1000):015d}-{int(max(ts) * 1000):015d}.parquet"
        self._replace(path, data, stop)
        self.store.commit([state], meta=self._record_meta(EVENTS_TABLE, new_types, mapped))
        crash_point("after-commit")
        return table.num_rows

    # -- end -------------------------------------------------------------------------------------
    def finish(self) -> None:
        from ...runs_table import RUNS_SCHEMA

        path = self.root / RUNS_TABLE / "runs.parquet"
        rows = _runs_rows(path)
        rows.update(self._runs)
        if rows:
            _write_runs(path, rows, RUNS_SCHEMA)
        if self.full_refresh:
            self._swap()

    def _swap(self) -> None:
        crash_point("before-swap")
        staging = self.final / STAGING
        runs = sorted(self._runs)
        write_atomic(staging / JOURNAL, json.dumps({"phase": "out", "runs": runs}).encode())
        complete_swap(self.final, self.checkpoint)

    def close(self) -> None:
        if self._folder_lock is not None:  # a folder made here for the lock and never written is ours
            self._folder_lock.release(remove_folder=self.created and not self.prepared)
            self._folder_lock = None


def _merge_file(
    old: pa.Table, new: pa.Table, lo: int, hi: int, long: bool, replaced: set[str] | None
) -> pa.Table:
    """The rows of an existing chunk file merged with a new chunk of ``[lo, hi)``.

    Outside the window old rows stay. Inside it, the new chunk's columns (`replaced`; None: every
    column) replace the old ones, and the old file's other columns are kept on the same ``_step``.
    """
    steps = old.column(STEP_COLUMN)
    inside_mask = pc.and_(pc.greater_equal(steps, pa.scalar(lo, pa.int64())), pc.less(steps, pa.scalar(hi, pa.int64())))
    outside = old.filter(pc.invert(inside_mask))
    inside = old.filter(inside_mask)
    if replaced is None or inside.num_rows == 0:
        merged = new
    elif long:
        keep = pc.invert(pc.is_in(inside.column("key"), pa.array(sorted(replaced), pa.string())))
        merged = pa.concat_tables([inside.filter(keep), new], promote_options="default")
    else:
        merged = _merge_columns(inside, new, replaced)
    out = pa.concat_tables([outside, merged], promote_options="default")
    order: list[tuple[str, Literal["ascending", "descending"]]] = [(STEP_COLUMN, "ascending")]
    order += [("key", "ascending")] if long else []
    return out.sort_by(order)


def _merge_columns(inside: pa.Table, new: pa.Table, replaced: set[str]) -> pa.Table:
    """Join the kept columns of the old rows onto the new rows by ``_step`` (full outer)."""
    from ...core.arrow import dumps_json
    from ..tables import _parse_extra

    drop = [c for c in inside.column_names if c in replaced or c in new.column_names and c not in (STEP_COLUMN, EXTRA_COLUMN)]
    rest = inside.drop_columns(drop)
    if EXTRA_COLUMN in rest.column_names:
        rest = rest.rename_columns([c if c != EXTRA_COLUMN else "__old_extra" for c in rest.column_names])
    joined = new.join(rest, keys=STEP_COLUMN, join_type="full outer")
    if "__old_extra" in joined.column_names:
        old_extra = joined.column("__old_extra").to_pylist()
        new_extra = joined.column(EXTRA_COLUMN).to_pylist() if EXTRA_COLUMN in joined.column_names else [None] * len(old_extra)
        combined: list[str | None] = []
        for o, n in zip(old_extra, new_extra, strict=True):
            if o and n:
                kept = {k: v for k, v in _parse_extra(o).items() if k not in replaced}
                combined.append(dumps_json({**kept, **_parse_extra(n)}))
            elif o:
                kept = {k: v for k, v in _parse_extra(o).items() if k not in replaced}
                combined.append(dumps_json(kept) if kept else None)
            else:
                combined.append(n)
        joined = joined.drop_columns(["__old_extra"])
        column = pa.array(combined, pa.string())
        if EXTRA_COLUMN in joined.column_names:
            joined = joined.set_column(joined.column_names.index(EXTRA_COLUMN), EXTRA_COLUMN, column)
        else:
            joined = joined.append_column(EXTRA_COLUMN, column)
    return joined


def _fold_names(table: pa.Table, mapped: dict[str, str], existing: list[str]) -> tuple[pa.Table, dict[str, str]]:
    """Rename columns that differ only in case from a dataset column (readers of a dataset fold
    case, e.g. DuckDB's ``union_by_name``); return the table and the updated ``{column: key}``."""
    names = [n for n in table.column_names if n not in existing]
    renames = fold_collisions(names, mapped, existing)
    if not renames:
        return table, mapped
    out = {c: k for c, k in mapped.items() if c not in renames}
    out.update({new: mapped.get(old, old) for old, new in renames.items()})
    return table.rename_columns([renames.get(n, n) for n in table.column_names]), out


def _plain(table: pa.Table) -> pa.Table:
    """`table` without field metadata (the JSON tags are for conversion only)."""
    return table.cast(pa.schema([pa.field(f.name, f.type, f.nullable) for f in table.schema]))


def _type_from_str(text: str) -> pa.DataType:
    types: dict[str, pa.DataType] = {"double": pa.float64(), "bool": pa.bool_(), "string": pa.string(), "int64": pa.int64()}
    return types.get(text, pa.string())
