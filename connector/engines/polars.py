"""Polars `LazyFrame`s over W&B run history, with projection, step-range and slice pushdown.

`scan_history(run)` is one run's history: one row per step, the columns of `connector.core.arrow`
(``_step`` Int64 first, one column per flattened key, ``_extra`` last). `scan_histories(project)` is
many runs in one frame, with ``entity``, ``project``, ``run_id`` first. Both are built on
``polars.io.plugins.register_io_source``; the schema is fixed when the frame is built, from the
`historyKeys` each run carries in its metadata (no extra request), so it is known before any page.

What reaches the W&B API when the frame is collected:

* **projection** — only the selected keys are fetched (``_step`` alone plus one `sampledHistory`
  spec per key, joined on ``_step``). A projection never changes which rows come back: every step in
  the window is a row, with nulls where a selected key was not logged, exactly as projecting the full
  table would. Selecting most columns, or ``_extra``, fetches full rows instead (``_extra`` must see
  every key to be exact);
* **predicate** — `_step` bounds become the step windows to fetch (`connector.engines.pushdown`); in
  `scan_histories`, ``entity``/``project``/``run_id`` equalities and ``is_in`` skip whole runs. The full
  predicate (minus Polars' dynamic pruning hints) is then applied exactly to every batch, because
  Polars does not filter an IO source's output again. A predicate that is not understood fetches the
  whole window; results stay exact;
* **slice** — ``head(n)`` stops fetching once `n` rows passed the filter.

Step windows are half-open everywhere: ``min_step`` inclusive, ``max_step`` exclusive.

NULL/NaN: a comparison with NULL drops the row (Polars semantics); NaN compares greater than every
number in Polars, so ``pl.col("loss") > 1`` keeps NaN losses — the filter runs in Polars, so this is
exactly what a plain Polars frame would do.

**Column names** (`column_names`). A column is named after its key, exactly — a key holding a NUL
character, the empty key ``""`` and any other text included (Polars holds them all). Two cases are
renamed: in `scan_histories` a key named like an identity column (``entity``, ``project``,
``run_id``) becomes ``entity_1`` (the first free ``<key>_<n>``), so both stay readable; and with
``engine="duckdb"`` (what `connector.duckdb` uses) names DuckDB cannot hold are made safe: NUL
characters become ``␀`` (U+2400; Arrow hands names over as C strings), the empty key becomes
``(empty)``, and a name equal to another one but for ASCII case (DuckDB's identifiers are
case-insensitive) gets the first free ``_<n>`` suffix, as DuckDB itself would. A renamed name that is
taken gets the suffix too. Values are never changed: strings holding NUL come through as they are.

>>> from connector.core.rundata import MemoryRun, RunMeta
>>> run = MemoryRun(RunMeta("e", "p", "r"), rows=[{"_step": i, "loss": i / 2} for i in range(10)])
>>> lf = scan_history(run)
>>> lf.filter(pl.col("_step").is_between(2, 4)).select("loss").collect()["loss"].to_list()
[1.0, 1.5, 2.0]
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

import polars as pl
import pyarrow as pa
from polars.io.plugins import register_io_source

from ..core.arrow import EXTRA_COLUMN, STEP_COLUMN, SchemaPlan
from ..core.columns import RUN_COLUMNS, check_key_list, check_keys, select_columns, union_kinds
from ..core.runpath import is_local_path
from ..core.scan import DEFAULT_PAGE_SIZE
from ..errors import ConfigurationError
from ..resolve import open_local, resolve_run
from .pushdown import POS_INF, Pushdown, analyze

if TYPE_CHECKING:
    from ..api import Api, Run

FULL_ROWS_SHARE = 0.5  # fetch full rows when a projection selects more than this share of columns

Engine = Literal["polars", "duckdb"]
ENGINES: tuple[Engine, ...] = ("polars", "duckdb")
NUL_SIGN = "\u2400"  # ␀, what a NUL character in a key becomes in a DuckDB column name
EMPTY_KEY_NAME = "(empty)"  # the DuckDB column name of the empty key
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def column_names(
    names: Iterable[str], *, reserved: Iterable[str] = (), engine: Engine = "polars"
) -> dict[str, str]:
    r"""The column name of each key in `names` for `engine` (rules in the module doc), in order.

    `reserved` names (the identity columns of a multi-run frame) are taken before any key.

    >>> column_names(["_step", "loss", "entity"], reserved=RUN_COLUMNS)
    {'_step': '_step', 'loss': 'loss', 'entity': 'entity_1'}
    >>> column_names(["_step", "a\x00b", "", "Loss", "loss"], engine="duckdb")
    {'_step': '_step', 'a\x00b': 'a␀b', '': '(empty)', 'Loss': 'Loss', 'loss': 'loss_1'}
    """
    if engine not in ENGINES:
        raise ConfigurationError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    duck = engine == "duckdb"

    def fold(name: str) -> str:
        return name.translate(_ASCII_LOWER) if duck else name

    def base(name: str) -> str:
        if not duck:
            return name
        return name.replace("\0", NUL_SIGN) if name else EMPTY_KEY_NAME

    names = list(dict.fromkeys(names))
    taken = {fold(n) for n in reserved}
    out: dict[str, str] = {}
    for name in names:  # names kept as they are first: a renamed key never takes a real key's name
        if base(name) == name and fold(name) not in taken:
            taken.add(fold(name))
            out[name] = name
    for name in names:
        if name in out:
            continue
        stem = candidate = base(name)
        n = 0
        while fold(candidate) in taken:
            n += 1
            candidate = f"{stem}_{n}"
        taken.add(fold(candidate))
        out[name] = candidate
    return {name: out[name] for name in names}


def polars_schema(schema: pa.Schema) -> pl.Schema:
    """The Polars schema of Arrow data of `schema`, with every name kept (also ``""``).

    >>> polars_schema(pa.schema([("_step", pa.int64()), ("loss", pa.float64()), ("", pa.string())]))
    Schema([('_step', Int64), ('loss', Float64), ('', String)])
    """
    frame = arrow_frame(schema.empty_table())
    return frame.schema


def arrow_frame(data: pa.RecordBatch | pa.Table) -> pl.DataFrame:
    r"""`pl.from_arrow` that keeps every column name (it would rename ``""`` to ``column_<i>``).

    >>> arrow_frame(pa.table({"": [1.0], "a\x00b": ["x\x00y"]})).to_dicts()
    [{'': 1.0, 'a\x00b': 'x\x00y'}]
    """
    names = data.schema.names
    if "" not in names:
        return pl.from_arrow(data)  # type: ignore[return-value]  # a table or batch converts to a DataFrame
    frame: pl.DataFrame = pl.from_arrow(  # type: ignore[assignment]  # a table converts to a DataFrame
        data.rename_columns([f"column_{i}" for i in range(len(names))])
    )
    frame.columns = names
    return frame


def _renamed(schema: pl.Schema, names: Mapping[str, str]) -> pl.Schema:
    return pl.Schema([(names.get(name, name), dtype) for name, dtype in schema.items()])


@dataclass(frozen=True)
class RunReader:
    """Fetches one run's history as Polars frames of fixed types, for any columns and step ranges.

    `plan` fixes every column's kind (so a frame never changes type between pages or calls);
    `restricted` is True when the plan holds only some of the run's keys (``keys=``), in which case
    full rows are never fetched (``_extra`` would then fill with the other keys). `rename` maps the
    keys whose column is named otherwise (`column_names`) to that name: `frames` then takes and
    yields column names.
    """

    run: Run
    plan: SchemaPlan
    restricted: bool = False
    page_size: int = DEFAULT_PAGE_SIZE
    rename: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def for_run(cls, run: Run, keys: Sequence[str] | None = None, page_size: int = DEFAULT_PAGE_SIZE) -> RunReader:
        """A reader over all of a run's keys, or the flat columns `keys` expand to."""
        hk = run.history_keys
        if keys is None:
            return cls(run, SchemaPlan.from_history_keys(hk), False, page_size)
        columns = select_columns(hk, check_key_list(keys), run_path="/".join(run.path))
        plan = SchemaPlan.from_history_keys(hk, [STEP_COLUMN, *(columns or ())])
        return cls(run, plan, True, page_size)

    @property
    def names(self) -> list[str]:
        """Column names, ``_step`` first, without ``_extra``."""
        return [name for name, _ in self.plan.kinds]

    def frames(
        self,
        needed: Iterable[str] | None,
        ranges: Sequence[tuple[int, int]],
        *,
        limit: int | None = None,
        misfits: bool = False,
    ) -> Iterator[pl.DataFrame]:
        """Frames holding ``_step`` plus the `needed` columns (all when ``None``), range by range.

        Names this run does not have are ignored (the caller adds null columns). Asking for
        ``_extra`` fetches full rows (it must see every key). `misfits` adds ``_extra`` holding only
        the values of the fetched columns that did not fit their type. `limit` is a hint: the
        caller wants about that many rows, so pages are smaller and fetched one at a time.
        """
        if needed is not None and self.rename:
            key_of = {column: key for key, column in self.rename.items()}
            needed = {key_of.get(n, n) for n in needed if n in key_of or n not in self.rename}
        wanted = set(self.names) | {EXTRA_COLUMN} if needed is None else set(needed)
        user = [n for n in self.names[1:] if n in wanted]
        full_rows = not self.restricted and (
            EXTRA_COLUMN in wanted or len(user) > FULL_ROWS_SHARE * max(1, len(self.names) - 1)
        )
        sub = SchemaPlan(
            tuple((n, k) for n, k in self.plan.kinds if n == STEP_COLUMN or n in wanted),
            with_extra=misfits or EXTRA_COLUMN in wanted,
        )
        columns = None if full_rows else user
        page_size, concurrency = self.page_size, None
        if limit is not None and limit < page_size:
            page_size, concurrency = max(limit, 1), 1
        for lo, hi in ranges:
            if lo >= hi:
                continue
            scan = self.run.scan(
                columns,
                min_step=max(lo, 0),
                max_step=None if hi >= POS_INF else hi,
                page_size=page_size,
                concurrency=concurrency,
            )
            batches = scan.to_batches(sub)
            try:
                for batch in batches:
                    frame = arrow_frame(batch)
                    if self.rename:
                        frame = frame.rename({k: c for k, c in self.rename.items() if k in frame.columns})
                    yield frame
            finally:
                batches.close()


