"""DuckDB: W&B run history in plain SQL, with projection and filter pushdown.

DuckDB 2.0 has no Python table functions. `register(con)` registers two Polars IO-source LazyFrames
as views and loads table macros from ``sql/duckdb_macros.sql`` over them; DuckDB pushes the
projection and the macro's constant filters into the Python source, which fetches only what they
allow (`connector.engines.pushdown`) and then applies the pushed filter exactly.

SQL surface after ``register(con)``::

    SELECT * FROM wandb_history('entity/project/run_id'      -- one run, or
                                'entity/project'             -- every run of a project, or
                                './wandb'                    -- a local folder, run dir or .wandb file
                                [, keys := ['loss', ...]] [, min_step := 0] [, max_step := 1000]
                                [, samples := 500] [, filters := '{"state": "finished"}'])
    SELECT * FROM wandb_runs('entity/project' | 'entity/project/run_id' | './wandb'
                             [, filters := '{"state": "finished"}'])
    SELECT * FROM wandb_files('entity/project/run_id' | 'entity/project' [, filters := '{...}'])
    SELECT * FROM wandb_artifacts('entity/project/run_id' | 'entity/project'
                                  [, direction := 'logged' | 'used' | 'both'] [, filters := '{...}'])

A path with two parts (``entity/project``, or a project URL) is a project, three parts (or
``entity/project/runs/id``, a run URL) a run; a local path (`connector.resolve.is_local_path`) is read
from disk with no server. ``filters`` are MongoDB-style run filters (JSON text) for a project or a
local folder (applied to local runs in Python, with the emulator's rules).

**Files and artifacts.** `wandb_files` has one row per file of each run (`FILES_SCHEMA` of
`connector.engines.polars`: ``size`` BIGINT, ``updated_at`` TIMESTAMP; nothing is downloaded),
`wandb_artifacts` one row per artifact each run logged or used (`ARTIFACTS_SCHEMA`: ``direction``,
``aliases``/``tags`` VARCHAR[], ``metadata`` JSON, TIMESTAMPs), the values of `Run.files` and
`Run.logged_artifacts` / `Run.used_artifacts`. ``direction :=`` is pushed into the source (only that
side is fetched; NULL or ``'both'`` both), as are ``run_id`` filters over a project. Local runs have
no server to list them: a local path raises an error.

**Temporary objects.** The macros are ``TEMPORARY`` and the backing views are registered Python
objects: nothing lands in a database file, so a file-backed connection reopened later by plain
``duckdb`` opens cleanly, without any ``wandb_*`` object. The backing views carry the macros' names
(``wandb_history``, ``wandb_runs``), so errors name what the user wrote.

**Layouts.** A macro's columns are fixed when its backing view is registered, before any run is
known, so `wandb_history` is *long*: ``entity, project, run_id, _step, key, value_number DOUBLE,
value_bool BOOLEAN, value_text VARCHAR``, one row per (step, logged key) — the project's one long
layout (`connector.core.long`), the same rows and values as an export's ``history_long`` table.
``value_number`` holds numbers (NaN and ±inf kept), ``value_bool`` booleans, ``value_text`` strings
as they are and the JSON text of everything else (media, lists, maps, every value of a key logged
with mixed types, so a number of such a key is text there). A key not logged at a step has no row
there (missing and null alike). Values that did not fit their column in the Arrow policy
(``_extra``) come back as rows of their own key.

**Counting.** With ``keys := [...]`` only rows of those keys come back, so ``count(*)`` counts the
logged values of those keys (``count(*) FILTER (key = 'loss')`` per key) and ``count(DISTINCT
_step)`` the steps where at least one of them was logged. Without `keys` every step also has exactly
one row with ``key = '_step'`` (value columns NULL), so ``count(DISTINCT _step)`` counts all steps
and ``avg(value_number)`` is not disturbed (these rows are the one addition to an export's
``history_long``); the cheap way to count every step of a run is
``SELECT count(*) FROM wandb_history(run, keys := ['_step'])`` (one row per step, only ``_step``
fetched).

**Runs.** `wandb_runs` has the columns of the exporter's runs table (`RUNS_SCHEMA`), with
``created_at`` / ``heartbeat_at`` as ``TIMESTAMP`` (UTC) and config / summary as ``JSON``, then
``display_name, "group", job_type, sweep_name, username, notes, url`` (`RUN_DETAILS_SCHEMA`; quote
``"group"``, a SQL keyword). Macros expand at bind time and DuckDB hands a Python source only
constant filters, so a run path computed per row (``LATERAL wandb_history(r.entity || ...)``,
``run_path IN (SELECT ...)``) cannot reach the API: read the project once and join on ``run_id``::

    SELECT r.display_name, avg(h.value_number) AS loss
    FROM wandb_runs('e/p', filters := '{"state": "finished"}') r
    JOIN wandb_history('e/p', keys := ['loss'], filters := '{"state": "finished"}') h USING (run_id)
    GROUP BY ALL

or register a wide view over the runs from Python (`register_runs`).

Long suits any-run, any-key SQL (``GROUP BY key``, many runs, unknown keys); a filter on
``value_number`` stays in DuckDB (it is DOUBLE and NaN could satisfy it, so DuckDB does not push it). *Wide* views —
`register_run` (one run: ``_step``, one typed column per key, ``_extra``) and `register_runs` (a union
over a project, a local folder or a list of runs, ``entity, project, run_id`` first, a column whose
type differs between runs is JSON text) — have real column types and are cheaper per value, but their
columns are fixed when you register them, so they are registered from Python, per run or per run
list. A wide view whose runs log ``_timestamp`` (epoch seconds) also has ``_time``, the same instant
as a ``TIMESTAMP`` (UTC), right after it (unless a key is already named ``_time``).

**Pushdown.** Pushed to the API: the run (``run_path``, or ``entity``+``project``+``run_id`` on the
backing view), ``key IN (...)`` / ``key = ...`` (only those keys are fetched), ``_step`` comparisons,
``BETWEEN``, ``IN`` (only those step windows), projections on wide views, ``samples`` and
``filters``; over a project, ``run_id = ...`` / ``IN (...)`` skip the other runs unfetched. A query on
the backing view that names no run or project raises an error asking for one; nothing ever
enumerates the projects it can see. NULL/NaN: DuckDB pushes only filters it can hand over exactly (it keeps filters on
DOUBLE columns that NaN could satisfy); every pushed filter is applied exactly again in Python, with
SQL semantics preserved (a NULL comparison drops the row).

**Odd keys.** In the long layout a key is a value, so every key comes through exactly (one holding a
NUL character, the empty key, ``entity``...). In wide views a key is a column name, and DuckDB cannot
hold some names: Arrow passes them as C strings (a NUL would cut the name — Polars panics), it
renames an empty name to ``v0``, and its identifiers ignore ASCII case. `register_run` and
`register_runs` therefore name columns with ``engine="duckdb"`` (`connector.polars.column_names`): a
NUL in a key becomes ``␀`` (U+2400), the empty key is the column ``"(empty)"``, a name equal to an
earlier one but for ASCII case gets the first free ``_<n>`` suffix, and in `register_runs` a key named
``entity``, ``project`` or ``run_id`` is the column ``entity_1``, ``project_1`` or ``run_id_1``. String
values are never changed: a NUL inside a string comes back as it is.

`scan.to_duckdb(con, name)` and ``con.sql("SELECT ... FROM scan")`` (through ``__arrow_c_stream__``)
read a `HistoryScan` as planned in Python: there is **no pushdown** on that path, DuckDB filters the
rows it is given.

>>> import duckdb
>>> from connector.core.rundata import MemoryRun, RunMeta
>>> con = duckdb.connect()
>>> run = MemoryRun(RunMeta("e", "p", "r"), rows=[{"_step": i, "loss": i / 2} for i in range(10)])
>>> _ = register_run(con, run, "r")
>>> con.sql("SELECT avg(loss) FROM r WHERE _step BETWEEN 2 AND 4").fetchall()
[(1.5,)]
>>> con.close()
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import polars as pl
from polars.io.plugins import register_io_source

from ..api import LazyApi, default_api
from ..core import long as long_layout
from ..core.arrow import EXTRA_COLUMN, STEP_COLUMN, SchemaPlan
from ..core.columns import check_keys
from ..core.values import history_keys_from_rows
from ..errors import ConfigurationError
from ..resolve import open_local, resolve_run
from ..runs_table import RUN_DETAILS_SCHEMA, app_url_of, run_details_to_arrow
from ..sqlfiles import sql_text
from .polars import (
    ARTIFACTS_SCHEMA,
    DIRECTIONS,
    FILES_SCHEMA,
    RunReader,
    arrow_frame,
    artifacts_frame,
    files_frame,
    finish_frames,
    listing_runs,
    local_matches,
    path_kind,
    polars_schema,
    scan_histories,
    scan_history,
)
from .pushdown import Pushdown, analyze

if TYPE_CHECKING:
    import duckdb

    from ..api import Api, Run

HISTORY_VIEW = "wandb_history"  # the backing views carry the macros' names (errors name them)
RUNS_VIEW = "wandb_runs"
FILES_VIEW = "wandb_files"
ARTIFACTS_VIEW = "wandb_artifacts"
STEP_KEY = "_step"
TIME_COLUMN = "_time"  # _timestamp as a TIMESTAMP in wide views
TIMESTAMP_COLUMN = "_timestamp"
NO_FILTERS = "{}"

#: The long layout's columns (`connector.core.long`) as Polars types.
_LONG_POLARS = polars_schema(long_layout.long_schema())
LONG_SCHEMA = pl.Schema(
    {
        "run_path": pl.String(),
        "entity": pl.String(),
        "project": pl.String(),
        "run_id": pl.String(),
        **_LONG_POLARS,
        "_samples": pl.Int64(),
        "_filters": pl.String(),
    }
)
_LONG_VALUES = ("run_path", "entity", "project", "run_id", "key", "_samples", "_filters")
_CONSTANT_PATH = (
    "a path computed per row (a LATERAL join, run_path IN (SELECT ...)) cannot be passed to the W&B "
    "API: read the whole project once with wandb_history('entity/project' [, filters := '{...}']) "
    "and join on run_id, or register a wide view with connector.duckdb.register_runs"
)
_NEEDS_RUN = (
    "wandb_history needs a constant run or project path: wandb_history('entity/project/run_id'), "
    f"wandb_history('entity/project') or wandb_history('./wandb'); {_CONSTANT_PATH}"
)
_NEEDS_PROJECT = (
    "wandb_runs needs a constant project path: SELECT * FROM wandb_runs('entity/project') "
    "(or a run path, or a local ./wandb folder)"
)


def _parse_filters(text: Any, where: str) -> dict[str, Any]:
    """The JSON object of a ``filters :=`` argument (`ConfigurationError` naming `where` otherwise)."""
    try:
        parsed = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{where} filters must be JSON text, got {text!r}") from exc
    if not isinstance(parsed, dict):
        raise ConfigurationError(f"{where} filters must be a JSON object, got {text!r}")
    return parsed


def list_path_runs(
    path: str, api: Api | None = None, filters: dict[str, Any] | None = None, *, where: str = "wandb_history"
) -> list[Run]:
    """The runs a SQL path names: a project's (with `filters`), a local folder's, or one run.

    >>> list_path_runs("./wandb/nowhere")
    Traceback (most recent call last):
    ...
    connector.local.discover.NoSuchPathError: no such file or folder: ./wandb/nowhere
    """
    if not isinstance(path, str) or not path.strip():
        raise ConfigurationError(f"{where} needs a run or project path as text, got {path!r}")
    kind = path_kind(path)
    if kind == "local":
        return [run for run in open_local(path) if local_matches(run, filters or {})]
    if kind == "project":
        return list(default_api(api).runs(path, filters=filters or None, lazy=False))
    if filters:
        raise ConfigurationError(
            f"{where}: filters apply to a project ('entity/project') or a local folder, not to the run {path!r}"
        )
    return [resolve_run(path, api)]


# -- long layout ----------------------------------------------------------------------------------

def to_long(wide: pl.DataFrame, keys: Collection[Any] | None = None) -> pl.DataFrame:
    """A wide history frame in the long layout of `connector.core.long` (``_step, key,
    value_number, value_bool, value_text``), only the rows of `keys` when given, plus one
    ``key = '_step'`` row per step (value columns NULL) unless `keys` leaves ``_step`` out.

    >>> wide = pl.DataFrame({"_step": [0, 1], "loss": [0.5, None], "tag": ["a", "b"]})
    >>> for row in to_long(wide).rows():
    ...     print(row)
    (0, '_step', None, None, None)
    (0, 'loss', 0.5, None, None)
    (0, 'tag', None, None, 'a')
    (1, '_step', None, None, None)
    (1, 'tag', None, None, 'b')
    """
    wanted = None if keys is None else {k for k in keys if isinstance(k, str)}
    # Keys reach Arrow as values, never as column names: Arrow's C interface cannot carry a NUL in a
    # name, so every key column crosses under a placeholder name.
    fixed = (STEP_COLUMN, EXTRA_COLUMN)
    placeholders = {name: f"c{i}" for i, name in enumerate(wide.columns) if name not in fixed}
    keys_of = {column: name for name, column in placeholders.items()}
    melted = long_layout.to_long(wide.rename(placeholders).to_arrow(), keys_of, keys=wanted)
    long = pl.from_arrow(melted, schema=_LONG_POLARS)
    assert isinstance(long, pl.DataFrame)
    if keys is not None and STEP_KEY not in keys:
        return long
    nulls = [pl.lit(None, kind).alias(name) for name, kind in _LONG_POLARS.items() if name.startswith("value_")]
    steps = wide.select(pl.col(STEP_COLUMN).cast(pl.Int64), pl.lit(STEP_KEY, pl.String).alias("key"), *nulls)
    return pl.concat([steps, long]).sort(STEP_COLUMN, maintain_order=True)


class _LongSource:
    """The Python side of the ``wandb_history`` view (see the module doc)."""

    def __init__(self, api: LazyApi) -> None:
        self.api = api

    def _runs(self, push: Pushdown) -> list[tuple[str, str, Run]]:
        """``(run_path as named, filters text, run)`` for every run the pushed paths name."""
        paths = push.values.get("run_path")
        if paths is None:
            entities, projects, run_ids = (push.values.get(n) for n in ("entity", "project", "run_id"))
            if entities is None or projects is None or run_ids is None:
                raise ConfigurationError(_NEEDS_RUN)
            paths = frozenset(
                f"{e}/{p}/{r}" for e in entities for p in projects for r in run_ids
                if e is not None and p is not None and r is not None
            )
        texts = sorted(t for t in (push.values.get("_filters") or {NO_FILTERS}) if t is not None)
        out: list[tuple[str, str, Run]] = []
        for path in sorted(p for p in paths if p is not None):
            if not isinstance(path, str):
                raise ConfigurationError(f"a run or project path must be text, got {path!r}")
            for text in texts:
                filters = _parse_filters(text, "wandb_history")
                api = None if path_kind(path) == "local" else self.api()
                out.extend((path, text, run) for run in list_path_runs(path, api, filters))
        return out

    @staticmethod
    def _check_keys(runs: list[tuple[str, str, Run]], keys: frozenset[Any] | None) -> None:
        if keys is None:
            return
        # keys are values here (key IN (...)): a nested parent is not expanded, its leaves are named
        logged = {"/".join(run.path): run.history_keys for _, _, run in runs}
        check_keys(sorted((k for k in keys if k is not None), key=str), logged, nested=False)

    def __call__(
        self,
        with_columns: list[str] | None,
        predicate: pl.Expr | None,
        n_rows: int | None,
        batch_size: int | None,
    ) -> Iterator[pl.DataFrame]:
        push = analyze(predicate, value_columns=_LONG_VALUES)
        runs = self._runs(push)
        keys = push.values.get("key")
        self._check_keys(runs, keys)
        samples = sorted(push.values.get("_samples") or {0})
        if len(samples) != 1 or not isinstance(samples[0], int) or samples[0] < 0:
            raise ConfigurationError(f"samples must be one positive integer, got {samples}")
        frames = self._frames(runs, push, keys, samples[0], n_rows)
        return finish_frames(frames, push, with_columns, n_rows)

    def _frames(
        self,
        runs: list[tuple[str, str, Run]],
        push: Pushdown,
        keys: frozenset[Any] | None,
        samples: int,
        n_rows: int | None,
    ) -> Iterator[pl.DataFrame]:
        for path, filters, run in runs:
            ids = {"run_path": path, **dict(zip(("entity", "project", "run_id"), run.path, strict=True))}
            if not all(push.allows(name, value) for name, value in ids.items()):
                continue
            if samples:
                wides: Iterator[pl.DataFrame] = iter([_sampled(run, samples)])
            else:
                needed = None if keys is None else {k for k in keys if isinstance(k, str)}
                wides = RunReader.for_run(run).frames(needed, push.windows(), limit=n_rows, misfits=True)
            for wide in wides:
                long = to_long(wide, keys)
                yield long.select(
                    *(pl.lit(v, pl.String).alias(k) for k, v in ids.items()),
                    pl.all(),
                    pl.lit(samples, pl.Int64).alias("_samples"),
                    pl.lit(filters, pl.String).alias("_filters"),
                ).select(LONG_SCHEMA.names())


def _sampled(run: Run, samples: int) -> pl.DataFrame:
    """`Run.history(samples)` (all keys: `to_long` keeps those asked for) as a wide frame."""
    rows = run.history(samples=samples, pandas=False)
    plan = SchemaPlan.from_history_keys(history_keys_from_rows(rows))
    return arrow_frame(plan.to_batch([r for r in rows if "_step" in r]))


# -- wandb_runs -----------------------------------------------------------------------------------


class _RunsSource:
    """The Python side of the ``wandb_runs`` view: one project's runs, with pushed run filters."""

    def __init__(self, api: LazyApi) -> None:
        self.api = api

    def __call__(
        self,
        with_columns: list[str] | None,
        predicate: pl.Expr | None,
        n_rows: int | None,
        batch_size: int | None,
    ) -> Iterator[pl.DataFrame]:
        push = analyze(predicate, value_columns=("_project", "_filters"))
        projects = push.values.get("_project")
        if not projects or None in projects:
            raise ConfigurationError(f"{_NEEDS_PROJECT}; {_CONSTANT_PATH}")
        frames = (self._frame(p, f) for p in sorted(projects) for f in self._filters(push))
        return finish_frames(frames, push, with_columns, n_rows)

    @staticmethod
    def _filters(push: Pushdown) -> list[str]:
        texts = sorted(t for t in (push.values.get("_filters") or {NO_FILTERS}) if t is not None)
        for text in texts:
            _parse_filters(text, "wandb_runs")
        return texts

    def _frame(self, project: str, filters: str) -> pl.DataFrame:
        if not isinstance(project, str):
            raise ConfigurationError(f"wandb_runs needs a project path as text, got {project!r}")
        local = path_kind(project) == "local"
        api = None if local else self.api()
        runs = list_path_runs(project, api, _parse_filters(filters, "wandb_runs"), where="wandb_runs")
        table = run_details_to_arrow(runs, app_url=None if api is None else app_url_of(api))
        frame = pl.from_arrow(_utc_times(table))
        return frame.with_columns(  # type: ignore[union-attr]  # a Table converts to a DataFrame
            pl.lit(project, pl.String).alias("_project"), pl.lit(filters, pl.String).alias("_filters")
        )


