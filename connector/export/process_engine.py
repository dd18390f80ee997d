"""``export(..., engine="processes")``: the chunks of an export fetched and decoded by worker
processes on this machine, so that an export uses every core.

Decoding a history page (JSON text to Arrow) is Python work: one process runs it on one core, however
many threads it has (the GIL). This engine hands the same **tasks** as the Ray engine (a run's planned
step range cut on ``chunk_steps``, `connector.export.tasks`) to a pool of ``workers``
processes (default: the machine's CPUs); each task scans its steps with the same `read_chunks` and
sends back one Arrow table per non-empty chunk slot. The exporter writes and commits them here, in
plan order, exactly as ``--engine local`` does, so the guarantees are the sink's own (merge on
(run, ``_step``), watermark committed with its data).

* **One API-wide limit**: ``--concurrency`` requests in flight over all workers. The limit is
  split evenly between them (``workers`` is at most ``--concurrency``); each worker keeps its share
  in its own `connector.export.limiter.AimdLimiter` (halved on 429/503, grown back on success) for
  all its tasks. A limiter served to the workers from this process would cost a round trip per
  request, measured to cut the throughput by more than half.
* **A worker that dies** (killed, out of memory) breaks the pool: a new pool is started and the
  tasks not yet consumed are submitted again (at most ``max_retries`` times each). Nothing was
  written by the dead worker; only fetching is repeated.
* **Ctrl-C** goes to the exporter alone (workers ignore SIGINT): it stops submitting, cancels what
  has not started and reports what was committed, as ``--engine local``.
* **Bounded memory**: at most ``max_in_flight`` tasks (default twice the workers) are submitted and
  not yet written, over every run.
* Runs that are not read through the W&B API (``.wandb`` files, in-memory runs) are read by this
  process, as ``--engine local``.

>>> reader = ProcessChunkReader(lambda: None, concurrency=4, workers=2)
>>> reader.workers, reader.share, reader.max_in_flight
(2, 2, 4)
>>> reader.close()
"""

from __future__ import annotations

import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..core.workers import WorkerPool
from .chunks import HistoryChunk
from .limiter import AimdLimiter
from .plan import ExportOptions, RunPlan
from .sinks.base import Interrupted
from .tasks import ChunkTask, fetch_chunks, task_chunks

if TYPE_CHECKING:
    from ..remote.transport import RetryPolicy

#: How often a waiting run worker looks at the stop flag (seconds).
_POLL = 0.25


#: The worker's share of the API-wide limit (set by `_worker_init`, one per worker process).
_GATE: AimdLimiter | None = None


def _worker_init(share: int) -> None:
    """Pool workers leave Ctrl-C to the exporter, keep their share of the request limit, and load
    the decoding code before the first task."""
    global _GATE
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _GATE = AimdLimiter(share)
    from .. import api  # noqa: F401


def _run_task(task: ChunkTask) -> tuple[list[tuple[int, pa.Table]], dict[str, Any]]:
    """Run on a worker: the task's tables and request counters, and this worker's limiter."""
    pieces, stats = fetch_chunks(task, _GATE)
    return pieces, {**stats, "worker": os.getpid(), "limiter": _GATE.stats() if _GATE else {}}


@dataclass
class _Submitted:
    task: ChunkTask
    future: Future[Any]
    attempts: int = 1


