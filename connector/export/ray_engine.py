"""``export(..., engine="ray")``: the chunks of an export fetched and decoded by Ray tasks.

``pip install 'wandb-history-connector[ray]'``

The exporter (`connector.export.runner`) stays the same: same listing, same plan, same chunks, same
sink, same order of writes and commits. Only the one step "give me the next chunk of this run"
changes: instead of scanning in-process (`connector.export.chunks.read_chunks`), `RayChunkReader`
cuts each planned step range into **tasks** aligned on ``chunk_steps`` (about one chunk of rows per
task, so a sparse run costs what its rows cost), runs each task on the cluster (the task scans its
steps with the same `read_chunks` and returns one Arrow table per non-empty chunk slot), and hands
the results back **in plan order** to the exporter's run worker, which writes each chunk and its
watermark through the sink exactly as the single-process export does. Exactly-once per chunk is the
sink's (merge on (run, ``_step``), watermark committed with the data): a task that Ray retries
after a worker death only fetches again; nothing is written twice.

* **One API-wide limit**: every HTTP attempt of every task takes a slot from one Ray actor holding
  the exporter's own `connector.export.limiter.AimdLimiter` (``--concurrency`` requests in flight
  across the whole cluster; halved on 429/503 with a shared cool-down).
* **Bounded memory** (backpressure): at most ``max_in_flight`` tasks are submitted and not yet
  committed, over every run (default: twice the cluster's CPUs); a run worker submits the next task
  only when a slot is free, so the object store holds a few chunks, never the project.
* Runs read through the W&B API are fetched by tasks; local runs (``.wandb`` files, in-memory
  runs) exist only where the driver is, so the driver reads those itself, as ``--engine local``.
  The API key travels inside the tasks (never printed). A driver that already called
  ``ray.init(...)`` uses that cluster; otherwise ``ray.init()`` (``RAY_ADDRESS``, else a local one).

``WANDB_HISTORY_RAY_KILL_ONCE=<file>`` (tests): a task that finds `<file>` removes it and kills its
own worker process (``SIGKILL``) after fetching, so Ray's retry of a lost task is exercised for real.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import ConfigurationError
from .chunks import HistoryChunk, chunk_state, read_chunks
from .limiter import AimdLimiter
from .plan import ExportOptions, RunPlan, StepRange
from .sinks.base import Interrupted

if TYPE_CHECKING:
    from ..remote.transport import RetryPolicy

ENGINES = ("local", "ray")
RAY_EXTRA = "pip install 'wandb-history-connector[ray]'"
KILL_ONCE_ENV = "WANDB_HISTORY_RAY_KILL_ONCE"
#: How often a waiting run worker looks at the stop flag (seconds).
_POLL = 0.25


def need_ray() -> Any:
    """The `ray` module, or a `ConfigurationError` (exit 2) naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ConfigurationError(f"--engine ray needs Ray, which is not installed: {RAY_EXTRA}") from None
    return ray