def finish_frames(
    frames: Iterator[pl.DataFrame],
    push: Pushdown,
    with_columns: Sequence[str] | None,
    n_rows: int | None,
) -> Iterator[pl.DataFrame]:
    """What an IO source yields: `frames` with the residual predicate of `push` applied exactly
    (Polars does not filter an IO source's output again), projected to `with_columns`, stopped
    after `n_rows` rows. `frames` is closed when the result ends or is closed.

    >>> frames = iter([pl.DataFrame({"_step": [0, 1, 2], "a": [1.0, 5.0, 7.0]})])
    >>> [f.rows() for f in finish_frames(frames, analyze(pl.col("a") > 2), ["a"], 1)]
    [[(5.0,)]]
    """
    remaining = n_rows
    try:
        for frame in frames:
            if push.residual is not None:
                frame = frame.filter(push.residual)
            if with_columns is not None:
                frame = frame.select(with_columns)
            if remaining is not None:
                frame = frame.head(remaining)
                remaining -= frame.height
            if frame.height:
                yield frame
            if remaining is not None and remaining <= 0:
                return
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()


def _needed(with_columns: Sequence[str] | None, push: Pushdown) -> set[str] | None:
    if with_columns is None:
        return None
    needed = set(with_columns)
    if push.residual is not None:
        needed |= set(push.residual.meta.root_names())
    return needed