# -- wandb_files / wandb_artifacts ------------------------------------------------------------------


class _ListingSource:
    """The Python side of the ``wandb_files`` and ``wandb_artifacts`` views: the files (or the
    artifacts, per pushed ``_direction``) of the runs a constant path names."""

    def __init__(self, api: LazyApi, what: str) -> None:
        self.api = api
        self.what = what  # "wandb_files" or "wandb_artifacts"

    def __call__(
        self,
        with_columns: list[str] | None,
        predicate: pl.Expr | None,
        n_rows: int | None,
        batch_size: int | None,
    ) -> Iterator[pl.DataFrame]:
        push = analyze(predicate, value_columns=("_path", "_filters", "_asked", "entity", "project", "run_id"))
        paths = push.values.get("_path")
        if not paths or None in paths:
            raise ConfigurationError(
                f"{self.what} needs a constant run or project path: {self.what}('entity/project/run_id') "
                f"or {self.what}('entity/project'); {_CONSTANT_PATH}"
            )
        asked: list[str] = [""]
        if self.what == ARTIFACTS_VIEW:
            asked = sorted(str(a) for a in push.values.get("_asked") or {"both"})
            bad = [a for a in asked if a not in (*DIRECTIONS, "both")]
            if bad:
                raise ConfigurationError(
                    f"wandb_artifacts: direction must be 'logged', 'used' or 'both', got {bad[0]!r}"
                )
        texts = sorted(t for t in (push.values.get("_filters") or {NO_FILTERS}) if t is not None)
        frames = (
            frame
            for path in sorted(paths)
            for text in texts
            for one in asked
            for frame in self._frames(path, text, one, push)
        )
        return finish_frames(frames, push, with_columns, n_rows)

    def _frames(self, path: Any, filters: str, asked: str, push: Pushdown) -> Iterator[pl.DataFrame]:
        if not isinstance(path, str):
            raise ConfigurationError(f"{self.what} needs a run or project path as text, got {path!r}")
        parsed = _parse_filters(filters, self.what)
        api = None if path_kind(path) == "local" else self.api()
        directions = DIRECTIONS if asked == "both" else (asked,)
        for run in listing_runs(path, api=api, filters=parsed, where=self.what):
            if not all(push.allows(c, v) for c, v in zip(("entity", "project", "run_id"), run.path, strict=True)):
                continue
            if not asked:
                yield files_frame(run).with_columns(
                    pl.lit(path, pl.String).alias("_path"), pl.lit(filters, pl.String).alias("_filters")
                )
                continue
            for direction in directions:
                # the view's column is _direction: `direction` is the macro's parameter
                yield artifacts_frame(run, direction).rename({"direction": "_direction"}).with_columns(
                    pl.lit(path, pl.String).alias("_path"),
                    pl.lit(filters, pl.String).alias("_filters"),
                    pl.lit(asked, pl.String).alias("_asked"),
                )


