"""The emulator's run store: `RunData` objects plus the caches that make serving them cheap.

Each run is wrapped in a `ServedRun`, which caches per row index the row's encoding *as a JSON string
literal* (the bytes of ``"{\\"loss\\": 1.0, ...}"``, with bare ``NaN``/``Infinity``/``-Infinity``
tokens inside, as W&B sends them). A ``history`` page is then a ``b",".join`` of cached literals that is
spliced into the response with `orjson.Fragment`, so graphql-core never walks the 1000 rows.
The caches are dropped when the run changes (append, truncate); `Store.generation` increases on every
change so that answer caches elsewhere can be invalidated.

Encoding: ``orjson.dumps(row)``; when that output contains ``null`` (orjson writes NaN/±inf as
``null``, or the row really holds a null) or orjson refuses the row, ``json.dumps`` (``allow_nan``)
encodes it instead, so non-finite floats always come out as the bare tokens.
"""

from __future__ import annotations

import json
import threading
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from ..core.rundata import MemoryRun, RunData, RunMeta


def encode_row(row: dict[str, Any]) -> bytes:
    """A row as the bytes of a JSON *string literal* holding the row's JSON text.

    >>> encode_row({"_step": 1, "x": float("nan")})
    b'"{\\\\"_step\\\\":1,\\\\"x\\\\":NaN}"'
    """
    try:
        text = orjson.dumps(row)
        if b"null" in text:
            raise TypeError
    except TypeError:
        text = json.dumps(row, separators=(",", ":")).encode()
    # Both encoders escape control characters, so quoting needs only backslashes and quotes.
    return b'"' + text.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class ServedRun:
    """One run as served: its data, its row-encoding cache and a version number."""

    def __init__(self, data: RunData) -> None:
        self.data = data
        self.lock = threading.RLock()
        self.version = 0
        self._steps: Sequence[int] | None = None
        self._enc: list[bytes | None] = []

    @property
    def meta(self) -> RunMeta:
        return self.data.meta

    @property
    def path(self) -> str:
        m = self.data.meta
        return f"{m.entity}/{m.project}/{m.run_id}"

    def steps(self) -> Sequence[int]:
        steps = self._steps
        if steps is None:
            with self.lock:
                steps = self._steps = self.data.steps()
                if len(self._enc) != len(steps):
                    self._enc = [None] * len(steps)
        return steps

    def window(self, min_step: int | None, max_step: int | None) -> tuple[int, int]:
        """Row indices ``[i0, i1)`` of the rows with ``min_step <= _step < max_step``."""
        steps = self.steps()
        i0 = 0 if min_step is None else bisect_left(steps, min_step)
        i1 = len(steps) if max_step is None else bisect_left(steps, max_step)
        return i0, max(i0, i1)

    def rows(
        self, indices: Sequence[int], keys: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """The rows at ascending row `indices` (batched through ``data.rows(a, b)`` when offered).

        `keys` is a hint: rows may then hold only those top-level keys (a synthetic run
        generates just them); rows from other sources are returned whole.
        """
        batch = getattr(self.data, "rows", None)
        if not indices:
            return []
        if callable(batch):
            lo, hi = indices[0], indices[-1] + 1
            if hi - lo <= 4 * len(indices):
                try:
                    got = batch(lo, hi) if keys is None else batch(lo, hi, keys=list(keys))
                except TypeError:  # a `rows(start, stop)` without the keys hint
                    got = batch(lo, hi)
                return [got[i - lo] for i in indices]
        return [self.data.row(i) for i in indices]

    def encoded(self, indices: Sequence[int]) -> list[bytes]:
        """The cached string-literal encodings of the rows at ascending `indices`."""
        self.steps()
        enc = self._enc
        missing = [i for i in indices if enc[i] is None]
        if missing:
            for i, row in zip(missing, self.rows(missing), strict=True):
                enc[i] = encode_row(row)
        return [enc[i] for i in indices]  # type: ignore[misc]  # every one was encoded just above

    def warm(self, chunk: int = 4096) -> None:
        """Encode every row now (so that a benchmark never pays for it)."""
        n = len(self.steps())
        for a in range(0, n, chunk):
            self.encoded(range(a, min(a + chunk, n)))

    # -- mutation ------------------------------------------------------------------------------
    def _mutable(self) -> Any:
        if hasattr(self.data, "append") and hasattr(self.data, "truncate"):
            return self.data
        n = len(self.data.steps())
        rows = [self.data.row(i) for i in range(n)]
        self.data = MemoryRun(self.data.meta, rows, self.data.events())
        return self.data

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        with self.lock:
            self._mutable().append(list(rows))
            old = self._enc
            self._steps = None
            self.steps()
            self._enc[: len(old)] = old[: len(self._enc)]
            self.version += 1

    def truncate(self, max_step: int) -> None:
        with self.lock:
            self._mutable().truncate(max_step)
            old = self._enc
            self._steps = None
            self.steps()
            self._enc = old[: len(self._enc)]
            self.version += 1


class Store:
    """All served runs, by path, in insertion order; thread-safe for concurrent readers."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.runs: dict[str, ServedRun] = {}
        self.projects: dict[tuple[str, str], int] = {}
        self.generation = 0

    def add(self, data: RunData) -> ServedRun:
        served = ServedRun(data)
        with self.lock:
            m = data.meta
            self.projects.setdefault((m.entity, m.project), len(self.projects) + 1)
            self.runs[served.path] = served
            self.generation += 1
        return served

    def get(self, entity: str, project: str, run_id: str) -> ServedRun | None:
        return self.runs.get(f"{entity}/{project}/{run_id}")

    def require(self, path: str) -> ServedRun:
        parts = [p for p in path.strip("/").split("/") if p]
        if len(parts) == 4 and parts[2] == "runs":
            parts = [parts[0], parts[1], parts[3]]
        served = self.get(*parts) if len(parts) == 3 else None
        if served is None:
            raise KeyError(f"no run {path!r} in the emulator")
        return served

    def in_project(self, entity: str, project: str) -> list[ServedRun]:
        return [
            r
            for r in list(self.runs.values())
            if (r.meta.entity, r.meta.project) == (entity, project)
        ]

    def bump(self) -> None:
        with self.lock:
            self.generation += 1