def scan_history(
    run: Any,
    *,
    api: Api | None = None,
    keys: Sequence[str] | None = None,
    min_step: int | None = None,
    max_step: int | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    engine: Engine = "polars",
) -> pl.LazyFrame:
    r"""One run's history as a `pl.LazyFrame` (one row per step; pushdown as in the module doc).

    `run` is a run path, a W&B run URL, a `Run`, or a local `.wandb` file / run directory.
    `keys` limits the columns (a nested parent selects its leaves; an unknown key raises
    `ConfigurationError` naming it) and never the rows. ``[min_step, max_step)`` bounds the steps.
    Columns are named after their keys; ``engine="duckdb"`` makes the names DuckDB cannot hold safe
    (see `column_names`).

    >>> from connector.core.rundata import MemoryRun, RunMeta
    >>> run = MemoryRun(RunMeta("e", "p", "r"), rows=[{"_step": 0, "a": 1.0}, {"_step": 1, "b": "x"}])
    >>> scan_history(run, keys=["a"]).collect().to_dicts()
    [{'_step': 0, 'a': 1.0, '_extra': None}, {'_step': 1, 'a': None, '_extra': None}]
    >>> odd = MemoryRun(RunMeta("e", "p", "r"), rows=[{"_step": 0, "": 1.0, "a\x00b": "x\x00y"}])
    >>> scan_history(odd).select("", "a\x00b").collect().rows()
    [(1.0, 'x\x00y')]
    >>> scan_history(odd, engine="duckdb").collect_schema().names()
    ['_step', '(empty)', 'a␀b', '_extra']
    """
    resolved = resolve_run(run, api)
    reader = RunReader.for_run(resolved, keys, page_size)
    names = column_names(reader.plan.schema.names, engine=engine)
    reader = replace(reader, rename={k: c for k, c in names.items() if k != c})
    schema = _renamed(polars_schema(reader.plan.schema), names)

    def source(
        with_columns: list[str] | None,
        predicate: pl.Expr | None,
        n_rows: int | None,
        batch_size: int | None,
    ) -> Iterator[pl.DataFrame]:
        push = analyze(predicate)
        frames = reader.frames(
            _needed(with_columns, push), push.windows(min_step, max_step), limit=n_rows
        )
        return finish_frames(frames, push, with_columns, n_rows)

    return register_io_source(
        source,
        schema=lambda: schema,
        explain_name="wandb_history",
        explain_detail="/".join(resolved.path),
    )


