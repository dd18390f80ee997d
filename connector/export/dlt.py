"""The generic route to other warehouses: a dlt resource that yields Arrow, with dlt's own state.

Decision: DuckDB, PostgreSQL and Parquet are built in; every other warehouse (Snowflake, BigQuery,
Redshift, ClickHouse, Databricks, ...) is reached through `dlt <https://dlthub.com>`_, an *optional*
dependency (never imported unless this route is used): `history_resource` returns a
``dlt.resource`` with ``primary_key=(entity, project, run_id, _step)`` and
``write_disposition="merge"`` that yields one ``pyarrow.Table`` per step-range chunk. Its
watermarks live in ``dlt.current.resource_state()``, which dlt commits atomically with the loaded
data (the same contract as the built-in sinks: last committed step per run and key set, inclusive
``min_step``, exclusive ``max_step``, a lag window for running runs, merge on (run, ``_step``)).
The chunks and their states are the exporter's own (`connector.export.chunks.read_chunks`): the
same tables, and each watermark in the form the built-in sinks store (`StreamState.to_json`).

    import dlt
    from connector.export.dlt import history_resource
    pipeline = dlt.pipeline("wandb", destination="snowflake", dataset_name="wandb")
    pipeline.run(history_resource(["acme/vision"]))

`iter_history_tables` is the dlt-free core, usable with any loader that can commit a dict of state
with the data:

>>> from connector.core.rundata import MemoryRun, RunMeta
>>> run = MemoryRun(RunMeta("e", "p", "r"), rows=[{"_step": i, "x": 1.0} for i in range(25)])
>>> marks = {}
>>> [t.num_rows for t in iter_history_tables([run], marks, chunk_steps=10)]
[10, 10, 5]
>>> {k: marks["e/p/r|*"][k] for k in ("watermark", "min_step", "last_step", "line_count", "run_state")}
{'watermark': 24, 'min_step': 0, 'last_step': 24, 'line_count': 25, 'run_state': 'finished'}
>>> [t.num_rows for t in iter_history_tables([run], marks, chunk_steps=10)]
[]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .checkpoint import StateKey, StreamState
from .chunks import read_chunks
from .listing import Damaged, Missing, iter_runs
from .plan import ExportOptions, plan_run

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
    ``"entity/project/run_id|<key set>"``, each a `StreamState` as JSON) after the consumer has taken
    the chunk. `options` are those of `ExportOptions` (the destination ones aside)."""
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
        key = StateKey(run.entity, run.project, run.id, opts.stream, opts.key_set)
        saved = watermarks.get(mark_key)
        prior = StreamState.from_json({**saved, "key": asdict(key)}) if saved else None
        for chunk in read_chunks(plan_run(run, prior, opts), opts):
            if chunk.table is not None:
                yield chunk.table
            watermarks[mark_key] = chunk.state.to_json()


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
