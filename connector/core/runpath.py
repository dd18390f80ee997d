"""Run references: parse the run paths, URLs and objects that every entry point accepts.

>>> RunRef.parse("acme/vision/abc123")
RunRef(entity='acme', project='vision', run_id='abc123')
>>> RunRef.parse("https://wandb.ai/acme/vision/runs/abc123?nw=1")
RunRef(entity='acme', project='vision', run_id='abc123')
>>> RunRef.parse("vision/abc123", default_entity="acme").path
'acme/vision/abc123'
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import ConfigurationError

_NAME = re.compile(r"^[^/\s:]+$")


@dataclass(frozen=True, slots=True)
class RunRef:
    """The identity of a run: `entity`, `project` and the short `run_id` (GraphQL `name`)."""

    entity: str
    project: str
    run_id: str

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}/{self.run_id}"

    @classmethod
    def parse(
        cls,
        path: str,
        *,
        default_entity: str | Callable[[], str | None] | None = None,
        default_project: str | None = None,
    ) -> RunRef:
        """Parse `e/p/id`, `e/p/runs/id`, `e/p:id`, `p/id`, `id` or a W&B run URL.

        `default_entity` may be a callable, asked only when the path names no entity.
        """
        if not isinstance(path, str) or not path.strip():
            raise ConfigurationError(f"run path must be a non-empty string, got {path!r}")
        text = path.strip()
        if "://" in text:
            url = urlparse(text)
            text = url.path.strip("/")
        text = text.strip("/").replace(":", "/")
        parts = [p for p in text.split("/") if p]
        if len(parts) == 4 and parts[2] == "runs":
            parts = [parts[0], parts[1], parts[3]]
        if callable(default_entity):
            default_entity = default_entity() if len(parts) < 3 and "://" not in path else None
        if len(parts) == 3:
            entity, project, run_id = parts
        elif len(parts) == 2:
            if not default_entity:
                raise ConfigurationError(
                    f"run path {path!r} has no entity: use entity/project/run_id or set WANDB_ENTITY"
                )
            entity, (project, run_id) = default_entity, parts
        elif len(parts) == 1:
            if not (default_entity and default_project):
                raise ConfigurationError(
                    f"run path {path!r} names only a run id: use entity/project/run_id "
                    "or set WANDB_ENTITY and WANDB_PROJECT"
                )
            entity, project, run_id = default_entity, default_project, parts[0]
        else:
            raise ConfigurationError(
                f"run path {path!r} is not of the form entity/project/run_id "
                "(or entity/project/runs/run_id, or a W&B run URL)"
            )
        for label, value in (("entity", entity), ("project", project), ("run id", run_id)):
            if not _NAME.match(value):
                raise ConfigurationError(f"run path {path!r} has an invalid {label} {value!r}")
        return cls(entity, project, run_id)


def parse_project_path(path: str, *, default_entity: str | None = None) -> tuple[str, str]:
    """Parse `entity/project` (or `project` with a default entity) into a pair.

    >>> parse_project_path("acme/vision")
    ('acme', 'vision')
    """
    if not isinstance(path, str) or not path.strip():
        raise ConfigurationError(f"project path must be a non-empty string, got {path!r}")
    text = path.strip()
    if "://" in text:
        text = urlparse(text).path
    parts = [p for p in text.strip("/").split("/") if p]
    if len(parts) == 2:
        return parts[0], parts[1]
    if len(parts) == 1 and default_entity:
        return default_entity, parts[0]
    raise ConfigurationError(f"project path {path!r} is not of the form entity/project")


def is_project_path(text: str) -> bool:
    """True when `text` names a project (``entity/project``, or ``project`` with a default entity)
    rather than a run: at most two parts, no ``:`` and no URL.

    >>> is_project_path("acme/vision"), is_project_path("vision"), is_project_path("acme/vision/abc123")
    (True, True, False)
    >>> is_project_path("acme/vision:abc123"), is_project_path("https://wandb.ai/acme/vision")
    (False, False)
    """
    if "://" in text:
        return False
    parts = [p for p in text.strip().strip("/").split("/") if p]
    return len(parts) <= 2 and ":" not in text


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