def list_runs(
    runs: Any, *, api: Api | None = None, filters: dict[str, Any] | None = None
) -> list[Run]:
    """Runs from ``"entity/project"`` (with MongoDB-style `filters`), from a local folder of offline
    runs (``"./wandb"``, its runs filtered by `filters` with the emulator's rules) or from a list of runs.

    >>> from connector.core.rundata import MemoryRun, RunMeta
    >>> [r.id for r in list_runs([MemoryRun(RunMeta("e", "p", "a")), MemoryRun(RunMeta("e", "p", "b"))])]
    ['a', 'b']
    """
    if isinstance(runs, str) and is_local_path(runs):
        return [run for run in open_local(runs) if local_matches(run, filters or {})]
    if isinstance(runs, str):
        from ..api import default_api

        return list(default_api(api).runs(runs, filters=filters, lazy=False))  # keys of every run
    if filters:
        raise ConfigurationError("filters apply to a project path ('entity/project'), not to a list of runs")
    if not isinstance(runs, Iterable):
        raise ConfigurationError(f"expected 'entity/project' or a list of runs, got {type(runs).__name__}")
    return [resolve_run(r, api) for r in runs]


def union_readers(
    runs: Sequence[Run], keys: Sequence[str] | None = None, page_size: int = DEFAULT_PAGE_SIZE
) -> tuple[list[RunReader], list[tuple[str, str]]]:
    """One reader per run, all typed by the union schema, and that schema's ``(name, kind)`` pairs.

    A key whose kind differs between runs becomes JSON text in every run (``0.5`` → ``"0.5"``).
    With `keys`, a key unknown to one run is skipped there; unknown to every run, it raises
    (`connector.core.columns.check_keys`).
    """
    if keys is not None:
        keys = check_key_list(keys)
        check_keys(keys, {"/".join(run.path): run.history_keys for run in runs})
    per_run: list[tuple[Run, dict[str, str]]] = []
    for run in runs:
        hk = run.history_keys
        columns = select_columns(hk, keys, unknown="skip")
        selected = None if columns is None else [STEP_COLUMN, *columns]
        per_run.append((run, dict(SchemaPlan.from_history_keys(hk, selected).kinds)))
    union = union_kinds(kinds for _, kinds in per_run)
    readers = [
        RunReader(
            run,
            SchemaPlan(tuple((n, kind) for n, kind in union if n in kinds or n == STEP_COLUMN)),
            keys is not None,
            page_size,
        )
        for run, kinds in per_run
    ]
    return readers, list(union)


