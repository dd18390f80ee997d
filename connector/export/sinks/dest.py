"""Tell destinations apart by their form, and describe them without secrets.

==========================================  =================================================
``--to``                                    destination
==========================================  =================================================
a path ending in ``.duckdb`` or ``.db``     DuckDB database file (the embedded default)
``postgresql://...`` / ``postgres://...``   PostgreSQL (through ADBC, `adbc-driver-postgresql`)
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
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ...errors import ConfigurationError, DestinationError

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
        raise ConfigurationError(
            f"unsupported destination scheme {scheme!r} in --to: use a .duckdb/.db file, a "
            "postgresql:// URL or a folder for a Parquet dataset; other warehouses load through the "
            "dlt route (connector.export.dlt) or from the Parquet dataset"
        )
    if text.endswith((".duckdb", ".db")):
        return Destination("duckdb", text, text)
    suffix = Path(text).suffix.lower()
    if suffix in FILE_FORMATS and not Path(text).is_dir():
        raise DestinationError(
            f"--to {text}: a {suffix} file is not a destination; use a .duckdb/.db file, a "
            "postgresql:// URL, or a folder path (without an extension) for a Parquet dataset"
        )
    return Destination("parquet", text, text)


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
