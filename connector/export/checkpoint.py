"""Checkpoints: one watermark per (run, stream, key set), committed with the data it covers.

A watermark is the **last step committed** for ``(entity, project, run_id, stream, key_set)``:
every step ``s`` with ``min_step <= s <= watermark`` is in the destination, and the next export of
that run starts at ``watermark + 1`` (inclusive), exactly like ``--min-step``. ``stream`` is
``"history"`` (the step-indexed history, wide layout), ``"history_long"`` (the same history in the
long layout: another table, so its own watermark) or ``"events"`` (system metrics), whose watermark
is the last ``_timestamp`` committed instead of a step (see `connector.export.runner` for what that stream
can and cannot guarantee). ``key_set`` is ``"*"`` for all keys, else a stable hash of the sorted
``--keys`` (`key_set_id`), so exporting other columns later does not reuse the wrong watermark.

A state covers the contiguous step range ``[min_step, watermark]``: an export asked for a lower
``--min-step`` later first fills ``[new min_step, min_step)``, chunk by chunk from the top down, so
the covered range stays contiguous after every commit.

Besides the watermark a state records what the run looked like when it was committed
(``last_step``, ``line_count``, ``run_state``): a later export that sees the last step or the history
line count go **down** knows the run was rewound (or forked / resumed from an earlier step) and
re-exports it. ``deleted_at`` marks runs that disappeared upstream (their data is kept).

Where the state lives: in the destination (DuckDB / PostgreSQL table ``_wandb_export_state``,
written in the same transaction as the rows), or in a JSON file (`JsonStateStore`, the Parquet
dataset's ``_wandb_export_state.json``, or ``--checkpoint PATH``) replaced atomically
(temp file + ``fsync`` + ``os.replace``) only after the data files it covers are in place.

The state never holds a secret: no API key, no URL, no password.

>>> key = StateKey("e", "p", "r1", "history", key_set_id(None))
>>> s = StreamState(key, watermark=99, last_step=99, line_count=100, run_state="finished")
>>> StreamState.from_json(s.to_json()) == s
True
>>> key_set_id(["loss", "acc"]) == key_set_id(["acc", "loss"]), key_set_id(None)
(True, '*')
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

HISTORY, HISTORY_LONG, EVENTS = "history", "history_long", "events"
STEP_STREAMS = (HISTORY, HISTORY_LONG)
ALL_KEYS = "*"
CRASH_ENV = "WANDB_HISTORY_CRASH_AT"


def key_set_id(keys: Sequence[str] | None) -> str:
    """``"*"`` for all keys, else ``"k"`` + 12 hex digits of the sorted, de-duplicated key list."""
    if keys is None:
        return ALL_KEYS
    text = json.dumps(sorted(set(keys)), separators=(",", ":"))
    return "k" + hashlib.sha1(text.encode()).hexdigest()[:12]


@dataclass(frozen=True, order=True)
class StateKey:
    """What one watermark belongs to."""

    entity: str
    project: str
    run_id: str
    stream: str = HISTORY
    key_set: str = ALL_KEYS

    @property
    def run_path(self) -> str:
        return f"{self.entity}/{self.project}/{self.run_id}"


@dataclass(frozen=True)
class StreamState:
    """The committed state of one (run, stream, key set)."""

    key: StateKey
    watermark: float | int | None = None  # last committed step (history) or _timestamp (events)
    last_step: int | None = None  # the run's last step when this was committed
    line_count: int | None = None  # the run's history line count when this was committed
    run_state: str | None = None
    rewinds: int = 0
    deleted_at: str | None = None
    keys: tuple[str, ...] | None = None
    layout: str = "wide"
    chunk_steps: int | None = None
    min_step: int | None = None  # first step of the covered range (None: 0, states before it existed)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def evolve(self, **changes: Any) -> StreamState:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["key"] = asdict(self.key)
        out["keys"] = list(self.keys) if self.keys is not None else None
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> StreamState:
        data = dict(obj)
        data["key"] = StateKey(**data["key"])
        if data.get("keys") is not None:
            data["keys"] = tuple(data["keys"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically: a temp file in the same folder, fsync, `os.replace`.

    The temp name starts with ``.`` and ends with ``.tmp``, so no ``*.parquet`` glob matches it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class JsonStateStore:
    """Watermarks in one JSON file, replaced atomically on every commit (thread-safe).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "state.json"
    >>> store = JsonStateStore(p)
    >>> store.commit([StreamState(StateKey("e", "p", "r"), watermark=9)])
    >>> JsonStateStore(p).load()[StateKey("e", "p", "r")].watermark
    9
    """

    VERSION = 1

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._states: dict[StateKey, StreamState] | None = None
        self.meta: dict[str, Any] = {}

    def load(self) -> dict[StateKey, StreamState]:
        with self._lock:
            return dict(self._load())

    def _load(self) -> dict[StateKey, StreamState]:
        if self._states is None:
            self._states = {}
            if self.path.exists():
                try:
                    doc = json.loads(self.path.read_text(encoding="utf-8"))
                    self.meta = dict(doc.get("meta") or {})
                    for obj in doc.get("states", []):
                        state = StreamState.from_json(obj)
                        self._states[state.key] = state
                except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                    self._states = None
                    from ..errors import DestinationError

                    raise DestinationError(
                        f"{self.path} is not a readable export state file ({type(exc).__name__}: {exc}); "
                        "move it away to export from scratch"
                    ) from None
        return self._states

    def commit(self, states: Iterable[StreamState], meta: dict[str, Any] | None = None) -> None:
        """Record `states` (replacing those with the same key) and replace the file atomically."""
        with self._lock:
            current = self._load()
            for state in states:
                current[state.key] = state
            if meta:
                self.meta.update(meta)
            doc = {
                "version": self.VERSION,
                "meta": self.meta,
                "states": [current[k].to_json() for k in sorted(current)],
            }
            write_atomic(self.path, json.dumps(doc, indent=1, sort_keys=True).encode())


_crash_counts: dict[str, int] = {}
_crash_lock = threading.Lock()


def crash_point(name: str) -> None:
    """A named commit boundary. With ``WANDB_HISTORY_CRASH_AT=<name>:<n>`` the process exits at once
    (``os._exit(137)``, as after ``kill -9``) the n-th time it reaches `name` (1-based).

    Boundaries: ``before-commit`` (rows written, transaction open / temp files not yet renamed),
    ``after-data`` (Parquet: chunk file renamed into place, state file not yet replaced),
    ``after-commit`` (rows and watermark committed), ``before-swap`` (full refresh complete, not
    yet swapped in).
    """
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    want, _, nth = spec.partition(":")
    if want != name:
        return
    with _crash_lock:
        _crash_counts[name] = _crash_counts.get(name, 0) + 1
        hit = _crash_counts[name] == int(nth or 1)
    if hit:
        os._exit(137)
