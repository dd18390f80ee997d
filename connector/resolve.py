"""Turn what users pass for a run into a `Run`: a path, a URL, a `Run`, or a local `.wandb` source.

Every function that takes a run (`connector.polars`, `connector.duckdb`, the exporter) calls
`resolve_run`; ``api=None`` means `connector.api.default_api` (an `Api` configured from the environment).

>>> from connector.core.rundata import MemoryRun, RunMeta
>>> resolve_run(MemoryRun(RunMeta("e", "p", "r1"))).id
'r1'
"""

from __future__ import annotations

import os
from typing import Any

from .api import Api, Run, default_api
from .core.rundata import RunData
from .core.runpath import RunRef, is_local_path
from .errors import ConfigurationError
from .local import OnDamaged, load_run, load_runs

__all__ = ["is_local_path", "open_local", "open_local_run", "resolve_run"]


def open_local(
    path: str | os.PathLike[str],
    *,
    entity: str | None = None,
    project: str | None = None,
    skip_damaged: bool = False,
    on_damaged: OnDamaged | None = None,
    recursive: bool = False,
) -> list[Run]:
    """Every run found under a local path: a `wandb/` folder, a run directory or a `.wandb` file.

    Runs read from disk need no server and no API key; they offer the same `scan_history`,
    `history` and `scan` as runs read over the API. Damaged files follow `connector.local.load_runs`:
    the first one raises `LocalFileError` naming it, unless ``on_damaged(file, error)`` is given, in
    which case each is reported there and left out while every readable run is returned. A path that
    does not exist raises `LocalFileError` (``no such file or folder: <path>``). A folder that is not
    ``wandb/``-shaped (no run directory within 3 levels), the filesystem root and the home folder are
    refused unless ``recursive=True`` (see `connector.local.discover`).

    >>> open_local("wandb/nowhere")
    Traceback (most recent call last):
    ...
    connector.local.discover.NoSuchPathError: no such file or folder: wandb/nowhere
    """
    runs = load_runs(
        path,
        entity=entity,
        project=project,
        skip_damaged=skip_damaged,
        on_damaged=on_damaged,
        recursive=recursive,
    )
    return [Run.from_run_data(run) for run in runs]


def open_local_run(path: str | os.PathLike[str], **options: Any) -> Run:
    """The one run stored at a local path (a `.wandb` file or a run directory).

    `options` are those of `connector.local.load_run` (``entity``, ``project``, ``skip_damaged``,
    ``on_damaged``, ``recursive``); a path holding no readable run or several runs raises
    `LocalFileError`.

    >>> open_local_run("wandb/nowhere/run-abc.wandb")
    Traceback (most recent call last):
    ...
    connector.local.discover.NoSuchPathError: no such file or folder: wandb/nowhere/run-abc.wandb
    """
    return Run.from_run_data(load_run(path, **options))


def resolve_run(run: Any, api: Api | None = None) -> Run:
    """A `Run` from a run path, a W&B URL, a `Run`, a `RunData`, or a local file/run directory."""
    if isinstance(run, Run):
        return run
    if isinstance(run, RunData):
        return Run.from_run_data(run)
    if is_local_path(run):
        return open_local_run(run)
    if isinstance(run, str | RunRef):
        return default_api(api).run(run)
    raise ConfigurationError(
        f"expected a run path, a W&B run URL, a Run or a local .wandb path, got {type(run).__name__}"
    )
