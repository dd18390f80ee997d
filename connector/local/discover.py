"""Find `.wandb` files: a `wandb/` folder, any folder of run directories, one run directory or file.

Folders are searched recursively without following symlinked directories (so ``latest-run``
never duplicates a run), and a file reached twice through symlinks is listed once. A path that
does not exist raises `NoSuchPathError` (a `LocalFileError`, and a `FileNotFoundError` for callers
that catch that), whose message is ``no such file or folder: <path>``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import LocalFileError

SUFFIX = ".wandb"


class NoSuchPathError(LocalFileError, FileNotFoundError):
    """The local path given for runs does not exist; ``path`` holds it.

    >>> error = NoSuchPathError(Path("wandb/nowhere"))
    >>> str(error), error.path, isinstance(error, LocalFileError)
    ('no such file or folder: wandb/nowhere', 'wandb/nowhere', True)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(f"no such file or folder: {os.fspath(path)}")
        self.path = os.fspath(path)


def find_run_files(path: str | os.PathLike[str]) -> list[Path]:
    """List the `.wandb` files at `path`, sorted by path.

    `path` may be one `.wandb` file (returned as is, whatever its name), a run directory
    (``offline-run-YYYYMMDD_HHMMSS-<id>/``), a ``wandb/`` folder, or any folder holding those.

    >>> find_run_files("wandb/")  # doctest: +SKIP
    [PosixPath('wandb/offline-run-20260101_120000-abc123/run-abc123.wandb')]

    Raises `NoSuchPathError` (a `LocalFileError`) when `path` does not exist and `LocalFileError`
    when it holds no `.wandb` file.
    """
    root = Path(path)
    if root.parts and root.parts[0].startswith("~"):
        try:
            root = root.expanduser()
        except RuntimeError:  # an unknown user: the path is looked up as written
            pass
    try:
        exists = root.exists()
    except OSError as exc:  # e.g. a name too long, or a folder on the way that cannot be searched
        raise LocalFileError(f"{root}: cannot read ({exc.strerror or exc})") from exc
    if not exists:
        raise NoSuchPathError(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise LocalFileError(f"{root}: not a .wandb file or a folder")
    found: dict[Path, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith(SUFFIX):
                continue
            file = Path(dirpath, name)
            if not file.is_file():
                continue
            real = file.resolve()
            if real not in found or file.is_symlink() is False and found[real].is_symlink():
                found[real] = file
    if not found:
        raise LocalFileError(
            f"{root}: no .wandb files found (expected a wandb/ folder, a run directory or a .wandb file)"
        )
    return sorted(found.values())
