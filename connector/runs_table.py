"""The `runs` table: one row of metadata per run, the same columns in every destination.

Its DDL lives in `sql/runs_table.sql` (DuckDB) and `sql/postgres_runs_table.sql`; `wandb_runs()` in
SQL and the exporter's `runs` table both use `RUNS_SCHEMA`.

>>> from connector.rundata import MemoryRun, RunMeta
>>> from connector.api import Run
>>> runs_to_arrow([Run.from_run_data(MemoryRun(RunMeta("e", "p", "r1"), rows=[{"_step": 4}]))]).column("last_step").to_pylist()
[4]
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from .api import Run

RUNS_SCHEMA = pa.schema(
    [
        pa.field("entity", pa.string(), nullable=False),
        pa.field("project", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("state", pa.string()),
        pa.field("created_at", pa.string()),
        pa.field("heartbeat_at", pa.string()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("config", pa.string()),  # JSON text
        pa.field("summary", pa.string()),  # JSON text
        pa.field("last_step", pa.int64()),
        pa.field("history_line_count", pa.int64()),
    ]
)


def runs_to_arrow(runs: Iterable[Run]) -> pa.Table:
    """Metadata of `runs` as a table of `RUNS_SCHEMA` (config and summary as JSON text)."""
    records = []
    for run in runs:
        record = run.to_dict()
        record["config"] = json.dumps(record["config"], sort_keys=True)
        record["summary"] = json.dumps(record["summary"], sort_keys=True)
        records.append(record)
    return pa.Table.from_pylist(records, schema=RUNS_SCHEMA)