def scan_histories(
    runs: Any,
    *,
    api: Api | None = None,
    filters: dict[str, Any] | None = None,
    keys: Sequence[str] | None = None,
    min_step: int | None = None,
    max_step: int | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    engine: Engine = "polars",
) -> pl.LazyFrame:
    """Many runs' history as one `pl.LazyFrame`: ``entity, project, run_id, _step, ..., _extra``.

    `runs` is ``"entity/project"`` (listed once, now, with MongoDB-style `filters`), a local folder
    of offline runs (``"./wandb"``) or a list of runs in any form `scan_history` accepts. The schema is the union of the runs' columns (a run
    without a column has nulls there; a column whose type differs between runs is JSON text).
    Filters on ``entity``, ``project``, ``run_id`` (``==``, ``is_in``) skip runs without fetching them.
    A key named like an identity column is the column ``<key>_1`` (see `column_names`, also for
    ``engine="duckdb"``).

    >>> from connector.core.rundata import MemoryRun, RunMeta
    >>> a = MemoryRun(RunMeta("e", "p", "a"), rows=[{"_step": 0, "x": 1.0}])
    >>> b = MemoryRun(RunMeta("e", "p", "b"), rows=[{"_step": 0, "x": "one"}])
    >>> scan_histories([a, b]).select("run_id", "x").collect().rows()
    [('a', '1.0'), ('b', '"one"')]
    >>> c = MemoryRun(RunMeta("e", "p", "c"), rows=[{"_step": 0, "run_id": "mine"}])
    >>> scan_histories([c]).select("run_id", "run_id_1").collect().rows()
    [('c', 'mine')]
    """
    listed = list_runs(runs, api=api, filters=filters)
    readers, columns = union_readers(listed, keys, page_size)
    plan = SchemaPlan(tuple(columns))
    names = column_names(plan.schema.names, reserved=RUN_COLUMNS, engine=engine)
    rename = {k: c for k, c in names.items() if k != c}
    readers = [replace(reader, rename=rename) for reader in readers]
    identity = [(name, pl.String) for name in RUN_COLUMNS]
    schema = pl.Schema(identity + list(_renamed(polars_schema(plan.schema), names).items()))

    def frames(
        needed: set[str] | None, push: Pushdown, limit: int | None
    ) -> Iterator[pl.DataFrame]:
        ranges = push.windows(min_step, max_step)
        for reader in readers:
            ids = dict(zip(RUN_COLUMNS, reader.run.path, strict=True))
            if not all(push.allows(name, value) for name, value in ids.items()):
                continue
            for frame in reader.frames(needed, ranges, limit=limit):
                yield _conform(frame, ids, schema, needed)

    def source(
        with_columns: list[str] | None,
        predicate: pl.Expr | None,
        n_rows: int | None,
        batch_size: int | None,
    ) -> Iterator[pl.DataFrame]:
        push = analyze(predicate, value_columns=RUN_COLUMNS)
        return finish_frames(
            frames(_needed(with_columns, push), push, n_rows), push, with_columns, n_rows
        )

    detail = f"{len(readers)} runs"
    return register_io_source(
        source, schema=lambda: schema, explain_name="wandb_histories", explain_detail=detail
    )