def _listing_schema(schema: pl.Schema, artifacts: bool) -> pl.Schema:
    """A listing's backing view: its columns (``direction`` as ``_direction``), ``_path``,
    ``_filters`` and, for artifacts, ``_asked`` (the direction asked: logged, used or both)."""
    columns = {("_direction" if name == "direction" else name): kind for name, kind in schema.items()}
    hidden = {"_path": pl.String(), "_filters": pl.String(), **({"_asked": pl.String()} if artifacts else {})}
    return pl.Schema({**columns, **hidden})


def utc_text(value: Any) -> str | None:
    """An ISO time as naive UTC text (what ``CAST(... AS TIMESTAMP)`` reads exactly), else None.

    >>> utc_text("2024-01-01T02:00:00+02:00"), utc_text("2024-01-01T00:00:00Z"), utc_text("soon")
    ('2024-01-01T00:00:00', '2024-01-01T00:00:00', None)
    """
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = _dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(_dt.UTC).replace(tzinfo=None)
    return parsed.isoformat()


def _utc_times(table: Any) -> Any:
    import pyarrow as pa

    for name in ("created_at", "heartbeat_at"):
        i = table.schema.get_field_index(name)
        values = [utc_text(v) for v in table.column(name).to_pylist()]
        table = table.set_column(i, table.schema.field(i), pa.array(values, pa.string()))
    return table


