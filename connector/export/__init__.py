"""Checkpointed batch export of run history into DuckDB, PostgreSQL or a Parquet dataset.

``export(sources, to, **options)`` is the Python form of ``wandb-history export SOURCE... --to DEST``
(see `connector.cli.export` for every option). It is incremental: watermarks per (run, stream,
key set) are committed with the data, so a re-run fetches only new steps and a crashed or
interrupted export resumes where it stopped. Modules: `plan` (what to fetch), `checkpoint`
(watermarks, atomic state files, the crash hook), `sinks` (destinations), `limiter` (shared AIMD
concurrency), `progress`, `runner`, `cli`.

>>> from connector.core.rundata import MemoryRun, RunMeta
>>> import tempfile, os
>>> run = MemoryRun(RunMeta("e", "p", "r1"), rows=[{"_step": i, "loss": i / 2} for i in range(5)])
>>> db = os.path.join(tempfile.mkdtemp(), "h.duckdb")
>>> export([run], db).rows, export([run], db).rows
(5, 0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..api import Api
    from ..remote.transport import RetryPolicy
    from .progress import Progress
    from .runner import ExportSummary

__all__ = ["ExportSummary", "export"]


def export(
    sources: Sequence[Any] | str,
    to: str,
    *,
    api: Api | None = None,
    retry: RetryPolicy | None = None,
    progress: Progress | None = None,
    engine: str = "local",
    **options: Any,
) -> ExportSummary:
    """Export the history of `sources` into `to`; returns an `ExportSummary`.

    `sources`: ``"entity/project"``, run paths or URLs, local ``.wandb`` paths, `Run` or `RunData`
    objects (one or a list). `to`: a ``.duckdb``/``.db`` file, a ``postgresql://`` URL or a folder
    (Parquet dataset). `options` are the fields of `connector.export.plan.ExportOptions`: ``keys``,
    ``min_step``, ``max_step`` (exclusive), ``layout`` (``"wide"``/``"long"``),
    ``include_system_metrics``, ``concurrency``, ``chunk_steps``, ``checkpoint``, ``full_refresh``,
    ``dry_run``, ``running_lag``, ``page_size``, ``filters``, ``run_states``, ``run_ids``.
    `api` defaults to ``Api()`` from the environment (the API key is never an option here).
    `engine`: ``"local"`` (this process) or ``"ray"`` (chunks fetched by Ray tasks, written here:
    `connector.export.ray_engine`).
    """
    from .plan import ExportOptions
    from .runner import Exporter

    if isinstance(sources, str) or not hasattr(sources, "__iter__"):
        sources = [sources]
    for name in ("keys", "run_states", "run_ids"):
        if options.get(name) is not None and not isinstance(options[name], str):
            options[name] = tuple(options[name])
    return Exporter(sources, to, ExportOptions(**options), api=api, retry=retry, progress=progress, engine=engine).run()


def __getattr__(name: str) -> Any:
    if name == "ExportSummary":
        from .runner import ExportSummary

        return ExportSummary
    raise AttributeError(name)