def _conform(
    frame: pl.DataFrame, ids: dict[str, str], schema: pl.Schema, needed: set[str] | None
) -> pl.DataFrame:
    """Add the identity columns and typed nulls for absent columns, in schema order."""
    names = [n for n in schema if needed is None or n in needed or n in RUN_COLUMNS or n == STEP_COLUMN]
    exprs = []
    for name in names:
        if name in ids:
            exprs.append(pl.lit(ids[name], pl.String).alias(name))
        elif name in frame.columns:
            exprs.append(pl.col(name))
        else:
            exprs.append(pl.lit(None, schema[name]).alias(name))
    return frame.select(exprs)


def local_matches(run: Run, filters: dict[str, Any]) -> bool:
    """`filters` (MongoDB-style) applied to a local run with the emulator's rules.

    >>> from connector.core.rundata import MemoryRun, RunMeta
    >>> run = resolve_run(MemoryRun(RunMeta("e", "p", "r", state="crashed")))
    >>> local_matches(run, {"state": "finished"}), local_matches(run, {})
    (False, True)
    """
    if not filters:
        return True
    from ..core.filters import FilterError, matches
    from ..core.rundata import RunMeta

    attrs = run.attrs
    meta = RunMeta(
        run.entity, run.project, run.id, display_name=run.name, state=run.state or "finished",
        config=dict(run.config), summary=dict(run.summary), tags=run.tags,
        created_at=run.created_at or "", heartbeat_at=run.heartbeat_at,
        group=attrs.get("group"), job_type=attrs.get("jobType"), notes=attrs.get("notes"),
    )  # fmt: skip
    try:
        return matches(meta, filters)
    except FilterError as exc:
        raise ConfigurationError(str(exc)) from exc


_PROJECT_URL_TAILS = ("runs", "table", "workspace", "overview")


def path_kind(path: str) -> str:
    """``"local"``, ``"project"`` or ``"run"``: how `wandb_history` / `wandb_runs` read `path`.

    Two parts (``entity/project``, a project URL) name a project, anything else a run (parsed by
    `connector.core.runpath.RunRef`); a path on disk (`connector.resolve.is_local_path`) is local.

    >>> path_kind("acme/vision"), path_kind("acme/vision/abc123"), path_kind("./wandb")
    ('project', 'run', 'local')
    >>> path_kind("https://wandb.ai/acme/vision/runs"), path_kind("https://wandb.ai/acme/vision/runs/x")
    ('project', 'run')
    """
    if is_local_path(path):
        return "local"
    text = path.strip()
    url = "://" in text
    if url:
        text = urlparse(text).path
    parts = [p for p in text.strip("/").split("/") if p]
    if len(parts) == 2 and ":" not in text:
        return "project"
    if url and len(parts) == 3 and parts[2] in _PROJECT_URL_TAILS:
        return "project"
    return "run"


# -- files and artifacts --------------------------------------------------------------------------

