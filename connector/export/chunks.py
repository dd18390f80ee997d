"""Read a planned run: its chunks as the Arrow tables every destination stores, each with the state
that commits it.

This is the one per-chunk loop of the project, shared by the exporter (`connector.export.runner`)
and the dlt route (`connector.export.dlt`): for each `StepRange` of a `RunPlan`, one streaming
`HistoryScan` (projected to ``keys``), cut into aligned chunks (`slot_chunks`); each chunk becomes a
table with ``entity, project, run_id`` first, the columns named by `column_for_key` (the renamed
keys in the schema metadata, `column_keys`) and JSON columns tagged (`mark_json_columns`), paired
with the `StreamState` to commit with it. A range that ends without rows still moves the state on:
it yields a `HistoryChunk` without a table.

>>> from connector.api import Run
>>> from connector.core.rundata import MemoryRun, RunMeta
>>> from .plan import ExportOptions, plan_run
>>> run = Run.from_run_data(MemoryRun(RunMeta("e", "p", "r"), rows=[{"_step": i, "x": 1.0} for i in range(25)]))
>>> options = ExportOptions(chunk_steps=10)
>>> for item in read_chunks(plan_run(run, None, options), options):
...     print(item.lo, item.hi, item.table.num_rows, item.state.min_step, item.state.watermark)
0 10 10 0 9
10 20 10 0 19
20 25 5 0 24
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from ..core.arrow import JSON
from ..core.columns import select_columns
from ..core.scan import HistoryScan
from .checkpoint import StreamState
from .plan import ExportOptions, RunPlan, slot_chunks
from .sinks.base import Interrupted
from .tables import mark_json_columns, name_columns, with_key_names, with_run_columns


@dataclass(frozen=True)
class HistoryChunk:
    """One chunk of a run: the rows of steps ``[lo, hi)`` (`table`, None when a range ended with no
    rows left) and the state that commits it."""

    lo: int
    hi: int
    table: pa.Table | None
    state: StreamState


def rewinds_of(plan: RunPlan) -> int:
    """How many times the run was rewound, this plan's rewind included."""
    prior = plan.prior.rewinds if plan.prior is not None else 0
    return prior + (plan.action == "rewound")


def chunk_state(plan: RunPlan, options: ExportOptions, min_step: int, watermark: int) -> StreamState:
    """The stream state a chunk of `plan` commits with its rows: the covered steps
    ``[min_step, watermark]`` and what the plan and `options` say of the run."""
    return StreamState(
        plan.key, watermark=watermark, last_step=plan.last_step, line_count=plan.line_count,
        run_state=plan.run.state, rewinds=rewinds_of(plan), keys=options.keys, layout=options.layout,
        chunk_steps=plan.chunk_steps, min_step=min_step,
    )  # fmt: skip


def read_chunks(
    plan: RunPlan, options: ExportOptions, *, stop: threading.Event | None = None
) -> Iterator[HistoryChunk]:
    """The chunks of `plan`, in order (see the module docstring). The next chunk is read only when
    asked for, so a consumer commits each one before the next is fetched. With `stop` set, raises
    `Interrupted` before the next range or chunk."""
    run = plan.run
    columns = select_columns(run.history_keys, options.keys, unknown="skip")
    state = functools.partial(chunk_state, plan, options)

    for step_range in plan.ranges:
        if stop is not None and stop.is_set():
            raise Interrupted("interrupted")
        scan = HistoryScan(
            run.source,
            columns=tuple(columns) if columns is not None else None,
            min_step=step_range.lo,
            max_step=step_range.hi,
            page_size=options.page_size,
            concurrency=options.concurrency,
            known_keys=run.history_keys,
        )
        ended = False
        for chunk, rows in slot_chunks(scan.to_batches(), step_range.lo, step_range.hi, plan.chunk_steps):
            if stop is not None and stop.is_set():
                raise Interrupted("interrupted")
            json_columns = {name for name, kind in scan.plan.kinds if kind == JSON}
            table, renamed = name_columns(mark_json_columns(rows, json_columns))
            table = with_key_names(with_run_columns(table, run.entity, run.project, run.id), renamed)
            yield HistoryChunk(chunk.lo, chunk.hi, table, state(*step_range.chunk_state(chunk.slot_end, chunk.last)))
            ended = chunk.last
        if not ended:
            yield HistoryChunk(step_range.lo, step_range.hi, None, state(step_range.min_step, step_range.watermark))
