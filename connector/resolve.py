"""Turn what users pass for a run into a `Run`: a path, a URL, a `Run`, or a local `.wandb` source.

Every function that takes a run (`connector.polars`, `connector.duckdb`, the exporter) calls
`resolve_run`; ``api=None`` means ``Api()`` configured from the environment.

>>> from connector.rundata import MemoryRun, RunMeta
>>> resolve_run(MemoryRun(RunMeta("e", "p", "r1"))).id
'r1'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .api import Api, Run


def is_local_path(path: Any) -> bool:
    """True for an existing file or folder, or a name ending in ``.wandb`` (never for URLs)."""
    if not isinstance(path, str | os.PathLike):
        return False
    text = os.fspath(path)
    if "://" in text or not text.strip():
        return False
    return text.endswith(".wandb") or Path(text).exists()


def open_local(
    path: str | os.PathLike[str],
    *,
    entity: str | None = None,
    project: str | None = None,
    skip_damaged: bool = False,
) -> list[Run]:
    """Every run found under a local path: a `wandb/` folder, a run directory or a `.wandb` file.

    Runs read from disk need no server and no API key; they offer the same `scan_history`,
    `history` and `scan` as runs read over the API.
    """
    from .api import Run
    from .local import load_runs

    runs = load_runs(path, entity=entity, project=project, skip_damaged=skip_damaged)
    return [Run.from_run_data(run) for run in runs]


def open_local_run(path: str | os.PathLike[str], **options: Any) -> Run:
    """The one run stored at a local path (a `.wandb` file or a run directory)."""
    runs = open_local(path, **options)
    if len(runs) != 1:
        ids = ", ".join(r.id for r in runs)
        raise ConfigurationError(
            f"{os.fspath(path)!s} holds {len(runs)} runs ({ids}); name one run directory or file"
        )
    return runs[0]


def resolve_run(run: Any, api: Api | None = None) -> Run:
    """A `Run` from a run path, a W&B URL, a `Run`, a `RunData`, or a local file/run directory."""
    from .api import Api, Run
    from .rundata import RunData
    from .runpath import RunRef

    if isinstance(run, Run):
        return run
    if isinstance(run, RunData):
        return Run.from_run_data(run)
    if is_local_path(run):
        return open_local_run(run)
    if isinstance(run, str | RunRef):
        return (api or Api()).run(run)
    raise ConfigurationError(
        f"expected a run path, a W&B run URL, a Run or a local .wandb path, got {type(run).__name__}"
    )