def _runs_schema() -> pl.Schema:
    from .polars import polars_schema

    schema = dict(polars_schema(RUN_DETAILS_SCHEMA))
    schema.update({"_project": pl.String(), "_filters": pl.String()})
    return pl.Schema(schema)


# -- public API -----------------------------------------------------------------------------------


def register(con: duckdb.DuckDBPyConnection, api: Api | None = None) -> duckdb.DuckDBPyConnection:
    """Register the backing views and create the `wandb_history`, `wandb_runs`, `wandb_files` and
    `wandb_artifacts` table macros.

    `api=None` means ``Api()`` from the environment, created at the first query (so registering
    needs no server). Returns `con`. Everything is temporary: the macros live in DuckDB's ``temp``
    catalog and the views are registered Python objects, so nothing is written into a database file.

    >>> import duckdb
    >>> con = register(duckdb.connect())
    >>> con.sql("SELECT function_name, database_name FROM duckdb_functions() "
    ...         "WHERE function_name LIKE 'wandb_%' ORDER BY 1").fetchall()
    [('wandb_artifacts', 'temp'), ('wandb_files', 'temp'), ('wandb_history', 'temp'), ('wandb_runs', 'temp')]
    >>> unregister(con); con.close()
    """
    holder = LazyApi(api)
    history = register_io_source(
        _LongSource(holder), schema=lambda: LONG_SCHEMA, explain_name="wandb_history"
    )
    runs_schema = _runs_schema()
    runs = register_io_source(
        _RunsSource(holder), schema=lambda: runs_schema, explain_name="wandb_runs"
    )
    files_schema = _listing_schema(FILES_SCHEMA, artifacts=False)
    files = register_io_source(
        _ListingSource(holder, FILES_VIEW), schema=lambda: files_schema, explain_name=FILES_VIEW
    )
    artifacts_schema = _listing_schema(ARTIFACTS_SCHEMA, artifacts=True)
    artifacts = register_io_source(
        _ListingSource(holder, ARTIFACTS_VIEW), schema=lambda: artifacts_schema, explain_name=ARTIFACTS_VIEW
    )
    con.register(HISTORY_VIEW, history)
    con.register(RUNS_VIEW, runs)
    con.register(FILES_VIEW, files)
    con.register(ARTIFACTS_VIEW, artifacts)
    con.execute(sql_text("duckdb_macros"))
    return con


