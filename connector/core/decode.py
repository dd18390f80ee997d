"""Decoding pages into Arrow in worker processes, so that one scan uses every core.

Turning a page's JSON texts into an Arrow batch is Python work that holds the GIL: a scan decoding
in its own process uses one core, whatever its fetching threads do. A `DecodePool` of worker
processes (`connector.core.workers.WorkerPool`) takes the pages that can be decoded elsewhere (`Page.offload`:
live history pages, whose texts are parsed and checked by a plain function) and gives back
``(batch, first_step, last_step)``; the scan keeps fetching meanwhile, and yields the batches in
step order. The pool is an `Api`'s (``Api(processes=2)``), shared by its scans and closed with it.

A worker that dies (killed, out of memory) is replaced: the pages it held are decoded again. Workers
ignore SIGINT: Ctrl-C stops the scan in the caller's process, as without a pool.

>>> from connector.core.arrow import SchemaPlan
>>> plan = SchemaPlan((("_step", "int"), ("a", "float")))
>>> batch, first, last = page_batch((_rows, ([{"_step": 4, "a": 1}],)), plan)
>>> batch.to_pylist(), first, last
([{'_step': 4, 'a': 1.0, '_extra': None}], 4, 4)
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pyarrow as pa

from .arrow import SchemaPlan
from .workers import WorkerPool

Job = tuple[Callable[..., list[dict[str, Any]]], tuple[Any, ...]]
"""A page's `Page.offload`: the function that gives its rows, and its arguments."""


def _rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return rows


def page_batch(job: Job, plan: SchemaPlan) -> tuple[pa.RecordBatch, int | None, int | None]:
    """Run in a worker: the page's rows (``job``) as one batch of `plan`'s schema, and the steps of
    its first and last rows (None for an empty page)."""
    func, args = job
    rows = func(*args)
    batch = plan.to_batch(rows)
    return batch, (rows[0].get("_step") if rows else None), (rows[-1].get("_step") if rows else None)


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the scan's, in the caller's process


class DecodePool:
    """`processes` worker processes decoding pages (started on first use; `close` stops them).

    >>> pool = DecodePool(2)
    >>> pool.processes, pool.started
    (2, False)
    >>> pool.close()
    """

    def __init__(self, processes: int) -> None:
        self.workers = WorkerPool(processes, _worker_init)
        self.processes = processes

    @property
    def started(self) -> bool:
        return self.workers.current is not None

    @property
    def restarts(self) -> int:
        return self.workers.restarts

    def submit(self, job: Job, plan: SchemaPlan) -> Future[tuple[pa.RecordBatch, int | None, int | None]]:
        """Decode one page (`Page.offload`'s ``job``) into a batch of `plan`'s schema."""
        return self.workers.submit(page_batch, job, plan)

    def result(
        self, future: Future[tuple[pa.RecordBatch, int | None, int | None]], job: Job, plan: SchemaPlan
    ) -> tuple[pa.RecordBatch, int | None, int | None]:
        """`future`'s result; a page lost with its worker is decoded again, here."""
        pool = self.workers.current
        try:
            return future.result()
        except (BrokenProcessPool, CancelledError):
            if pool is not None:
                self.workers.replace(pool)
            return page_batch(job, plan)

    def close(self) -> None:
        self.workers.close()


__all__ = ["DecodePool", "Job", "page_batch"]
