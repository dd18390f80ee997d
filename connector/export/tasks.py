"""Export **tasks**: the unit of work the Ray and process engines hand to other processes.

A task is one run's steps ``[lo, hi)``, cut from a planned `connector.export.plan.StepRange` on
multiples of ``chunk_steps`` (`task_ranges`) so that no chunk is split; it carries what a worker
needs to fetch them without a `Run` or an `Api` object (`ChunkTask`, picklable, the key never in its
repr). A worker runs `fetch_chunks`: the same `read_chunks` the single-process exporter uses, one
Arrow table per non-empty chunk slot. The exporter turns the tables back into the chunks
`read_chunks` would have given (`range_chunks`), and writes and commits them itself.

``WANDB_HISTORY_KILL_TASK_ONCE=<file>`` (tests): a task that finds `<file>` removes it and kills
its own worker process (``SIGKILL``) after fetching, so that the engines' handling of a lost worker
is exercised for real.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .chunks import HistoryChunk, chunk_state, read_chunks
from .plan import ExportOptions, RunPlan, StepRange
from .sinks.base import Interrupted

if TYPE_CHECKING:
    from ..remote.transport import AttemptGate, RetryPolicy

KILL_ONCE_ENV = "WANDB_HISTORY_KILL_TASK_ONCE"


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


def plan_tasks(
    plan: RunPlan, options: ExportOptions, step_range: StepRange, api: Any,
    retry: RetryPolicy | None, rows_per_task: int | None,
) -> list[ChunkTask]:  # fmt: skip
    """The tasks of one planned step range, each about `rows_per_task` rows (default: one chunk's
    worth of steps), sized from the run's line count when known."""
    run = plan.run
    span = max(1, plan.last_step + 1)
    width = step_range.hi - step_range.lo
    rows = width if plan.line_count is None else math.ceil(plan.line_count * min(1.0, width / span))
    cs = plan.chunk_steps
    attrs = {k: v for k, v in run.attrs.items() if k not in ("config", "summaryMetrics", "systemMetrics")}
    kill = os.environ.get(KILL_ONCE_ENV) or None
    return [
        ChunkTask(run.entity, run.project, run.id, attrs, a, b, cs, options, api.settings.base_url,
                  api.settings.api_key, retry, kill)
        for a, b in task_ranges(step_range.lo, step_range.hi, cs, rows, rows_per_task or cs)
    ]  # fmt: skip


def fetch_chunks(
    task: ChunkTask, gate: AttemptGate | None
) -> tuple[list[tuple[int, pa.Table]], dict[str, int]]:
    """Run on a worker: ``[(slot, table)]`` for each non-empty ``chunk_steps`` slot of the task's
    steps (the tables `read_chunks` makes), and the worker's request counters. Every HTTP attempt
    passes `gate` (the exporter's shared limiter) when one is given."""
    from ..api import Api, Run
    from ..core.runpath import RunRef
    from .checkpoint import StateKey

    api = Api(api_key=task.api_key, base_url=task.base_url, retry=task.retry)
    if gate is not None:
        api = api.with_transport(api.transport.with_gate(gate))
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


def task_chunks(
    plan: RunPlan, options: ExportOptions, stop: threading.Event | None, api_factory: Callable[[], Any],
    retry: RetryPolicy | None, rows_per_task: int | None,
    results: Callable[[list[ChunkTask], threading.Event | None], Iterator[tuple[int, pa.Table]]],
) -> Iterator[HistoryChunk]:  # fmt: skip
    """The chunks of `plan`, as `read_chunks` gives them, with each planned step range cut into
    tasks that `results` runs elsewhere (it gives their ``(slot, table)`` s in task order). A run that
    is not read through the W&B API (a local file, an object in memory) is read here."""
    from ..remote.source import ApiSource

    if not isinstance(plan.run.source, ApiSource):  # only this process has it
        yield from read_chunks(plan, options, stop=stop)
        return
    state = functools.partial(chunk_state, plan, options)
    api = api_factory()
    for r in plan.ranges:
        if stop is not None and stop.is_set():
            raise Interrupted("interrupted")
        tasks = plan_tasks(plan, options, r, api, retry, rows_per_task)
        yield from range_chunks(r, plan.chunk_steps, results(tasks, stop), state)


def range_chunks(
    r: StepRange, chunk_steps: int, tables: Iterable[tuple[int, pa.Table]],
    state: Callable[[int, int], Any],
) -> Iterator[HistoryChunk]:  # fmt: skip
    """The chunks of range `r` from its tasks' ``(slot, table)`` s in order, exactly as
    `connector.export.plan.slot_chunks` cuts them (the last chunk of a range reaches its end; a
    range without rows still gives one chunk, so that its state moves on). `state(min_step,
    watermark)` is the state a chunk commits (`connector.export.chunks.chunk_state`)."""
    held: tuple[int, pa.Table] | None = None
    for slot, table in tables:
        if held is not None:
            yield _chunk(r, held, chunk_steps, False, state)
        held = (slot, table)
    if held is not None:
        yield _chunk(r, held, chunk_steps, True, state)
    else:
        yield HistoryChunk(r.lo, r.hi, None, state(r.min_step, r.watermark))


def _chunk(r: StepRange, held: tuple[int, pa.Table], chunk_steps: int, last: bool, state: Any) -> HistoryChunk:
    slot, table = held
    start, end = slot * chunk_steps, (slot + 1) * chunk_steps
    lo, hi = max(r.lo, start), (r.hi if last else min(r.hi, end))
    return HistoryChunk(lo, hi, table, state(*r.chunk_state(end, last)))


__all__ = ["KILL_ONCE_ENV", "ChunkTask", "fetch_chunks", "plan_tasks", "range_chunks", "task_chunks", "task_ranges"]
