"""W&B run history as a Ray Data `Dataset`, read in (run, step range) partitions.

``pip install 'wandb-history-connector[ray]'``

>>> import connector.ray  # doctest: +SKIP
>>> ds = connector.ray.read_history("acme/vision", keys=["loss", "acc"], max_step=10_000)  # doctest: +SKIP
>>> ds.filter(lambda r: r["loss"] < 0.1).count()  # doctest: +SKIP

How it reads
------------

* The runs are listed **once, on the driver** (``project_or_runs`` is ``"entity/project"`` with
  MongoDB-style `filters`, a run path, or a list of run paths / `connector.api.Run` s). The listing
  carries each run's ``historyKeys`` and ``historyLineCount``, so planning costs no other request.
* Each run's step range ``[min_step, min(max_step, lastStep + 1))`` is cut **on multiples of a
  partition size** (`plan_partitions`): ``partition_steps`` when given, else a per-run size that
  gives partitions of about ``DEFAULT_PARTITION_ROWS`` rows (or, with ``parallelism``, about that
  many partitions over all runs, in proportion to each run's rows). One partition is one Ray read
  task. A run whose steps are sparse (unix-ms timestamps) costs what its rows cost: the size comes
  from the line count, not from the step span.
* A task reads its range with `connector.core.scan.HistoryScan` in **columns** mode (keys select
  columns, one row per step; never the SDK's all-keys rule) and yields one Arrow block per page.
* **Columns**: ``entity, project, run_id, _step``, one column per flattened key (the column policy
  of `connector.core.arrow`: ``float64``, ``bool``, ``string``, JSON text), then ``_extra`` — per run,
  exactly `Run.scan(columns=keys).to_arrow()` plus the three identity columns. The dataset's schema
  is the union over runs: a run without a column has nulls there, and a key whose kind differs
  between runs is JSON text in every run (as `connector.polars.scan_histories`). A key whose name
  is not a usable column name (``entity``, ``run_id``, ``_step``... in any letter case, empty, with
  a control character) gets the column of `connector.core.columns.column_for_key`
  (``<prefix>~<8 hex>``); the ``{column: key}`` map is in the schema metadata (``wandb.keys``).
* **Projection pushdown**: ``ds.select_columns([...])`` (and Ray's optimizer) reaches the tasks:
  only the selected keys are fetched. Selecting ``_extra`` fetches the dataset's whole key set
  (``_extra`` must see every key to hold the values that did not fit their column).
* **One API-wide rate limit**: every HTTP attempt of every task first takes a slot from one Ray
  actor (`RequestLimiter`, an AIMD limiter like the exporter's: at most ``max_requests`` requests in
  flight across the whole cluster, halved on 429/503 with a shared cool-down, +1 after a window of
  successes). ``concurrency`` (Ray tasks running at once) bounds it too: each task has at most
  ``page_concurrency`` requests in flight. A slot is a lease: one held by a task that was killed or
  cancelled mid-request returns to the pool after ``LEASE_S`` seconds, so lost workers never shrink
  the limit for the rest of the read.

Credentials: the API key resolves on the driver as `connector.Api` does (argument, then
``WANDB_API_KEY``, ``~/.netrc``) and travels to the workers inside the read tasks (never printed:
it is kept out of every ``repr``). Pass ``ship_api_key=False`` to have each worker resolve it from
its own environment instead (a cluster whose workers get ``WANDB_API_KEY`` from a secret store).
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..core.arrow import EXTRA_COLUMN, STEP_COLUMN, SchemaPlan
from ..core.columns import (
    KEYS_META,
    RESERVED_COLUMNS,
    RUN_COLUMNS,
    check_key_list,
    check_keys,
    key_columns,
    last_step,
    select_columns,
    union_kinds,
)
from ..core.runpath import is_project_path
from ..core.scan import DEFAULT_PAGE_SIZE
from ..errors import ConfigurationError
from ..remote.leases import LEASE_S, ActorGate, Leases

if TYPE_CHECKING:
    import ray.data

    from ..api import Api, Run
    from ..remote.transport import RetryPolicy

#: Rows per partition when neither ``partition_steps`` nor ``parallelism`` is given.
DEFAULT_PARTITION_ROWS = 50_000
#: Requests in flight across every task of one dataset (the API-wide limit).
DEFAULT_MAX_REQUESTS = 8
#: Listing attributes a read task does not need (config and summary can be large).
_HEAVY_ATTRS = frozenset({"config", "summaryMetrics", "systemMetrics", "description", "notes"})


def _need_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "connector.ray needs Ray Data: pip install 'wandb-history-connector[ray]'"
        ) from exc
    return ray


# -- planning (shared with connector.spark) ------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """Where the workers connect; the API key is never shown (``repr`` hides it).

    >>> Credentials("https://api.wandb.ai", "secret")
    Credentials(base_url='https://api.wandb.ai', retry=None)
    """

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    retry: RetryPolicy | None = None

    def api(self) -> Api:
        """A fresh `Api` for this server (the key from here, else the worker's environment)."""
        from ..api import Api

        return Api(api_key=self.api_key, base_url=self.base_url, retry=self.retry)


@dataclass(frozen=True)
class Partition:
    """One read task: the steps ``[lo, hi)`` of one run, with what the run's listing said.

    `attrs` are the run's listing attributes (``historyKeys``, ``historyLineCount``, ``state``...),
    so a worker builds the run without asking the server again.
    """

    entity: str
    project: str
    run_id: str
    lo: int
    hi: int
    rows: int
    attrs: dict[str, Any] = field(repr=False, compare=False, hash=False)

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}/{self.run_id}"


