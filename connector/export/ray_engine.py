"""``export(..., engine="ray")``: the chunks of an export fetched and decoded by Ray tasks.

``pip install 'wandb-history-connector[ray]'``

The exporter (`connector.export.runner`) stays the same: same listing, same plan, same chunks, same
sink, same order of writes and commits. Only the one step "give me the next chunk of this run"
changes: instead of scanning in-process (`connector.export.chunks.read_chunks`), `RayChunkReader`
cuts each planned step range into **tasks** (`connector.export.tasks`) aligned on ``chunk_steps`` (about one chunk of rows per
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
* **Ctrl-C** as ``--engine local``: the tasks not consumed are cancelled, what was committed is kept
  (exit 130), and a cluster this export started is shut down. Ctrl-C while ``ray.init()`` is
  starting the cluster is held until it returns (interrupted half-way, it would leave processes
  running), then the cluster is shut down. ``--dry-run`` starts no cluster.

A task is `connector.export.tasks.ChunkTask` (shared with ``--engine processes``); its
``WANDB_HISTORY_KILL_TASK_ONCE=<file>`` makes a task kill its own worker, so that Ray's retry of a lost
task is exercised for real.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import ConfigurationError
from .chunks import HistoryChunk
from .limiter import LEASE_S, ActorGate, AimdLimiter, Leases
from .plan import ExportOptions, RunPlan
from .sinks.base import Interrupted
from .tasks import ChunkTask, fetch_chunks, task_chunks

if TYPE_CHECKING:
    from ..remote.transport import RetryPolicy

ENGINES = ("local", "ray")
RAY_EXTRA = "pip install 'wandb-history-connector[ray]'"
#: How often a waiting run worker looks at the stop flag (seconds).
_POLL = 0.25


def need_ray() -> Any:
    """The `ray` module, or a `ConfigurationError` (exit 2) naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ConfigurationError(f"--engine ray needs Ray, which is not installed: {RAY_EXTRA}") from None
    return ray


def ray_installed() -> None:
    """`need_ray` without importing Ray (``--dry-run`` checks the engine but starts nothing)."""
    import importlib.util

    try:
        found = importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigurationError(f"--engine ray needs Ray, which is not installed: {RAY_EXTRA}")


@contextmanager
def _sigint_held() -> Iterator[None]:
    """Ctrl-C held back until the block ends, then raised as `KeyboardInterrupt`.

    ``ray.init()`` interrupted half-way leaves the processes it already started (raylet agents)
    running with no one to stop them; held back, the interrupt comes once Ray can be shut down.
    Only on the main thread, and only where Ctrl-C is Python's default `KeyboardInterrupt`.
    """
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


class SharedLimiter:
    """The exporter's `AimdLimiter`, served by one threaded Ray actor to every task.

    A slot is a **lease** (`Leases`): a worker killed while it holds one cannot give it back, so a
    lease not released within `lease_s` is reclaimed (the limit never shrinks for good by lost workers).

    >>> lim = SharedLimiter(2, lease_s=0.0)
    >>> a = lim.acquire(); b = lim.acquire(); lim.reap(); lim.limiter.in_flight
    0
    """

    def __init__(self, maximum: int, lease_s: float = LEASE_S) -> None:
        self.limiter = AimdLimiter(maximum)
        self.leases = Leases(lease_s)

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
        return self.leases.take()

    def release(self, lease: int) -> None:
        if self.leases.give_back(lease):
            self.limiter.release()

    def reap(self) -> None:
        """Give back the slots of leases past their time (their worker is gone)."""
        for _ in range(self.leases.expire()):
            self.limiter.release()

    def on_success(self) -> None:
        self.limiter.on_success()

    def on_throttle(self, retry_after: float | None = None) -> None:
        self.limiter.on_throttle(retry_after)

    def stats(self) -> dict[str, int]:
        return {**self.limiter.stats(), "requests": self.leases.taken, "reclaimed": self.leases.reclaimed}


def fetch_task(task: ChunkTask, limiter: Any) -> tuple[list[tuple[int, pa.Table]], dict[str, int]]:
    """Run on a Ray worker: `connector.export.tasks.fetch_chunks`, its requests gated by the
    `SharedLimiter` actor `limiter`."""
    return fetch_chunks(task, ActorGate(limiter) if limiter is not None else None)


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
                try:
                    with _sigint_held():
                        ray.init(configure_logging=False, log_to_driver=False, include_dashboard=False)
                        self._started_ray = True
                except BaseException:  # Ctrl-C or a failed start: stop what ray.init() started
                    self._started_ray = False
                    ray.shutdown()
                    raise
            cpus = int(ray.cluster_resources().get("CPU", 1))
            n = self._max_in_flight or max(2, 2 * cpus)
            self._slots = threading.BoundedSemaphore(n)
            actor = ray.remote(num_cpus=0, max_concurrency=max(64, 4 * self.concurrency))(SharedLimiter)
            self._limiter = actor.remote(self.concurrency)
            self._remote = ray.remote(max_retries=self.max_retries)(fetch_task)

    def close(self) -> None:
        """Shut down the Ray cluster this reader started (one it joined is left running)."""
        if self._started_ray:
            self._started_ray = False
            self.ray.shutdown()

    def limiter_stats(self) -> dict[str, int]:
        if self._limiter is None:
            return {}
        stats: dict[str, int] = self.ray.get(self._limiter.stats.remote())
        return stats

    # -- one run ---------------------------------------------------------------------------------
    def __call__(
        self, plan: RunPlan, options: ExportOptions, *, stop: threading.Event | None = None
    ) -> Iterator[HistoryChunk]:
        self._start()
        yield from task_chunks(plan, options, stop, self.api_factory, self.retry, self.rows_per_task, self._results)

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


__all__ = [
    "ENGINES", "LEASE_S", "RAY_EXTRA", "ActorGate", "RayChunkReader", "SharedLimiter",
    "need_ray", "ray_installed",
]  # fmt: skip
