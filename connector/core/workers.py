"""`WorkerPool`: worker processes for Python work that holds the GIL (decoding pages into Arrow).

A ``concurrent.futures.ProcessPoolExecutor`` started with ``spawn`` (``fork`` would copy the locks
of the caller's other threads), with every worker started on first use (the executor starts one
only when none is idle, so a second worker would otherwise import Arrow, a second of CPU, in the
middle of the work), and replaced as a whole when a worker dies (the executor is then broken: every
pending future fails). Used by `connector.core.decode` (one scan's pages) and
`connector.export.process_engine` (an export's tasks).

>>> pool = WorkerPool(2)
>>> pool.current is None, pool.restarts
(True, 0)
>>> pool.close()
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any


def _started() -> None:
    """A task that only makes the executor start a worker."""


class WorkerPool:
    """`processes` spawned workers, each set up by ``initializer(*initargs)``."""

    def __init__(
        self, processes: int, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()
    ) -> None:
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        self.processes = processes
        self.initializer = initializer
        self.initargs = initargs
        self.restarts = 0
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> ProcessPoolExecutor | None:
        """The running executor (None before the first use and after a replacement or `close`):
        what to pass to `replace` when one of its futures fails for a lost worker."""
        return self._pool

    def executor(self) -> ProcessPoolExecutor:
        """The running executor, every worker started."""
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.processes, mp_context=multiprocessing.get_context("spawn"),
                    initializer=self.initializer, initargs=self.initargs,
                )  # fmt: skip
                for started in [self._pool.submit(_started) for _ in range(self.processes)]:
                    started.result()
            return self._pool

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        """``fn(*args)`` on a worker (on a new executor when the running one turns out broken)."""
        pool = self.executor()
        try:
            return pool.submit(fn, *args)
        except BrokenProcessPool:
            self.replace(pool)
            return self.executor().submit(fn, *args)

    def replace(self, broken: ProcessPoolExecutor) -> bool:
        """Drop `broken` so that the next use starts a new executor; True for the one call that did
        it, however many futures found it broken."""
        with self._lock:
            if self._pool is not broken:
                return False
            broken.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            self.restarts += 1
            return True

    def close(self) -> None:
        """Stop the workers (waiting for what they are running)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["WorkerPool"]
