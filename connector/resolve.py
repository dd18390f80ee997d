"""Turn what users pass for a run into a `Run`: a path, a URL, a `Run`, or a local `.wandb` source.

Every function that takes a run (`connector.polars`, `connector.duckdb`, the exporter) calls
`resolve_run`; ``api=None`` means ``Api()`` configured from the environment.

>>> from connector.core.rundata import MemoryRun, RunMeta
>>> resolve_run(MemoryRun(RunMeta("e", "p", "r1"))).id
'r1'
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .api import Api, Run
    from .local import OnDamaged


_RUN_DIR = re.compile(r"^(offline-)?run-\d{8}_\d{6}-[^/\\]+$")


def is_local_path(path: Any) -> bool:
    """True when `path` names something on disk rather than a W&B run (never for URLs).

    True for a `pathlib.Path` (any `os.PathLike`), an existing file or folder, a name ending in
    ``.wandb``, a name starting with ``./``, ``../``, ``~`` or a drive or holding a backslash, an
    SDK run directory name (``offline-run-YYYYMMDD_HHMMSS-<id>``) anywhere in it, and an absolute
    path whose top folder exists (``/tmp/...``, but not ``/acme/vision/abc123``). Such a path that does not exist then fails as
    ``no such file or folder: <path>`` instead of being read as ``entity/project/run_id``.

    >>> is_local_path("acme/vision/abc123"), is_local_path("https://wandb.ai/a/b/runs/c")
    (False, False)
    >>> is_local_path("./wandb"), is_local_path("run-abc.wandb"), is_local_path(Path("nowhere"))
    (True, True, True)
    """
    if not isinstance(path, str | os.PathLike):
        return False
    text = os.fspath(path)
    if not isinstance(text, str) or "://" in text or not text.strip():
        return False
    if not isinstance(path, str):
        return True  # a Path object is never a run path
    if text.endswith(".wandb") or text in (".", "..") or text.startswith(("./", "../", "~", ".\\", "..\\")):
        return True
    if "\\" in text or re.match(r"^[A-Za-z]:[\\/]", text):
        return True
    if any(_RUN_DIR.match(part) for part in text.split("/")):
        return True
    try:
        local = Path(text)
        if local.exists():
            return True
        # "/tmp/x/wandb" is a path; "/acme/vision/abc123" a run path with a leading slash
        return local.is_absolute() and len(local.parts) > 1 and Path(*local.parts[:2]).is_dir()
    except OSError:
        return False


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
    from .api import Run
    from .local import load_runs

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

    `options` are those of `open_local` (``entity``, ``project``, ``skip_damaged``, ``on_damaged``,
    ``recursive``);
    a path holding no readable run or several runs raises `ConfigurationError`.

    >>> open_local_run(Path("wandb/nowhere/run-abc.wandb"))
    Traceback (most recent call last):
    ...
    connector.local.discover.NoSuchPathError: no such file or folder: wandb/nowhere/run-abc.wandb
    """
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
    from .core.rundata import RunData
    from .core.runpath import RunRef

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
