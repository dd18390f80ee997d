"""Sources of an export → runs, listed incrementally.

A SOURCE is:

* ``entity/project`` (or ``project`` with ``WANDB_ENTITY``): the project's runs, listed page by page in
  creation order (stable while runs are added) and handed to the workers as each page arrives, so a
  project with many thousands of runs starts exporting at once. ``--filter`` (MongoDB-style JSON),
  ``--run-state`` and ``--run ID`` narrow the listing on the server;
* a run path or a W&B run URL (``entity/project/run_id``);
* a local ``.wandb`` file, run directory or ``wandb/`` folder (no server);
* from Python also a `Run` or a `RunData`.

A listing knows whether it was exhaustive (no filter, no ``--run-state``/``--run``): only then can a
committed run that no longer appears be marked as deleted upstream.

>>> build_filters({"config.lr": {"$gt": 0}}, ("finished",), ())
{'$and': [{'config.lr': {'$gt': 0}}, {'state': {'$in': ['finished']}}]}
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.runpath import is_local_path, is_project_path, parse_project_path
from ..errors import ConfigurationError, NotFoundError

if TYPE_CHECKING:
    from ..api import Api, Run


def build_filters(
    filters: dict[str, Any] | None, run_states: Sequence[str], run_ids: Sequence[str]
) -> dict[str, Any]:
    """Combine ``--filter``, ``--run-state`` and ``--run`` into one MongoDB-style filter."""
    parts: list[dict[str, Any]] = []
    if filters:
        if not isinstance(filters, dict):
            raise ConfigurationError(f"--filter must be a JSON object, got {filters!r}")
        parts.append(filters)
    if run_states:
        parts.append({"state": {"$in": list(run_states)}})
    if run_ids:
        parts.append({"name": {"$in": list(run_ids)}})
    if not parts:
        return {}
    return parts[0] if len(parts) == 1 else {"$and": parts}


@dataclass
class Listing:
    """One project listing: which runs it returned, and whether it was exhaustive."""

    entity: str
    project: str
    exhaustive: bool
    seen: set[str] = field(default_factory=set)
    complete: bool = False


@dataclass
class Damaged:
    """A local file that could not be read (reported, never silently dropped)."""

    path: str
    error: str


@dataclass
class Missing:
    """A run named by path that the server no longer has."""

    entity: str
    project: str
    run_id: str


def iter_runs(
    sources: Sequence[Any],
    api_factory: Any,
    *,
    filters: dict[str, Any] | None = None,
    run_states: Sequence[str] = (),
    run_ids: Sequence[str] = (),
    listings: list[Listing] | None = None,
    per_page: int = 100,
    skip_damaged: bool = False,
) -> Iterator[Run | Missing | Damaged]:
    """Yield the runs of every source, lazily. `listings` collects each project listing.

    A damaged local file is yielded as `Damaged` (the other runs of its folder still come);
    `skip_damaged` also skips damaged records inside otherwise readable files.
    """
    from ..api import Run
    from ..core.rundata import RunData

    flt = build_filters(filters, run_states, run_ids)
    for source in sources:
        if isinstance(source, Run):
            yield source
        elif isinstance(source, RunData):
            yield Run.from_run_data(source)
        elif isinstance(source, str | os.PathLike) and is_local_path(source):
            yield from _local(source, skip_damaged)
        elif isinstance(source, str) and is_project_path(source):
            api: Api = api_factory()
            entity, project = parse_project_path(source, default_entity=api.settings.entity or api.default_entity)
            listing = Listing(entity, project, exhaustive=not flt)
            if listings is not None:
                listings.append(listing)
            # lazy=False: planning and the runs table read every run's keys, config and summary
            for run in api.runs(f"{entity}/{project}", filters=flt, per_page=per_page, lazy=False):
                listing.seen.add(run.id)
                yield run
            listing.complete = True
        elif isinstance(source, str):
            api = api_factory()
            ref = api.ref(source)
            try:
                yield api.run(ref)
            except NotFoundError:
                yield Missing(ref.entity, ref.project, ref.run_id)
        else:
            raise ConfigurationError(
                f"export source must be entity/project, a run path or URL, a local .wandb path, a Run "
                f"or a RunData; got {type(source).__name__}"
            )


def _local(path: str | os.PathLike[str], skip_damaged: bool) -> Iterator[Run | Damaged]:
    from ..errors import LocalFileError
    from ..resolve import open_local

    damaged: list[Damaged] = []

    def report(file: Any, error: Exception) -> None:
        damaged.append(Damaged(os.fspath(file), str(error).splitlines()[0] if str(error) else type(error).__name__))

    try:
        runs = open_local(path, skip_damaged=skip_damaged, on_damaged=report)
    except LocalFileError as exc:
        raise ConfigurationError(str(exc)) from exc
    yield from damaged
    yield from runs