@dataclass(frozen=True)
class HistoryPlan:
    """Every partition of a read, and the one schema of all its batches.

    `kinds` are the union ``(key, kind)`` pairs (``_step`` first, without ``_extra``); `columns`
    maps a key to its column name where the two differ; `keys` is the requested key set (None:
    all keys), `run_columns` the keys each run is scanned with.
    """

    partitions: tuple[Partition, ...]
    kinds: tuple[tuple[str, str], ...]
    columns: dict[str, str]
    keys: tuple[str, ...] | None
    run_kinds: dict[str, dict[str, str]]
    page_size: int = DEFAULT_PAGE_SIZE

    def column(self, key: str) -> str:
        return self.columns.get(key, key)

    @property
    def schema(self) -> pa.Schema:
        """``entity, project, run_id, _step``, the value columns, ``_extra``."""
        return self.projected_schema(None)

    def projected_schema(self, wanted: Sequence[str] | None) -> pa.Schema:
        """The schema restricted to the column names in `wanted` (None: all), in schema order."""
        plan = SchemaPlan(self.kinds)
        fields = [pa.field(name, pa.string(), nullable=False) for name in RUN_COLUMNS]
        for f in plan.schema:
            fields.append(f.with_name(self.column(f.name)) if f.name != EXTRA_COLUMN else f)
        if wanted is not None:
            keep = set(wanted)
            fields = [f for f in fields if f.name in keep]
        meta: dict[bytes | str, bytes | str] | None = (
            {KEYS_META: _json_bytes({c: k for k, c in self.columns.items()})} if self.columns else None
        )
        return pa.schema(fields, metadata=meta)

    def key_of(self, column: str) -> str:
        for key, col in self.columns.items():
            if col == column:
                return key
        return column

    def estimated_bytes(self) -> int:
        return sum(p.rows for p in self.partitions) * 8 * (len(self.kinds) + 4)


def _json_bytes(obj: Any) -> bytes:
    import json

    return json.dumps(obj, sort_keys=True).encode()


def list_runs(
    project_or_runs: str | Sequence[Any], *, filters: dict[str, Any] | None = None, api: Api | None = None
) -> list[Run]:
    """The runs of ``"entity/project"`` (with MongoDB-style `filters`), of one run path, or of a list
    of run paths / `Run` s; listed once, now.

    >>> list_runs([], api=object())
    []
    """
    from ..api import Run, default_api

    if isinstance(project_or_runs, str):
        api = default_api(api)
        if is_project_path(project_or_runs):
            return list(api.runs(project_or_runs, filters=filters, per_page=100, lazy=False))
        items: Sequence[Any] = [project_or_runs]
    else:
        items = list(project_or_runs)
    if filters:
        raise ConfigurationError("filters apply to a project path ('entity/project'), not to a list of runs")
    out: list[Run] = []
    for item in items:
        if isinstance(item, Run):
            out.append(item)
        elif isinstance(item, str):
            api = default_api(api)
            out.append(api.run(item))
        else:
            raise ConfigurationError(f"expected 'entity/project', a run path or a Run; got {type(item).__name__}")
    return out