def unregister(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    """Drop the macros and backing views of `register`, and the views `names` (if present)."""
    con.execute(sql_text("duckdb_macros_drop"))
    for view in (HISTORY_VIEW, RUNS_VIEW, FILES_VIEW, ARTIFACTS_VIEW, *names):
        try:
            con.unregister(view)
        except Exception:  # noqa: BLE001 - not registered: nothing to undo
            pass


def register_run(
    con: duckdb.DuckDBPyConnection,
    run: Any,
    name: str,
    *,
    api: Api | None = None,
    keys: Sequence[str] | None = None,
) -> pl.LazyFrame:
    r"""Register one run as a wide view `name` (its own columns; projection and step pushdown).

    Returns the registered `pl.LazyFrame` (from `connector.polars.scan_history`). Quote column names
    with dots, spaces or quotes in SQL: ``SELECT "train.loss" FROM name``. Keys DuckDB cannot name
    are renamed as the module doc says (``a\x00b`` → ``"a␀b"``, ``""`` → ``"(empty)"``).

    >>> import duckdb
    >>> from connector.core.rundata import MemoryRun, RunMeta
    >>> con = duckdb.connect()
    >>> run = MemoryRun(RunMeta("e", "p", "r"), rows=[{"_step": 0, "a\x00b": 1.0, "": "x\x00y"}])
    >>> _ = register_run(con, run, "odd")
    >>> con.sql('SELECT "a␀b", "(empty)" FROM odd').fetchall()
    [(1.0, 'x\x00y')]
    >>> con.close()
    """
    frame = with_time(scan_history(run, api=api, keys=keys, engine="duckdb"))
    con.register(name, frame)
    return frame


def register_runs(
    con: duckdb.DuckDBPyConnection,
    runs: Any,
    name: str,
    *,
    api: Api | None = None,
    filters: dict[str, Any] | None = None,
    keys: Sequence[str] | None = None,
) -> pl.LazyFrame:
    """Register a wide union over ``"entity/project"``, a local folder or a list of runs as `name`.

    Columns ``entity, project, run_id, _step, ..., _extra`` (`connector.polars.scan_histories`, plus
    ``_time`` as in `with_time`); runs are listed now, once. A local folder (``"./wandb"``) is read
    with `connector.resolve.open_local`, its runs filtered by `filters` with the emulator's rules.
    Filters on ``run_id`` (and ``entity``/``project``) skip runs unfetched. A key named ``run_id`` (or
    ``entity``, ``project``) is the column ``run_id_1``; other odd keys are renamed as in `register_run`.

    >>> import duckdb
    >>> from connector.core.rundata import MemoryRun, RunMeta
    >>> con = duckdb.connect()
    >>> runs = [MemoryRun(RunMeta("e", "p", "a"), rows=[{"_step": 0, "run_id": "mine"}])]
    >>> _ = register_runs(con, runs, "many")
    >>> con.sql("SELECT run_id, run_id_1 FROM many").fetchall()
    [('a', 'mine')]
    >>> con.close()
    """
    if isinstance(runs, str) and path_kind(runs) != "project":
        runs, filters = list_path_runs(runs, api, filters, where="register_runs"), None
    frame = with_time(scan_histories(runs, api=api, filters=filters, keys=keys, engine="duckdb"))
    con.register(name, frame)
    return frame


def with_time(frame: pl.LazyFrame) -> pl.LazyFrame:
    """`frame` with ``_time``, its ``_timestamp`` (epoch seconds) as a UTC ``Datetime("us")``, after it.

    Unchanged when there is no numeric ``_timestamp`` column or a column is already named ``_time``.
    A filter on ``_step`` is still pushed into the source; one on ``_time`` is applied exactly after.

    >>> from connector.core.rundata import MemoryRun, RunMeta
    >>> run = MemoryRun(RunMeta("e", "p", "r"), rows=[{"_step": 0, "_timestamp": 1704067200.5}])
    >>> with_time(scan_history(run)).select("_time").collect().item()
    datetime.datetime(2024, 1, 1, 0, 0, 0, 500000)
    """
    schema = frame.collect_schema()
    kind = schema.get(TIMESTAMP_COLUMN)
    if kind not in (pl.Float64, pl.Int64) or TIME_COLUMN in schema:
        return frame
    seconds = pl.col(TIMESTAMP_COLUMN).cast(pl.Float64)
    micros = (seconds * 1_000_000).round().cast(pl.Int64, strict=False)
    time = pl.when(seconds.is_finite()).then(micros).cast(pl.Datetime("us")).alias(TIME_COLUMN)
    names = schema.names()
    at = names.index(TIMESTAMP_COLUMN) + 1
    return frame.with_columns(time).select([*names[:at], TIME_COLUMN, *names[at:]])

