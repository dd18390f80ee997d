"""Tell destinations apart by their form, and describe them without secrets.

==========================================  =================================================
``--to``                                    destination
==========================================  =================================================
a path ending in ``.duckdb`` or ``.db``     DuckDB database file (the embedded default)
``postgresql://...`` / ``postgres://...``   PostgreSQL (through ADBC, `adbc-driver-postgresql`)
``delta://PATH``, ``delta+s3://BUCKET/P``   a folder of Delta tables (`deltalake`), local or on S3
a folder holding ``history/_delta_log``     the same (an existing Delta destination)
``iceberg://PATH[?namespace=NS]``           Iceberg tables in a SQL catalog on SQLite
                                            (``PATH/catalog.db``, warehouse ``PATH``; `pyiceberg`)
``iceberg+s3://BUCKET/P?catalog=FILE``      the same with the warehouse on S3 and the SQLite
                                            catalog in the local file ``FILE``
``s3://...``, ``gs://...`` (bare)           error: a Parquet dataset needs a local folder (its
                                            lock and renames); use delta+s3:// or iceberg+s3://
any other ``scheme://...``                  error: other warehouses go through the dlt route
                                            (`connector.export.dlt`) or a Parquet dataset
a path ending in a file format's extension  error: ``.csv``, ``.parquet``, ``.json``... name
                                            files, and a Parquet dataset is a folder
any other path                              Parquet dataset directory (hive partitions)
==========================================  =================================================

>>> parse_destination("out/runs.duckdb").kind, parse_destination("out/ds").kind
('duckdb', 'parquet')
>>> parse_destination("postgresql://u:s3cret@db:5432/wh").display
'postgresql://u:***@db:5432/wh'
>>> d = parse_destination("delta:///tmp/wh"); d.kind, d.target
('delta', '/tmp/wh')
>>> parse_destination("delta+s3://bucket/wh").target, parse_destination("iceberg://wh").kind
('s3://bucket/wh', 'iceberg')
>>> parse_destination("iceberg+s3://lake/wh?catalog=/var/wh.db").target
's3://lake/wh?catalog=/var/wh.db'
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from ...errors import ConfigurationError, DestinationBusyError, DestinationError

FILE_FORMATS = (
    ".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".parquet", ".pq", ".txt", ".xlsx", ".xls",
    ".sqlite", ".sqlite3", ".arrow", ".feather", ".avro", ".orc", ".gz", ".zip",
)  # fmt: skip

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class Destination:
    """A parsed ``--to``. `target` may hold a password: print `display` instead."""

    kind: str
    target: str = field(repr=False)
    display: str = ""

    @property
    def password(self) -> str | None:
        if self.kind != "postgres":
            return None
        return urlsplit(self.target).password


def redact_url(url: str) -> str:
    """The URL with its password (and any ``password=`` query value) replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        name = user.split(":", 1)[0]
        netloc = f"{name}:***@{host}"
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub(text: str, *secrets: str | None) -> str:
    """`text` with every secret removed (for error messages from drivers)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def parse_destination(to: str | os.PathLike[str]) -> Destination:
    """Classify `to` (see the module docstring)."""
    text = os.fspath(to)
    if not text:
        raise ConfigurationError("--to needs a destination: a .duckdb file, a postgresql:// URL or a folder")
    match = _SCHEME.match(text)
    if match:
        scheme = match.group(1).lower()
        if scheme in ("postgresql", "postgres"):
            return Destination("postgres", text, redact_url(text))
        if scheme == "delta" or scheme.startswith("delta+"):
            return Destination("delta", _lake_target(text, scheme, "delta"), text)
        if scheme == "iceberg" or scheme.startswith("iceberg+"):
            return Destination("iceberg", _lake_target(text, scheme, "iceberg"), text)
        if scheme in ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"):
            raise ConfigurationError(object_store_parquet_message(scheme))
        raise ConfigurationError(
            f"unsupported destination scheme {scheme!r} in --to: use a .duckdb/.db file, a "
            "postgresql:// URL, delta://PATH, delta+s3://BUCKET/PATH, iceberg://PATH, "
            "iceberg+s3://BUCKET/PATH?catalog=FILE or a folder for a Parquet dataset; other "
            "warehouses load through the "
            "dlt route (connector.export.dlt) or from the Parquet dataset"
        )
    if text.endswith((".duckdb", ".db")):
        return Destination("duckdb", text, text)
    if (Path(text) / "history" / "_delta_log").is_dir() or (Path(text) / "history_long" / "_delta_log").is_dir():
        return Destination("delta", text, text)
    suffix = Path(text).suffix.lower()
    if suffix in FILE_FORMATS and not Path(text).is_dir():
        raise DestinationError(
            f"--to {text}: a {suffix} file is not a destination; use a .duckdb/.db file, a "
            "postgresql:// URL, or a folder path (without an extension) for a Parquet dataset"
        )
    return Destination("parquet", text, text)


def object_store_parquet_message(scheme: str) -> str:
    """Why a Parquet dataset is not written to an object store, and what to use instead.

    >>> print(object_store_parquet_message("s3"))  # doctest: +ELLIPSIS
    --to s3://...: a Parquet dataset is only written to a local folder...
    """
    store = "s3" if scheme in ("s3", "s3a") else scheme
    return (
        f"--to {scheme}://...: a Parquet dataset is only written to a local folder. Its guarantees rest "
        "on a lock file (one export at a time; without it two exports read-merge-rewrite the same "
        "chunk file and the state file, and one loses rows the state says are committed) and on "
        "atomic renames (a --full-refresh swaps whole partitions in); an object store has neither. "
        f"Use a table format whose commits are atomic there: delta+{store}://BUCKET/PATH (Delta), "
        + ("iceberg+s3://BUCKET/PATH?catalog=LOCAL_FILE.db (Iceberg, SQLite catalog kept locally), " if store == "s3" else "")
        + "or export to a local folder and copy the finished dataset up"
    )


def _lake_target(text: str, scheme: str, kind: str) -> str:
    """The path or object-store URI inside ``delta://...`` / ``delta+s3://...`` / ``iceberg://...``.

    >>> _lake_target("delta://rel/wh", "delta", "delta"), _lake_target("delta://s3://b/p", "delta", "delta")
    ('rel/wh', 's3://b/p')
    >>> _lake_target("iceberg:///abs/wh?namespace=ml", "iceberg", "iceberg")
    '/abs/wh?namespace=ml'
    """
    rest = text[len(scheme) + 3 :]
    if "+" in scheme:
        store = scheme.split("+", 1)[1]
        stores = ("s3", "file", "gs", "az", "abfss") if kind == "delta" else ("s3", "file")
        if store not in stores:
            raise ConfigurationError(f"--to {scheme}://: unknown object store {store!r} (use {kind}+s3://)")
        rest = rest if store == "file" else f"{store}://{rest}"
    if not rest or rest.startswith("?"):
        raise ConfigurationError(f"--to {kind}:// needs a path, e.g. {kind}://./warehouse or {kind}:///abs/path")
    return rest


def writable_place(path: Path) -> None:
    """Raise `DestinationError` unless `path` could be created: every existing ancestor is a folder
    and the nearest existing one is writable."""
    for ancestor in [path.parent, *path.parent.parents]:
        if ancestor.exists() and not ancestor.is_dir():
            raise DestinationError(f"cannot write {path}: {ancestor} is a file, not a folder")
    parent = path.parent
    while not parent.exists() and parent.parent != parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DestinationError(f"cannot write {path}: {parent} is not writable (permissions or a read-only mount)")


def check_folder(path: Path, is_file: str, *, writable: bool = True) -> bool:
    """Raise `DestinationError` unless `path` is a folder (or could be created) that this process
    can write into (`writable`); return whether it exists. `is_file` says why a file will not do.

    >>> import tempfile, pathlib
    >>> check_folder(pathlib.Path(tempfile.mkdtemp()) / "new", "a dataset is a folder")
    False
    """
    if path.exists() and not path.is_dir():
        raise DestinationError(f"{path} is a file: {is_file}")
    if not path.exists():
        writable_place(path)
        return False
    if writable and not os.access(path, os.W_OK | os.X_OK):
        raise DestinationError(f"cannot write into {path} (permissions or a read-only mount)")
    return True


class FolderLock:
    """The exclusive lock of a destination folder (``.wandb-export.lock``, ``fcntl.flock``): one
    export at a time. Taking it creates the folder; `release` removes the lock file and the folder
    again when this export created the folder and wrote nothing into it.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "new"
    >>> lock = FolderLock(d)
    >>> FolderLock(d)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    connector.errors.DestinationBusyError: another export is writing into ...
    >>> lock.release(remove_folder=True); d.exists()
    False
    """

    NAME = ".wandb-export.lock"

    def __init__(self, folder: Path, name: str | None = None) -> None:
        """`name`: the lock file's name (default `NAME`), e.g. ``catalog.db.lock`` beside a catalog."""
        import fcntl

        self.folder = folder
        self.name = name or self.NAME
        folder.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = open(folder / self.name, "a+")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise DestinationBusyError(
                f"another export is writing into {folder} (its {self.name} is locked); wait for it to finish"
            ) from None

    def release(self, *, remove_folder: bool = False) -> None:
        """Unlock; with `remove_folder`, also remove the lock file and the folder if it is empty."""
        if self._file is None:
            return
        self._file.close()
        self._file = None
        if remove_folder:
            (self.folder / self.name).unlink(missing_ok=True)
            try:
                self.folder.rmdir()  # only when nothing else is in it
            except OSError:
                pass