def _run_kinds(run: Run, keys: Sequence[str] | None) -> dict[str, str]:
    hk = run.history_keys or {}
    columns = select_columns(hk, keys, unknown="skip")
    plan = SchemaPlan.from_history_keys(hk, None if columns is None else [STEP_COLUMN, *columns])
    return dict(plan.kinds)


def _splits(lo: int, hi: int, size: int) -> Iterator[tuple[int, int]]:
    """``[lo, hi)`` cut on the multiples of `size`.

    >>> list(_splits(5, 32, 10))
    [(5, 10), (10, 20), (20, 30), (30, 32)]
    """
    start = lo
    while start < hi:
        end = min(hi, (start // size + 1) * size)
        yield start, end
        start = end


def plan_partitions(
    runs: Sequence[Run],
    *,
    keys: Sequence[str] | None = None,
    min_step: int = 0,
    max_step: int | None = None,
    partition_steps: int | None = None,
    parallelism: int | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    allow_missing: bool = False,
) -> HistoryPlan:
    """Cut every run's range into partitions and fix the union schema (see the module docstring).

    >>> from connector.api import Run
    >>> from connector.core.rundata import MemoryRun, RunMeta
    >>> r = Run.from_run_data(MemoryRun(RunMeta("e", "p", "r"), rows=[{"_step": i, "x": 1.0} for i in range(25)]))
    >>> plan = plan_partitions([r], partition_steps=10)
    >>> [(p.lo, p.hi) for p in plan.partitions], plan.schema.names
    ([(0, 10), (10, 20), (20, 25)], ['entity', 'project', 'run_id', '_step', 'x', '_extra'])
    """
    if min_step is None or min_step < 0:
        raise ConfigurationError(f"min_step must be >= 0, got {min_step!r}")
    if max_step is not None and max_step <= min_step:
        raise ConfigurationError(f"max_step ({max_step}) must be above min_step ({min_step}); max_step is exclusive")
    for name, value in (("partition_steps", partition_steps), ("parallelism", parallelism)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
    if keys is not None:
        keys = check_key_list(keys)
        if not allow_missing:
            check_keys(keys, {"/".join(run.path): run.history_keys for run in runs})
    spans: list[tuple[Run, int, int, int]] = []
    for run in runs:
        last = last_step(run.history_keys)
        stop = last + 1 if max_step is None else min(max_step, last + 1)
        if stop <= min_step:
            continue
        lines = run.history_line_count or 0
        rows = int(math.ceil(lines * min(1.0, (stop - min_step) / max(1, last + 1))))
        spans.append((run, min_step, stop, rows))
    total = sum(r for *_, r in spans) or 1
    target = parallelism or max(1, math.ceil(total / DEFAULT_PARTITION_ROWS))
    parts: list[Partition] = []
    for run, lo, hi, rows in spans:
        if partition_steps is not None:
            size = partition_steps
        else:
            n = max(1, round(target * rows / total)) if parallelism else max(1, math.ceil(rows / DEFAULT_PARTITION_ROWS))
            size = max(1, math.ceil((hi - lo) / n))
        cuts = list(_splits(lo, hi, size))
        attrs = {k: v for k, v in run.attrs.items() if k not in _HEAVY_ATTRS}  # shipped with every task
        for a, b in cuts:
            parts.append(Partition(run.entity, run.project, run.id, a, b, max(1, rows // len(cuts)), attrs))
    per_run = {"/".join(run.path): _run_kinds(run, keys) for run in runs}
    kinds = union_kinds(per_run.values())
    columns = key_columns(name for name, _ in kinds[1:])
    return HistoryPlan(tuple(parts), kinds, columns, None if keys is None else tuple(keys), per_run, page_size)


# -- reading one partition -----------------------------------------------------------------------


def fetch_columns(plan: HistoryPlan, wanted: Sequence[str] | None) -> tuple[list[str] | None, bool]:
    """(flat keys to fetch, whether ``_extra`` is produced) for the output columns `wanted` (None:
    all). ``None`` keys mean the dataset's whole key set.

    >>> p = HistoryPlan((), (("_step", "int"), ("a", "float"), ("b", "float")), {}, None, {})
    >>> fetch_columns(p, ["run_id", "a"]), fetch_columns(p, None), fetch_columns(p, ["_extra"])
    ((['a'], False), (None, True), (None, True))
    """
    if wanted is None or EXTRA_COLUMN in wanted:
        return None, True
    keys = [plan.key_of(c) for c in wanted if c not in RESERVED_COLUMNS]
    return keys, False


def read_partition(
    part: Partition,
    plan: HistoryPlan,
    credentials: Credentials | None,
    wanted: Sequence[str] | None = None,
    *,
    gate: Any = None,
    page_concurrency: int = 2,
    api: Api | None = None,
) -> Iterator[pa.RecordBatch]:
    """The rows of one partition as record batches of ``plan.projected_schema(wanted)``.

    Reads with `connector.core.scan.HistoryScan` in columns mode (one row per step). `gate` (an
    `connector.remote.transport.AttemptGate`) takes a slot for every HTTP attempt.
    """
    from ..api import Run
    from ..core.runpath import RunRef
    from ..core.scan import HistoryScan

    schema = plan.projected_schema(wanted)
    if api is None:
        assert credentials is not None
        api = credentials.api()
    if gate is not None:
        api = api.with_transport(api.transport.with_gate(gate))
    run = Run(api, RunRef(part.entity, part.project, part.run_id), part.attrs)
    run_kinds = plan.run_kinds.get(part.path) or {}
    union = dict(plan.kinds)
    keys, with_extra = fetch_columns(plan, wanted)
    if keys is None:
        scan_columns = select_columns(run.history_keys, plan.keys, unknown="skip")
    else:
        scan_columns = [k for k in keys if k in run_kinds and k != STEP_COLUMN]
    own = [STEP_COLUMN, *(k for k in run_kinds if k != STEP_COLUMN and (keys is None or k in keys))]
    convert = SchemaPlan(tuple((k, union[k]) for k in own), with_extra=with_extra)
    scan = HistoryScan(
        run.source,
        columns=None if scan_columns is None else tuple(scan_columns),
        min_step=part.lo,
        max_step=part.hi,
        page_size=plan.page_size,
        concurrency=page_concurrency,
        known_keys=run.history_keys,
    )
    ids = {"entity": part.entity, "project": part.project, "run_id": part.run_id}
    by_column = {plan.column(k): k for k in own}
    for batch in scan.to_batches(convert):
        n = batch.num_rows
        arrays: list[pa.Array[Any]] = []
        for f in schema:
            if f.name in ids:
                arrays.append(pa.array([ids[f.name]] * n, pa.string()))
            elif f.name == EXTRA_COLUMN:
                arrays.append(batch.column(EXTRA_COLUMN))
            elif f.name in by_column:
                arrays.append(batch.column(by_column[f.name]))
            else:
                arrays.append(pa.nulls(n, f.type))
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


# -- the API-wide limiter ------------------------------------------------------------------------


class RequestLimiter:
    """AIMD limit of the requests in flight, as a Ray async actor shared by every read task.

    Same rules as `connector.export.limiter.AimdLimiter`: at most `maximum` in flight; a 429/503
    halves the limit (floor 1) and makes every caller wait out one shared cool-down; `limit`
    successes in a row add one slot back. A slot is a lease (`connector.remote.leases.Leases`):
    ``acquire()`` returns it, ``release(lease)`` gives it back, and a slot whose task was killed or
    cancelled while holding it returns to the pool after `lease_s` seconds.
    """

    def __init__(self, maximum: int, cooldown: float = 0.5, lease_s: float = LEASE_S) -> None:
        self.maximum = self.limit = maximum
        self.cooldown = cooldown
        self.in_flight = self.peak_in_flight = self.throttles = 0
        self.leases = Leases(lease_s)
        self._successes = 0
        self._resume_at = 0.0
        self._last_cut = -1e9
        self._cond: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    def _reap(self) -> None:
        lost = self.leases.expire()
        if lost:
            self.in_flight = max(0, self.in_flight - lost)

    async def acquire(self) -> int:
        cond = self._condition()
        async with cond:
            while True:
                self._reap()
                wait = self._resume_at - time.monotonic()
                if wait <= 0 and self.in_flight < self.limit:
                    break
                try:
                    await asyncio.wait_for(cond.wait(), timeout=wait if wait > 0 else 0.5)
                except TimeoutError:
                    pass
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            return self.leases.take()

    async def release(self, lease: int) -> None:
        cond = self._condition()
        async with cond:
            if self.leases.give_back(lease):
                self.in_flight = max(0, self.in_flight - 1)
                cond.notify_all()

    async def on_success(self) -> None:
        cond = self._condition()
        async with cond:
            self._successes += 1
            if self._successes >= self.limit and self.limit < self.maximum:
                self.limit += 1
                self._successes = 0
                cond.notify_all()

    async def on_throttle(self, retry_after: float | None = None) -> None:
        cond = self._condition()
        async with cond:
            now = time.monotonic()
            self.throttles += 1
            self._successes = 0
            if now - self._last_cut >= self.cooldown:
                self.limit = max(1, self.limit // 2)
                self._last_cut = now
            pause = retry_after if retry_after is not None else self.cooldown
            self._resume_at = max(self._resume_at, now + min(max(pause, 0.0), 60.0))

    async def stats(self) -> dict[str, int]:
        return {
            "maximum": self.maximum, "limit": self.limit, "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight, "throttles": self.throttles, "requests": self.leases.taken,
            "reclaimed": self.leases.reclaimed,
        }  # fmt: skip


@functools.cache
def _limiter_actor_class() -> Any:
    ray = _need_ray()
    return ray.remote(num_cpus=0, max_concurrency=1000)(RequestLimiter)


def _read_task(
    part: Partition, plan: HistoryPlan, credentials: Credentials, wanted: list[str] | None,
    limiter: Any, page_concurrency: int,
) -> Iterator[pa.Table]:  # fmt: skip
    gate = ActorGate(limiter) if limiter is not None else None
    for batch in read_partition(part, plan, credentials, wanted, gate=gate, page_concurrency=page_concurrency):
        yield pa.Table.from_batches([batch])


def _datasource_class() -> type:
    _need_ray()
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    class WandbHistoryDatasource(Datasource):
        """A Ray `Datasource` over (run, step range) partitions (see `connector.ray`)."""

        def __init__(self, plan: HistoryPlan, credentials: Credentials, limiter: Any, page_concurrency: int) -> None:
            super().__init__()
            self.plan = plan
            self.credentials = credentials
            self.limiter = limiter
            self.page_concurrency = page_concurrency
            self._projection_map: dict[str, str] | None = None

        def get_name(self) -> str:
            return "WandbHistory"

        def supports_projection_pushdown(self) -> bool:
            return True

        def _wanted(self) -> list[str] | None:
            if self._projection_map is None:
                return None
            return [n for n in self.plan.schema.names if n in self._projection_map]

        def estimate_inmemory_data_size(self) -> int | None:
            return self.plan.estimated_bytes()

        def get_read_tasks(
            self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
        ) -> list[ReadTask]:
            del parallelism, data_context  # the partitions are planned by step ranges
            wanted = self._wanted()
            schema = self.plan.projected_schema(wanted)
            width = len(schema) * 8
            tasks = []
            for part in self.plan.partitions:
                meta = BlockMetadata(num_rows=None, size_bytes=part.rows * width, input_files=None, exec_stats=None)
                read = functools.partial(
                    _read_task, part, self.plan, self.credentials, wanted, self.limiter, self.page_concurrency
                )
                extra = {"per_task_row_limit": per_task_row_limit} if per_task_row_limit is not None else {}
                tasks.append(ReadTask(read, meta, schema=schema, **extra))
            if not tasks:  # no rows: one empty block keeps the schema
                tasks.append(
                    ReadTask(
                        functools.partial(_empty, schema),
                        BlockMetadata(num_rows=0, size_bytes=0, input_files=None, exec_stats=None),
                        schema=schema,
                    )
                )
            return tasks

    return WandbHistoryDatasource


def _empty(schema: pa.Schema) -> Iterator[pa.Table]:
    yield schema.empty_table()


def read_history(
    project_or_runs: str | Sequence[Any],
    keys: Sequence[str] | None = None,
    min_step: int = 0,
    max_step: int | None = None,
    filters: dict[str, Any] | None = None,
    parallelism: int | None = None,
    api: Api | None = None,
    *,
    partition_steps: int | None = None,
    max_requests: int = DEFAULT_MAX_REQUESTS,
    concurrency: int | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    page_concurrency: int = 2,
    ship_api_key: bool = True,
    allow_missing: bool = False,
    retry: RetryPolicy | None = None,
) -> ray.data.Dataset:
    """The history of many runs as one `ray.data.Dataset` (see the module docstring).

    `project_or_runs`: ``"entity/project"`` (listed now, with `filters`), a run path, or a list of
    run paths / `Run` s. `keys` select columns (None: every key; unknown to every run: an error
    unless `allow_missing`). ``min_step`` is inclusive, ``max_step`` exclusive. `parallelism` is the
    number of partitions to aim for (default: about ``DEFAULT_PARTITION_ROWS`` rows each);
    `partition_steps` cuts every run on multiples of that many steps instead. `max_requests` is the
    API-wide limit of requests in flight; `concurrency` caps the Ray tasks running at once;
    `retry` is the workers' `connector.remote.transport.RetryPolicy`.

    >>> import ray, connector.ray  # doctest: +SKIP
    >>> ray.init(num_cpus=2)  # doctest: +SKIP
    >>> ds = connector.ray.read_history("e/p", keys=["loss"], api=Api(base_url=...))  # doctest: +SKIP
    >>> ds.select_columns(["run_id", "_step", "loss"]).to_arrow_refs()  # doctest: +SKIP
    """
    ray = _need_ray()
    from ..api import default_api

    if not isinstance(max_requests, int) or max_requests < 1:
        raise ConfigurationError(f"max_requests must be a positive integer, got {max_requests!r}")
    api = default_api(api)
    runs = list_runs(project_or_runs, filters=filters, api=api)
    from ..remote.source import ApiSource

    local = [r for r in runs if not isinstance(r.source, ApiSource)]
    if local:
        raise ConfigurationError(
            f"connector.ray reads runs through the W&B API; {'/'.join(local[0].path)} is a local run "
            "(serve local runs with `wandb-history serve PATH` and read them from there)"
        )
    plan = plan_partitions(
        runs, keys=keys, min_step=min_step, max_step=max_step, partition_steps=partition_steps,
        parallelism=parallelism, page_size=page_size, allow_missing=allow_missing,
    )  # fmt: skip
    credentials = Credentials(api.settings.base_url, api.settings.api_key if ship_api_key else None, retry)
    limiter = _limiter_actor_class().remote(max_requests)
    datasource = _datasource_class()(plan, credentials, limiter, page_concurrency)
    return ray.data.read_datasource(datasource, concurrency=concurrency)


def limiter_stats(dataset: ray.data.Dataset) -> dict[str, int] | None:
    """The `RequestLimiter` counters of a dataset made by `read_history` (None if not found)."""
    import ray

    for op in _logical_ops(dataset):
        source = getattr(op, "datasource", None)
        limiter = getattr(source, "limiter", None)
        if limiter is not None:
            return ray.get(limiter.stats.remote())
    return None


def _logical_ops(dataset: Any) -> Iterator[Any]:
    stack: list[Any] = [dataset._logical_plan.dag]
    while stack:
        op = stack.pop()
        yield op
        stack.extend(getattr(op, "input_dependencies", []) or [])


__all__ = [
    "DEFAULT_MAX_REQUESTS",
    "DEFAULT_PARTITION_ROWS",
    "ActorGate",
    "Credentials",
    "HistoryPlan",
    "Partition",
    "RequestLimiter",
    "fetch_columns",
    "limiter_stats",
    "list_runs",
    "plan_partitions",
    "read_history",
    "read_partition",
]
