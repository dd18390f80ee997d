"""Find `.wandb` files: a `wandb/` folder, a folder of those, one run directory or one file.

A local source never walks above or outside what it is given:

* A folder is searched only as deep as a ``wandb/`` folder needs: `.wandb` files directly in it
  (it is a run directory), and `.wandb` files of run directories (``run-*`` / ``offline-run-*``,
  or any folder holding a ``run-*.wandb`` file) at most `RUN_DIR_DEPTH` (3) levels below it
  (``project/wandb/offline-run-*/``). Run directories are not searched inside. A folder with no
  such file is refused: ``<path>: is not a wandb/ folder or run directory ...; pass the wandb/
  folder itself``. ``recursive=True`` searches every folder below instead (any `.wandb` name).
* The filesystem root, the home folder and any folder holding the home folder are refused
  without ``recursive=True``, whatever they hold.
* Symlinked folders are never followed (so ``latest-run`` never duplicates a run), a file
  reached twice through symlinks is listed once, and a symlinked file whose target lies outside
  the folder searched is left out.

A path that does not exist raises `NoSuchPathError` (a `LocalFileError`, and a
`FileNotFoundError` for callers that catch that), whose message is ``no such file or folder:
<path>``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import LocalFileError

SUFFIX = ".wandb"
#: how many folder levels below the given folder run directories are looked for
RUN_DIR_DEPTH = 3


class NoSuchPathError(LocalFileError, FileNotFoundError):
    """The local path given for runs does not exist; ``path`` holds it.

    >>> error = NoSuchPathError(Path("wandb/nowhere"))
    >>> str(error), error.path, isinstance(error, LocalFileError)
    ('no such file or folder: wandb/nowhere', 'wandb/nowhere', True)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(f"no such file or folder: {os.fspath(path)}")
        self.path = os.fspath(path)


def find_run_files(path: str | os.PathLike[str], *, recursive: bool = False) -> list[Path]:
    """List the `.wandb` files at `path`, sorted by path (the walking rules are in the module doc).

    `path` may be one `.wandb` file (returned as is, whatever its name), a run directory
    (``offline-run-YYYYMMDD_HHMMSS-<id>/``), a ``wandb/`` folder, or a folder holding those at
    most `RUN_DIR_DEPTH` levels down; ``recursive=True`` searches every folder below `path`.

    >>> find_run_files("wandb/")  # doctest: +SKIP
    [PosixPath('wandb/offline-run-20260101_120000-abc123/run-abc123.wandb')]
    >>> find_run_files("/")
    Traceback (most recent call last):
    ...
    connector.errors.LocalFileError: /: is the filesystem root; pass the wandb/ folder itself (or recursive=True to search every folder below it)

    Raises `NoSuchPathError` (a `LocalFileError`) when `path` does not exist and `LocalFileError`
    when it holds no `.wandb` file where one is looked for.
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
    real_root = root.resolve()
    if not recursive:
        refused = _refused(real_root)
        if refused:
            raise LocalFileError(
                f"{root}: {refused}; pass the wandb/ folder itself (or recursive=True to search "
                "every folder below it)"
            )
    candidates = _walk_all(root) if recursive else _walk_runs(root)
    found: dict[Path, Path] = {}
    for file in candidates:
        try:
            if not file.is_file():
                continue
            real = file.resolve()
        except OSError:
            continue
        if file.is_symlink() and not real.is_relative_to(real_root):
            continue  # a link out of the folder searched
        if real not in found or file.is_symlink() is False and found[real].is_symlink():
            found[real] = file
    if not found:
        if recursive:
            raise LocalFileError(
                f"{root}: no .wandb files found (expected a wandb/ folder, a run directory or a .wandb file)"
            )
        raise LocalFileError(
            f"{root}: is not a wandb/ folder or run directory (no .wandb file in it, and no "
            f"run-*/offline-run-* run directory within {RUN_DIR_DEPTH} levels below it); pass the "
            "wandb/ folder itself (or recursive=True to search every folder below it)"
        )
    return sorted(found.values())


def is_run_dir_name(name: str) -> bool:
    """True for an SDK run directory name (``run-*``, ``offline-run-*``).

    >>> is_run_dir_name("offline-run-20260101_120000-abc123"), is_run_dir_name("files")
    (True, False)
    """
    return name.startswith(("run-", "offline-run-"))


def _refused(real_root: Path) -> str:
    """Why `real_root` is never searched without ``recursive=True`` ("" when it may be)."""
    if real_root == Path(real_root.anchor):
        return "is the filesystem root"
    try:
        home = Path.home().resolve()
    except (RuntimeError, OSError):
        return ""
    if real_root == home:
        return "is the home folder"
    if home.is_relative_to(real_root):
        return "holds the home folder"
    return ""


def _walk_runs(root: Path) -> list[Path]:
    """`.wandb` files of `root` itself and of run directories at most `RUN_DIR_DEPTH` below it."""
    out: list[Path] = []
    level = [root]
    for depth in range(RUN_DIR_DEPTH + 1):
        below: list[Path] = []
        for folder in level:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            files = [Path(e.path) for e in entries if e.name.endswith(SUFFIX) and not _is_dir(e)]
            is_run = depth == 0 or is_run_dir_name(folder.name) or any(
                f.name.startswith("run-") for f in files
            )
            if is_run:
                out += files
                if depth > 0:
                    continue  # nothing of a run directory's own below it
            if depth < RUN_DIR_DEPTH:
                below += [Path(e.path) for e in entries if _is_dir(e) and not e.is_symlink()]
        level = below
    return out


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _walk_all(root: Path) -> list[Path]:
    """Every `.wandb` file below `root` (``recursive=True``), symlinked folders not followed."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        out += [Path(dirpath, name) for name in sorted(filenames) if name.endswith(SUFFIX)]
    return out
