"""The `runs` table: one row of metadata per run, the same columns in every destination.

Its DDL lives in `sql/runs_table.sql` (DuckDB) and `sql/postgres_runs_table.sql`; `wandb_runs()` in
SQL and the exporter's `runs` table both use `RUNS_SCHEMA`.

>>> from connector.core.rundata import MemoryRun, RunMeta
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


# -- run details: what `wandb_runs()` adds to the runs table ---------------------------------------
#
# The SDK's `Run` fields that the runs query already fetches, after the `RUNS_SCHEMA` columns. The
# exporter's runs table keeps `RUNS_SCHEMA` (its DuckDB and PostgreSQL DDL, and tables written by
# earlier versions, have exactly those columns); `wandb_runs()` in SQL returns `RUN_DETAILS_SCHEMA`.

RUN_DETAIL_FIELDS = (
    pa.field("display_name", pa.string()),  # = name (the SDK has both)
    pa.field("group", pa.string()),
    pa.field("job_type", pa.string()),
    pa.field("sweep_name", pa.string()),
    pa.field("username", pa.string()),
    pa.field("notes", pa.string()),
    pa.field("url", pa.string()),  # None for runs read from local files
)
RUN_DETAILS_SCHEMA = pa.schema([*RUNS_SCHEMA, *RUN_DETAIL_FIELDS])


def app_url_of(api: object) -> str | None:
    """The W&B app (UI) URL of an `Api`'s server: ``WANDB_APP_URL``, else derived as the SDK does.

    >>> from connector.api import Api
    >>> app_url_of(Api(api_key="k" * 40, base_url="https://api.wandb.ai"))
    'https://wandb.ai'
    >>> app_url_of(Api(api_key="k" * 40, base_url="http://127.0.0.1:8080"))
    'http://127.0.0.1:8080'
    """
    import os

    explicit = os.environ.get("WANDB_APP_URL")
    if explicit:
        return explicit.strip().rstrip("/")
    settings = getattr(api, "settings", None)
    base = getattr(settings, "base_url", None)
    if not isinstance(base, str) or not base:
        return None
    base = base.rstrip("/")
    if "://api.wandb." in base and "://api.wandb.test" not in base:
        return base.replace("://api.", "://", 1)
    if "://api." in base:
        return base.replace("://api.", "://app.", 1)
    return base


def run_details(run: Run, app_url: str | None = None) -> dict[str, object]:
    """One row of `RUN_DETAILS_SCHEMA` (config and summary as JSON text; url only with `app_url`).

    >>> from connector.core.rundata import MemoryRun, RunMeta
    >>> from connector.api import Run
    >>> run = Run.from_run_data(MemoryRun(RunMeta("e", "p", "r1", display_name="first", group="g")))
    >>> d = run_details(run, "https://wandb.ai"); d["display_name"], d["group"], d["url"]
    ('first', 'g', 'https://wandb.ai/e/p/runs/r1')
    """
    from urllib.parse import quote

    record: dict[str, object] = run.to_dict()
    record["config"] = json.dumps(record["config"], sort_keys=True)
    record["summary"] = json.dumps(record["summary"], sort_keys=True)
    attrs = run.attrs
    user = attrs.get("user") if isinstance(attrs.get("user"), dict) else {}
    path = "/".join(quote(str(part), safe="") for part in (run.entity, run.project))
    record.update(
        display_name=run.name,
        group=attrs.get("group"),
        job_type=attrs.get("jobType"),
        sweep_name=attrs.get("sweepName"),
        username=(user or {}).get("username") or (user or {}).get("name"),
        notes=attrs.get("notes"),
        url=f"{app_url}/{path}/runs/{quote(run.id, safe='')}" if app_url else None,
    )
    return record


def run_details_to_arrow(runs: Iterable[Run], *, app_url: str | None = None) -> pa.Table:
    """Metadata of `runs` as a table of `RUN_DETAILS_SCHEMA` (see `run_details`)."""
    return pa.Table.from_pylist([run_details(run, app_url) for run in runs], schema=RUN_DETAILS_SCHEMA)