#: `scan_files` / ``wandb_files``: one row per file of a run.
FILES_SCHEMA = pl.Schema(
    {
        "entity": pl.String(), "project": pl.String(), "run_id": pl.String(),
        "name": pl.String(), "size": pl.Int64(), "mimetype": pl.String(), "md5": pl.String(),
        "updated_at": pl.Datetime("us"), "url": pl.String(), "direct_url": pl.String(), "id": pl.String(),
    }
)  # fmt: skip
#: `scan_artifacts` / ``wandb_artifacts``: one row per artifact a run logged or used.
ARTIFACTS_SCHEMA = pl.Schema(
    {
        "entity": pl.String(), "project": pl.String(), "run_id": pl.String(), "direction": pl.String(),
        "id": pl.String(), "name": pl.String(), "collection": pl.String(), "type": pl.String(),
        "version": pl.String(), "aliases": pl.List(pl.String()), "tags": pl.List(pl.String()),
        "digest": pl.String(), "size": pl.Int64(), "file_count": pl.Int64(), "state": pl.String(),
        "description": pl.String(), "metadata": pl.String(), "commit_hash": pl.String(),
        "history_step": pl.Int64(), "created_at": pl.Datetime("us"), "updated_at": pl.Datetime("us"),
        "artifact_entity": pl.String(), "artifact_project": pl.String(), "url": pl.String(),
    }
)  # fmt: skip
DIRECTIONS = ("logged", "used")


def utc_datetime(value: Any) -> Any:
    """An ISO time (the service's naive UTC, or with an offset) as a naive UTC `datetime`, else None.

    >>> utc_datetime("2024-01-01T02:00:00+02:00"), utc_datetime("soon")
    (datetime.datetime(2024, 1, 1, 0, 0), None)
    """
    import datetime as dt

    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo is not None else parsed


def listing_runs(
    runs: Any, *, api: Api | None = None, filters: dict[str, Any] | None = None, where: str = "scan_files"
) -> list[Run]:
    """The runs whose files or artifacts a listing reads, with no request per run: ``"e/p"`` (listed
    once, lightly, with `filters`), ``"e/p/run_id"`` or a run URL (not loaded), a `Run`, or a list
    of those. Local runs have no server to list them: they raise `ConfigurationError`.

    >>> from connector.api import Api
    >>> [r.id for r in listing_runs(["e/p/a", "e/p/b"], api=Api(api_key="k" * 40, base_url="http://127.0.0.1:9"))]
    ['a', 'b']
    """
    from ..api import Run, default_api

    if isinstance(runs, Run):
        return [runs]
    if isinstance(runs, str) and is_local_path(runs) or not isinstance(runs, str | Iterable):
        if isinstance(runs, str | os.PathLike):
            raise ConfigurationError(
                f"{where}: {str(runs)!r} is a local path; files and artifacts are listed only by a W&B server"
            )
        raise ConfigurationError(f"{where}: expected a run or project path, a Run or a list of them, got {runs!r}")
    if isinstance(runs, str):
        if path_kind(runs) == "project":
            return list(default_api(api).runs(runs, filters=filters or None, lazy=True))
        if filters:
            raise ConfigurationError(f"{where}: filters apply to a project ('entity/project'), not to the run {runs!r}")
        holder = default_api(api)
        return [Run(holder, holder.ref(runs), {})]
    if filters:
        raise ConfigurationError(f"{where}: filters apply to a project path ('entity/project'), not to a list of runs")
    return [run for item in runs for run in listing_runs(item, api=api, where=where)]


def _check_direction(direction: str | None) -> tuple[str, ...]:
    if direction in (None, "both"):
        return DIRECTIONS
    if direction not in DIRECTIONS:
        raise ConfigurationError(f"direction must be 'logged', 'used' or 'both', got {direction!r}")
    return (direction,)


def files_frame(run: Run) -> pl.DataFrame:
    """One run's files as a frame of `FILES_SCHEMA` (every page of `Run.files`)."""
    from ..remote.files_artifacts import listing_rows

    rows = listing_rows(run.files(), run.ref)
    for row in rows:
        row["updated_at"] = utc_datetime(row["updated_at"])
    return pl.DataFrame(rows, schema=FILES_SCHEMA, orient="row") if rows else FILES_SCHEMA.to_frame()