def task_ranges(lo: int, hi: int, chunk_steps: int, rows: int, rows_per_task: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` cut into task ranges on multiples of a whole number of chunk slots, so that each
    task holds about `rows_per_task` of the range's (estimated) `rows` and no chunk is split.

    >>> task_ranges(0, 25_000, 10_000, 25_000, 10_000)
    [(0, 10000), (10000, 20000), (20000, 25000)]
    >>> task_ranges(5, 1_000_000, 10, 30, 10)  # sparse: 30 rows over 100,000 slots -> 3 tasks
    [(5, 333340), (333340, 666680), (666680, 1000000)]
    """
    slots = (hi - 1) // chunk_steps - lo // chunk_steps + 1
    tasks = max(1, math.ceil(max(rows, 1) / max(rows_per_task, 1)))
    size = max(1, math.ceil(slots / tasks)) * chunk_steps
    out, start = [], lo
    while start < hi:
        end = min(hi, (start // size + 1) * size)
        out.append((start, end))
        start = end
    return out


#: Seconds after which a slot not given back (its worker died mid-request) returns to the pool;
#: above the transport's longest attempt (connect 10 s + read 60 s).
LEASE_S = 180.0


class SharedLimiter:
    """The exporter's `AimdLimiter`, served by one threaded Ray actor to every task.

    A slot is a **lease**: a worker killed while it holds one cannot give it back, so a lease not
    released within `lease_s` is reclaimed (the limit never shrinks for good by lost workers).

    >>> lim = SharedLimiter(2, lease_s=0.0)
    >>> a = lim.acquire(); b = lim.acquire(); lim.reap(); lim.limiter.in_flight
    0
    """

    def __init__(self, maximum: int, lease_s: float = LEASE_S) -> None:
        self.limiter = AimdLimiter(maximum)
        self.lease_s = lease_s
        self.requests = self.reclaimed = 0
        self._leases: dict[int, float] = {}
        self._lock = threading.Lock()

    def acquire(self) -> int:
        lim = self.limiter
        while True:  # AimdLimiter.acquire, waking up every second to reap lost leases
            self.reap()
            with lim._cond:
                if lim.in_flight < lim.limit and lim._resume_at <= time.monotonic():
                    lim.in_flight += 1
                    lim.peak_in_flight = max(lim.peak_in_flight, lim.in_flight)
                    break
                lim._cond.wait(timeout=1.0)
        with self._lock:
            self.requests += 1
            lease = self.requests
            self._leases[lease] = time.monotonic() + self.lease_s
        return lease

    def release(self, lease: int) -> None:
        with self._lock:
            held = self._leases.pop(lease, None) is not None
        if held:
            self.limiter.release()

    def reap(self) -> None:
        """Give back the slots of leases past their time (their worker is gone)."""
        now = time.monotonic()
        with self._lock:
            lost = [k for k, until in self._leases.items() if until <= now]
            for k in lost:
                del self._leases[k]
            self.reclaimed += len(lost)
        for _ in lost:
            self.limiter.release()

    def on_success(self) -> None:
        self.limiter.on_success()

    def on_throttle(self, retry_after: float | None = None) -> None:
        self.limiter.on_throttle(retry_after)

    def stats(self) -> dict[str, int]:
        return {**self.limiter.stats(), "requests": self.requests, "reclaimed": self.reclaimed}


class ActorGate:
    """An `connector.remote.transport.AttemptGate` whose slots come from a `SharedLimiter` actor."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    @contextmanager
    def slot(self) -> Iterator[None]:
        import ray

        lease = ray.get(self.actor.acquire.remote())
        try:
            yield
        finally:
            self.actor.release.remote(lease)

    def on_throttle(self, retry_after: float | None) -> None:
        self.actor.on_throttle.remote(retry_after)

    def on_success(self) -> None:
        self.actor.on_success.remote()


@dataclass(frozen=True)
class ChunkTask:
    """What a worker needs to fetch the chunks of steps ``[lo, hi)`` of one run (no `Run`, no Api)."""

    entity: str
    project: str
    run_id: str
    attrs: dict[str, Any] = field(repr=False)
    lo: int
    hi: int
    chunk_steps: int
    options: ExportOptions
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    retry: RetryPolicy | None = None
    kill_flag: str | None = None


def fetch_task(task: ChunkTask, limiter: Any) -> tuple[list[tuple[int, pa.Table]], dict[str, int]]:
    """Run on a worker: ``[(slot, table)]`` for each non-empty ``chunk_steps`` slot of the task's
    steps (the tables `read_chunks` makes), and the worker's request counters."""
    from ..api import Api, Run
    from ..core.runpath import RunRef
    from .checkpoint import StateKey

    api = Api(api_key=task.api_key, base_url=task.base_url, retry=task.retry)
    if limiter is not None:
        api = api.with_transport(api.transport.with_gate(ActorGate(limiter)))
    run = Run(api, RunRef(task.entity, task.project, task.run_id), task.attrs)
    key = StateKey(task.entity, task.project, task.run_id, task.options.stream, task.options.key_set)
    one = StepRange(task.lo, task.hi, task.lo, task.hi - 1, task.lo, -1)
    plan = RunPlan(run, key, None, "new", [one], task.hi - 1, None, task.chunk_steps)
    out = [(c.lo // task.chunk_steps, c.table) for c in read_chunks(plan, task.options) if c.table is not None]
    if task.kill_flag:
        try:
            Path(task.kill_flag).unlink()  # only one task wins the flag
        except FileNotFoundError:
            pass
        else:
            os.kill(os.getpid(), signal.SIGKILL)
    stats = api.transport.stats
    return out, {"requests": int(stats["requests"]), "retries": int(stats["retries"])}


class RayChunkReader:
    """`read_chunks`, with the fetching and decoding done by Ray tasks (see the module docstring).

    Called as ``reader(plan, options, stop=...)`` by the exporter's run workers (several at once);
    yields the same `HistoryChunk` s, in the same order, as `read_chunks`.
    """

    def __init__(
        self, api: Any, *, concurrency: int, retry: RetryPolicy | None = None,
        max_in_flight: int | None = None, rows_per_task: int | None = None, max_retries: int = 3,
    ) -> None:  # fmt: skip
        self.ray = need_ray()
        self.api_factory = api
        self.concurrency = concurrency
        self.retry = retry
        self.rows_per_task = rows_per_task
        self.max_retries = max_retries
        self._max_in_flight = max_in_flight
        self._slots: threading.BoundedSemaphore | None = None
        self._limiter: Any = None
        self._remote: Any = None
        self._started_ray = False
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0, "tasks": 0}
        self._start()  # here, on the caller's (main) thread: ray.init() wants it

    # -- cluster ---------------------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._remote is not None:
                return
            ray = self.ray
            if not ray.is_initialized():
                ray.init(configure_logging=False, log_to_driver=False, include_dashboard=False)
                self._started_ray = True
            cpus = int(ray.cluster_resources().get("CPU", 1))
            n = self._max_in_flight or max(2, 2 * cpus)
            self._slots = threading.BoundedSemaphore(n)
            actor = ray.remote(num_cpus=0, max_concurrency=max(64, 4 * self.concurrency))(SharedLimiter)
            self._limiter = actor.remote(self.concurrency)
            self._remote = ray.remote(max_retries=self.max_retries)(fetch_task)

    def close(self) -> None:
        if self._started_ray:
            self.ray.shutdown()

    def limiter_stats(self) -> dict[str, int]:
        if self._limiter is None:
            return {}
        stats: dict[str, int] = self.ray.get(self._limiter.stats.remote())
        return stats

    # -- one run ---------------------------------------------------------------------------------
    def _tasks(self, plan: RunPlan, options: ExportOptions, step_range: StepRange) -> list[ChunkTask]:
        run = plan.run
        api = self.api_factory()
        span = max(1, plan.last_step + 1)
        width = step_range.hi - step_range.lo
        rows = width if plan.line_count is None else math.ceil(plan.line_count * min(1.0, width / span))
        cs = plan.chunk_steps
        attrs = {k: v for k, v in run.attrs.items() if k not in ("config", "summaryMetrics", "systemMetrics")}
        kill = os.environ.get(KILL_ONCE_ENV) or None
        return [
            ChunkTask(run.entity, run.project, run.id, attrs, a, b, cs, options, api.settings.base_url,
                      api.settings.api_key, self.retry, kill)
            for a, b in task_ranges(step_range.lo, step_range.hi, cs, rows, self.rows_per_task or cs)
        ]  # fmt: skip

    def __call__(
        self, plan: RunPlan, options: ExportOptions, *, stop: threading.Event | None = None
    ) -> Iterator[HistoryChunk]:
        from ..remote.source import ApiSource

        self._start()
        run = plan.run
        if not isinstance(run.source, ApiSource):  # a local file or object: only the driver has it
            yield from read_chunks(plan, options, stop=stop)
            return
        state = functools.partial(chunk_state, plan, options)

        for r in plan.ranges:
            if stop is not None and stop.is_set():
                raise Interrupted("interrupted")
            held: tuple[int, pa.Table] | None = None
            for slot, table in self._results(self._tasks(plan, options, r), stop):
                if held is not None:
                    yield _chunk(r, held, plan.chunk_steps, False, state)
                held = (slot, table)
            if held is not None:
                yield _chunk(r, held, plan.chunk_steps, True, state)
            else:  # no rows in the range: the state still moves on
                yield HistoryChunk(r.lo, r.hi, None, state(r.min_step, r.watermark))

    def _results(self, tasks: list[ChunkTask], stop: threading.Event | None) -> Iterator[tuple[int, pa.Table]]:
        """Each task's ``(slot, table)`` s in task order, with at most ``max_in_flight`` tasks
        submitted and not consumed over all runs (a worker blocks only when it has none)."""
        ray = self.ray
        assert self._slots is not None
        window: deque[Any] = deque()
        todo = deque(tasks)
        try:
            while todo or window:
                while todo and self._slots.acquire(blocking=not window, timeout=_POLL if not window else None):
                    window.append(self._remote.remote(todo.popleft(), self._limiter))
                    with self._lock:
                        self.stats["tasks"] += 1
                if stop is not None and stop.is_set():
                    raise Interrupted("interrupted")
                if not window:
                    continue
                ready, _ = ray.wait([window[0]], timeout=_POLL)
                if not ready:
                    continue
                ref = window.popleft()
                self._slots.release()
                pieces, stats = ray.get(ref)
                with self._lock:
                    self.stats["requests"] += stats["requests"]
                    self.stats["retries"] += stats["retries"]
                yield from pieces
        finally:
            for ref in window:
                ray.cancel(ref)
                self._slots.release()


def _chunk(r: StepRange, held: tuple[int, pa.Table], chunk_steps: int, last: bool, state: Any) -> HistoryChunk:
    """The chunk of slot `held` of range `r`, exactly as `connector.export.plan.slot_chunks` cuts it
    (the last chunk of a range reaches its end)."""
    slot, table = held
    start, end = slot * chunk_steps, (slot + 1) * chunk_steps
    lo, hi = max(r.lo, start), (r.hi if last else min(r.hi, end))
    return HistoryChunk(lo, hi, table, state(*r.chunk_state(end, last)))


__all__ = ["ENGINES", "KILL_ONCE_ENV", "RAY_EXTRA", "RayChunkReader", "SharedLimiter", "need_ray", "task_ranges"]