class ProcessChunkReader:
    """`read_chunks`, with the fetching and decoding done by a pool of worker processes (see the
    module docstring). Called as ``reader(plan, options, stop=...)`` by the exporter's run workers
    (several at once); yields the same `HistoryChunk` s, in the same order, as `read_chunks`."""

    def __init__(
        self, api: Callable[[], Any], *, concurrency: int, retry: RetryPolicy | None = None,
        workers: int | None = None, max_in_flight: int | None = None,
        rows_per_task: int | None = None, max_retries: int = 3,
    ) -> None:  # fmt: skip
        self.api_factory = api
        self.concurrency = concurrency
        self.retry = retry
        self.workers = max(1, min(workers or os.cpu_count() or 1, concurrency))
        self.share = max(1, concurrency // self.workers)
        self.max_in_flight = max_in_flight or 2 * self.workers
        self.rows_per_task = rows_per_task
        self.max_retries = max_retries
        self.stats = {"requests": 0, "retries": 0, "tasks": 0, "restarts": 0}
        self._slots = threading.BoundedSemaphore(self.max_in_flight)
        self._lock = threading.Lock()
        self._pool = WorkerPool(self.workers, _worker_init, (self.share,))
        self._limiters: dict[int, dict[str, int]] = {}  # the latest limiter stats of each worker
        self._throttles = 0  # those of the workers of pools that broke

    # -- pool ----------------------------------------------------------------------------------
    def _restart(self, broken: ProcessPoolExecutor) -> None:
        """A new pool in place of `broken` (once, however many tasks found it broken)."""
        if self._pool.replace(broken):
            with self._lock:
                self.stats["restarts"] += 1
                self._throttles += sum(s.get("throttles", 0) for s in self._limiters.values())
                self._limiters.clear()  # the new workers' limiters start afresh

    def close(self) -> None:
        self._pool.close()

    def limiter_stats(self) -> dict[str, int]:
        """The workers' limiters together: their shares and peaks added up, their throttles counted."""
        with self._lock:
            each = list(self._limiters.values())
            throttles = self._throttles
        if not each:
            return {}
        total = {name: sum(s.get(name, 0) for s in each) for name in ("min_concurrency", "peak_in_flight", "throttles")}
        return {**total, "max_concurrency": self.share * self.workers, "throttles": total["throttles"] + throttles}

    # -- one run ---------------------------------------------------------------------------------
    def __call__(
        self, plan: RunPlan, options: ExportOptions, *, stop: threading.Event | None = None
    ) -> Iterator[HistoryChunk]:
        yield from task_chunks(plan, options, stop, self.api_factory, self.retry, self.rows_per_task, self._results)

    def _submit(self, task: ChunkTask) -> Future[Any]:
        return self._pool.submit(_run_task, task)

    def _result(self, item: _Submitted) -> tuple[list[tuple[int, pa.Table]], dict[str, Any]]:
        """The task's result; a task lost with its worker is submitted again (to a new pool)."""
        while True:
            pool = self._pool.current
            try:
                result: tuple[list[tuple[int, pa.Table]], dict[str, Any]] = item.future.result()
                return result
            except (BrokenProcessPool, CancelledError):  # its worker died, or another task's did
                if item.attempts > self.max_retries:
                    raise
                if pool is not None:
                    self._restart(pool)
                item.attempts += 1
                item.future = self._submit(item.task)

    def _results(self, tasks: list[ChunkTask], stop: threading.Event | None) -> Iterator[tuple[int, pa.Table]]:
        """Each task's ``(slot, table)`` s in task order, with at most ``max_in_flight`` tasks
        submitted and not consumed over all runs (a run worker blocks only when it has none)."""
        window: deque[_Submitted] = deque()
        todo = deque(tasks)
        try:
            while todo or window:
                while todo and self._slots.acquire(blocking=not window, timeout=_POLL if not window else None):
                    window.append(_Submitted(todo[0], self._submit(todo.popleft())))
                    with self._lock:
                        self.stats["tasks"] += 1
                if stop is not None and stop.is_set():
                    raise Interrupted("interrupted")
                if not window or not _done(window[0].future, _POLL):
                    continue
                item = window.popleft()
                self._slots.release()
                pieces, stats = self._result(item)
                with self._lock:
                    self.stats["requests"] += stats["requests"]
                    self.stats["retries"] += stats["retries"]
                    self._limiters[stats["worker"]] = stats["limiter"]
                yield from pieces
        finally:
            for item in window:
                item.future.cancel()
                self._slots.release()


def _done(future: Future[Any], timeout: float) -> bool:
    """Whether `future` finished within `timeout` seconds (with a result, an error or cancelled)."""
    try:
        future.exception(timeout=timeout)
    except TimeoutError:
        return False
    except Exception:  # noqa: BLE001  # cancelled or broken: `_result` decides
        return True
    return True


__all__ = ["ProcessChunkReader"]