def artifacts_frame(run: Run, direction: str) -> pl.DataFrame:
    """The artifacts one run logged or used (`direction`) as a frame of `ARTIFACTS_SCHEMA`."""
    from ..remote.files_artifacts import listing_rows

    listing = run.logged_artifacts() if direction == "logged" else run.used_artifacts()
    rows = listing_rows(listing, run.ref, direction=direction)
    for row in rows:
        row["created_at"] = utc_datetime(row["created_at"])
        row["updated_at"] = utc_datetime(row["updated_at"])
    return pl.DataFrame(rows, schema=ARTIFACTS_SCHEMA, orient="row") if rows else ARTIFACTS_SCHEMA.to_frame()


def _listing_frame(
    runs: list[Run], schema: pl.Schema, frame: Any, name: str, directions: tuple[str, ...] = ("",)
) -> pl.LazyFrame:
    """A LazyFrame over `runs` whose rows `frame(run, direction)` gives; filters on the run's
    identity columns (and ``direction``) skip runs (or directions) unfetched."""
    value_columns = (*RUN_COLUMNS, "direction") if directions != ("",) else RUN_COLUMNS

    def frames(push: Pushdown) -> Iterator[pl.DataFrame]:
        for run in runs:
            ids = dict(zip(RUN_COLUMNS, run.path, strict=True))
            if not all(push.allows(column, value) for column, value in ids.items()):
                continue
            for direction in directions:
                if direction and not push.allows("direction", direction):
                    continue
                yield frame(run, direction)

    def source(
        with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, batch_size: int | None
    ) -> Iterator[pl.DataFrame]:
        push = analyze(predicate, value_columns=value_columns)
        return finish_frames(frames(push), push, with_columns, n_rows)

    return register_io_source(source, schema=lambda: schema, explain_name=name, explain_detail=f"{len(runs)} runs")


def scan_files(runs: Any, *, api: Api | None = None, filters: dict[str, Any] | None = None) -> pl.LazyFrame:
    """The files of one run, a project's runs or a list of runs as a `pl.LazyFrame`, one row per
    file: ``entity, project, run_id, name, size (Int64), mimetype, md5, updated_at (Datetime, UTC),
    url, direct_url, id`` (`FILES_SCHEMA`), what `Run.files` lists. Nothing is downloaded.

    `runs` is ``"entity/project/run_id"`` or a run URL, ``"entity/project"`` (its runs listed now,
    with MongoDB-style `filters`), a `Run`, or a list of these (`listing_runs`). Filters on
    ``entity``, ``project``, ``run_id`` skip runs unfetched.
    """
    listed = listing_runs(runs, api=api, filters=filters, where="scan_files")
    return _listing_frame(listed, FILES_SCHEMA, lambda run, _: files_frame(run), "wandb_files")


def scan_artifacts(
    runs: Any, *, direction: str | None = None, api: Api | None = None, filters: dict[str, Any] | None = None
) -> pl.LazyFrame:
    """The artifacts runs logged (``direction="logged"``), used (``"used"``) or both (None, ``"both"``)
    as a `pl.LazyFrame`, one row per (run, direction, artifact): `ARTIFACTS_SCHEMA`, with
    ``aliases`` and ``tags`` as lists, ``size``/``file_count``/``history_step`` Int64,
    ``created_at``/``updated_at`` Datetime (UTC), ``metadata`` JSON text — what `Run.logged_artifacts`
    and `Run.used_artifacts` list. `runs` as in `scan_files`; a filter on ``direction`` skips the other.

    >>> scan_artifacts([], direction="inputs")
    Traceback (most recent call last):
    ...
    connector.errors.ConfigurationError: direction must be 'logged', 'used' or 'both', got 'inputs'
    """
    directions = _check_direction(direction)
    listed = listing_runs(runs, api=api, filters=filters, where="scan_artifacts")
    return _listing_frame(listed, ARTIFACTS_SCHEMA, artifacts_frame, "wandb_artifacts", directions)
