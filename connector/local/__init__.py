"""Read offline W&B runs from their `.wandb` transaction logs, without the `wandb` package.

The reader has its own framing (`framing`), protobuf wire decoder (`wire`), message decoders
(`records`) and rebuild rules (`rebuild`, which documents how rows, config, summary, events and
the run state are derived). Runs come back as `connector.core.rundata.MemoryRun` objects (the
`LocalRun` subclass), the same `RunData` every other source produces.

>>> from connector.local import load_runs, read_run  # doctest: +SKIP
>>> runs = load_runs("wandb/", project="my-project")  # doctest: +SKIP
>>> run = runs[0]; run.meta.run_id, run.steps()[:3], run.row(0)  # doctest: +SKIP
('dod3bm14', [0, 1, 2], {'_step': 0, 'loss': 0.5, ...})

Rules kept stable for the callers (emulator, scans, export):

* `load_runs` returns one run per run id: the files of a resumed offline run (same entity,
  project and run id) are merged, oldest start time first (see `rebuild.build_run`).
* Default identity for offline runs that carry none: entity ``"local"``, project ``"offline"``;
  explicit ``entity=`` / ``project=`` arguments override what the files say.
* State: ``finished`` / ``failed`` from the exit record; without one, ``running`` when the file
  changed less than `running_grace` seconds ago (default 300), else ``crashed``.
* Damaged files (`load_runs`): without `on_damaged`, the first file that cannot be read raises
  `LocalFileError` naming it. With ``on_damaged=callback``, each such file is passed to
  ``callback(file, error)`` and left out, and every other run is still returned. A file "cannot be
  read" when decoding it raises: zero length, not a `.wandb` file (bad header), unreadable, or —
  unless ``skip_damaged=True`` — a damaged record inside it. With ``skip_damaged=True`` damaged
  records are skipped with a `DamagedRecordWarning`, and a file that holds no record at all (zero
  length, or only the start of the 7-byte header: the SDK stopped before writing anything) holds
  no run: it is reported to `on_damaged` if given, else skipped with a `DamagedRecordWarning`.
  A truncated file (cut inside a record) is not damaged: it reads as the run up to its last
  complete record, without an exit record (state ``running`` or ``crashed``).
* A path that does not exist raises `NoSuchPathError` (a `LocalFileError`):
  ``no such file or folder: <path>``.
* Folders (`find_run_files`): a folder is read as a ``wandb/`` folder, a run directory or a
  folder holding those at most 3 levels down; any other folder is refused (``<path>: is not a
  wandb/ folder or run directory ...; pass the wandb/ folder itself``), and so are the
  filesystem root and the home folder, unless ``recursive=True`` is passed (then every folder
  below is searched). Symlinked folders are not followed.
* Steps: a history row's ``_step`` is an integer in ``[0, 2**63 - 1]``. A string, float, bool,
  null or out-of-range ``_step``, or a missing one in a file whose other history records have
  one, makes the record damaged (`LocalFileError` naming the file, the record's offset and the
  value; skipped with a `DamagedRecordWarning` with ``skip_damaged=True``), never step 0. Reading
  and scanning cost time and memory by rows, never by the numeric span of the steps.

Limits (`connector.local.limits`; a record beyond one is a damaged record, as above, and never a
`RecursionError`, `MemoryError` or allocation failure further down):

=========================  ==========  ===========================================================
``MAX_RECORD_BYTES``       64 MiB      one record of the framing (FIRST..LAST chunks)
``MAX_DEPTH``              200         nesting of a history, summary or config value: its
                                       ``nested_key`` parts plus its JSON ``{``/``[`` levels
``MAX_KEYS``               100,000     keys of one history row (item paths plus the keys of
                                       objects in its values), and distinct history keys of a file
``MAX_KEY_BYTES``          16 KiB      one ``key`` or ``nested_key`` part
``MAX_STEP``               2**63 - 1   the largest ``_step`` (Arrow ``int64``)
=========================  ==========  ===========================================================
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import LocalFileError
from .discover import NoSuchPathError, find_run_files
from .framing import CHUNK_HEADER, HEADER, DamagedRecordWarning
from .limits import MAX_DEPTH, MAX_KEY_BYTES, MAX_KEYS, MAX_RECORD_BYTES, MAX_STEP
from .rebuild import (
    DEFAULT_ENTITY,
    DEFAULT_PROJECT,
    RUNNING_GRACE,
    FileContent,
    LocalRun,
    build_run,
    decode_file,
    start_time_of,
)

__all__ = [
    "DEFAULT_ENTITY",
    "DEFAULT_PROJECT",
    "RUNNING_GRACE",
    "DamagedRecordWarning",
    "MAX_DEPTH",
    "MAX_KEYS",
    "MAX_KEY_BYTES",
    "MAX_RECORD_BYTES",
    "MAX_STEP",
    "LocalRun",
    "NoSuchPathError",
    "OnDamaged",
    "find_run_files",
    "holds_no_record",
    "load_runs",
    "load_run",
    "read_run",
]

#: ``on_damaged(file, error)``: told about each file `load_runs` leaves out because it cannot be read.
OnDamaged = Callable[[Path, LocalFileError], None]


def read_run(
    file: str | os.PathLike[str],
    *,
    entity: str | None = None,
    project: str | None = None,
    skip_damaged: bool = False,
    running_grace: float = RUNNING_GRACE,
) -> LocalRun:
    """Read one `.wandb` file as a run.

    Raises `LocalFileError` naming the file when it cannot be read, also with ``skip_damaged=True``
    for a zero-length file (it holds no run; `load_runs` skips such files instead).

    >>> run = read_run("wandb/offline-run-20260101_120000-abc123/run-abc123.wandb")  # doctest: +SKIP
    >>> run.meta.state, len(run.steps())  # doctest: +SKIP
    ('finished', 1000)
    """
    content = decode_file(file, skip_damaged=skip_damaged)
    return build_run([content], entity=entity, project=project, running_grace=running_grace)


def load_runs(
    path: str | os.PathLike[str],
    *,
    entity: str | None = None,
    project: str | None = None,
    skip_damaged: bool = False,
    running_grace: float = RUNNING_GRACE,
    on_damaged: OnDamaged | None = None,
    recursive: bool = False,
) -> list[LocalRun]:
    """Read every run under `path` (see `find_run_files`), one `LocalRun` per run.

    `path` is a `.wandb` file, a run directory or a ``wandb/`` folder (or a folder holding those
    at most 3 levels down); ``recursive=True`` searches every folder below `path` instead.

    Files holding the same (entity, project, run id) are one resumed run and are merged:
    rows by ``_step`` (the file that started later wins a step both hold), config and summary
    key by key (later wins), state from the later file. Runs are sorted by creation time.

    Damaged files (rules in the module doc): without `on_damaged` the first file that cannot be
    read raises `LocalFileError` naming it; with it, the file is reported as
    ``on_damaged(file, error)`` and left out, and the other runs are still read. With
    ``skip_damaged=True`` a zero-length file (no run in it) is skipped, never an error.

    >>> [r.meta.run_id for r in load_runs("wandb/")]  # doctest: +SKIP
    ['abc123', 'def456']
    >>> damaged = []
    >>> runs = load_runs("wandb/", on_damaged=lambda file, error: damaged.append(file))  # doctest: +SKIP
    >>> damaged  # doctest: +SKIP
    [PosixPath('wandb/offline-run-20260101_120000-bad000/run-bad000.wandb')]
    """
    files = find_run_files(path, recursive=recursive)
    groups: dict[tuple[str, str, str], list[FileContent]] = {}
    for file in files:
        try:
            content = decode_file(file, skip_damaged=skip_damaged)
        except LocalFileError as error:
            if on_damaged is not None:
                on_damaged(file, error)
            elif skip_damaged and holds_no_record(file):
                warnings.warn(DamagedRecordWarning(f"{error}; skipped (no run in it)"), stacklevel=2)
            else:
                raise
            continue
        run = content.run
        key = (
            entity or (run.entity if run else "") or DEFAULT_ENTITY,
            project or (run.project if run else "") or DEFAULT_PROJECT,
            (run.run_id if run and run.run_id else _id_from_name(file)),
        )
        groups.setdefault(key, []).append(content)
    runs = [
        build_run(
            sorted(contents, key=start_time_of),
            entity=entity,
            project=project,
            running_grace=running_grace,
        )
        for contents in groups.values()
    ]
    runs.sort(key=lambda r: (r.meta.created_at, r.meta.run_id))
    return runs


def holds_no_record(file: str | os.PathLike[str]) -> bool:
    """True when `file` is empty or only the start of a `.wandb` header (a writer that stopped early).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     empty = Path(folder, "run-x.wandb"); _ = empty.write_bytes(b"")
    ...     other = Path(folder, "run-y.wandb"); _ = other.write_bytes(b"garbage")
    ...     holds_no_record(empty), holds_no_record(other)
    (True, False)
    """
    try:
        with open(file, "rb") as f:
            head = f.read(CHUNK_HEADER)
    except OSError:
        return False
    return len(head) < CHUNK_HEADER and HEADER.startswith(head)


def load_run(
    path: str | os.PathLike[str],
    *,
    entity: str | None = None,
    project: str | None = None,
    skip_damaged: bool = False,
    running_grace: float = RUNNING_GRACE,
    on_damaged: OnDamaged | None = None,
    recursive: bool = False,
) -> LocalRun:
    """Open the one run at `path` (a `.wandb` file or a run directory; resumed files merged).

    Raises `LocalFileError` when `path` holds more than one run (use `load_runs` for folders), or
    none (every file left out as damaged, see `load_runs`).

    >>> load_run("wandb/latest-run").meta.run_id  # doctest: +SKIP
    'abc123'
    """
    runs = load_runs(
        path,
        entity=entity,
        project=project,
        skip_damaged=skip_damaged,
        running_grace=running_grace,
        on_damaged=on_damaged,
        recursive=recursive,
    )
    if len(runs) != 1:
        ids: Sequence[str] = [r.meta.run_id for r in runs]
        raise LocalFileError(
            f"{Path(path)}: holds {len(runs)} runs ({', '.join(ids)}); name one run directory or file"
        )
    return runs[0]


def _id_from_name(file: Path) -> str:
    stem = file.stem
    return stem[4:] if stem.startswith("run-") else stem
