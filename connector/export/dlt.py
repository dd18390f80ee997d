"""The generic route to other warehouses: a dlt resource that yields Arrow, with dlt's own state.

Decision: DuckDB, PostgreSQL and Parquet are built in; every other warehouse (Snowflake, BigQuery,
Redshift, ClickHouse, Databricks, ...) is reached through `dlt <https://dlthub.com>`_, an *optional*
dependency (never imported unless this route is used): `history_resource` returns a
``dlt.resource`` with ``primary_key=(entity, project, run_id, _step)`` and
``write_disposition="merge"`` that yields one ``pyarrow.Table`` per step-range chunk. Its
watermarks live in ``dlt.current.resource_state()``, which dlt commits atomically with the loaded
data (the same contract as the built-in sinks: last committed step per run and key set, inclusive
``min_step``, exclusive ``max_step``, a lag window for running runs, merge on (run, ``_step``)).

    import dlt
    from connector.export.dlt import history_resource
    pipeline = dlt.pipeline("wandb", destination="snowflake", dataset_name="wandb")
    pipeline.run(history_resource(["acme/vision"]))

`iter_history_tables` is the dlt-free core, usable with any loader that can commit a dict of state
with the data:

>>> from connector.core.rundata import MemoryRun, RunMeta
>>> run = MemoryRun(RunMeta("e", "p", "r"), rows=[{"_step": i, "x": 1.0} for i in range(25)])
>>> marks = {}
>>> [t.num_rows for t in iter_history_tables([run], marks, chunk_steps=10)], marks
([10, 10, 5], {'e/p/r|*': {'watermark': 24, 'min_step': 0, 'last_step': 24, 'line_count': 25, 'run_state': 'finished'}})
>>> [t.num_rows for t in iter_history_tables([run], marks, chunk_steps=10)]
[]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..core.scan import HistoryScan
from .checkpoint import StreamState
from .plan import ExportOptions, plan_run, run_columns, slot_chunks
from .sources import Damaged, Missing, iter_runs
from .tables import name_columns, with_run_columns

if TYPE_CHECKING:
    from ..api import Api


def iter_history_tables(
    sources: Sequence[Any],
    watermarks: dict[str, dict[str, Any]],
    *,
    api: Api | None = None,
    **options: Any,
) -> Iterator[pa.Table]:
    """Yield one Arrow table per chunk after each run's watermark; update `watermarks` (keyed by
    ``"entity/project/run_id|<key set>"``) after the consumer has taken the chunk."""
    from .limiter import AimdLimiter
    from .runner import limited_api

    if options.get("keys") is not None:
        options["keys"] = tuple(options["keys"])
    opts = ExportOptions(**options)
    factory = limited_api(api, AimdLimiter(opts.concurrency), None)
    for run in iter_runs(list(sources), factory, filters=opts.filters, run_states=opts.run_states, run_ids=opts.run_ids):
        if isinstance(run, Missing | Damaged):
            continue
        mark_key = f"{run.entity}/{run.project}/{run.id}|{opts.key_set}"
        saved = watermarks.get(mark_key)
        key = plan_run(run, None, opts).key
        prior = StreamState(key, **saved) if saved else None
        plan = plan_run(run, prior, opts)
        columns = run_columns(run, opts.keys)
        for step_range in plan.ranges:
            scan = HistoryScan(
                run.source,
                columns=tuple(columns) if columns is not None else None,
                min_step=step_range.lo,
                max_step=step_range.hi,
                page_size=opts.page_size,
                concurrency=opts.concurrency,
                known_keys=run.history_keys,
            )
            done = False
            for chunk, rows in slot_chunks(scan.to_batches(), step_range.lo, step_range.hi, plan.chunk_steps):
                yield with_run_columns(name_columns(rows)[0], run.entity, run.project, run.id)
                min_step, watermark = step_range.chunk_state(chunk.slot_end, chunk.last)
                watermarks[mark_key] = _mark(plan, run.state, min_step, watermark)
                done = chunk.last
            if not done:
                watermarks[mark_key] = _mark(plan, run.state, step_range.min_step, step_range.watermark)


def _mark(plan: Any, run_state: str | None, min_step: int, watermark: int) -> dict[str, Any]:
    return {
        "watermark": watermark,
        "min_step": min_step,
        "last_step": plan.last_step,
        "line_count": plan.line_count,
        "run_state": run_state,
    }


def history_resource(sources: Sequence[Any], *, api: Api | None = None, **options: Any) -> Any:
    """A ``dlt.resource`` named ``history`` over `iter_history_tables` (needs ``pip install dlt``)."""
    try:
        import dlt
    except ImportError as exc:
        raise ImportError("the dlt route needs dlt: pip install dlt") from exc

    @dlt.resource(name="history", primary_key=("entity", "project", "run_id", "_step"), write_disposition="merge")
    def history() -> Iterator[pa.Table]:
        state = dlt.current.resource_state()
        yield from iter_history_tables(sources, state.setdefault("watermarks", {}), api=api, **options)

    return history
