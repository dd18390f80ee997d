"""In-memory runs (`.wandb` files, tests) as a `HistorySource`, with the same semantics as the API.

>>> from connector.core.rundata import MemoryRun, RunMeta
>>> src = LocalSource(MemoryRun(RunMeta("e", "p", "r"), rows=[{"_step": 0, "a": 1.0}, {"_step": 5}]))
>>> [r["_step"] for r in src.fetch_rows(Window(0, 5), 10).rows]
[0]
>>> src.fetch_columns(Window(0, 10), ["a"], 10).rows
[{'_step': 0, 'a': 1.0}, {'_step': 5}]
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Sequence
from typing import Any

from ..core.rundata import RunData
from ..core.runpath import RunRef
from ..core.source import Page, Window
from ..core.values import flatten_row
from ..errors import RowError


def _picks(n: int, samples: int) -> list[int]:
    """The indices of an even sample of `samples` out of `n` rows (all of them when they fit)."""
    if n <= samples:
        return list(range(n))
    if samples <= 1:
        return [0]
    last = n - 1
    return sorted({round(i * last / (samples - 1)) for i in range(samples)})


def _downsample(rows: list[dict[str, Any]], samples: int) -> list[dict[str, Any]]:
    return [rows[i] for i in _picks(len(rows), samples)]


#: rows decoded at a time when `sampled_history` reads a whole run
_SAMPLE_WINDOW = 10_000


class LocalSource:
    """History of one `RunData` held in this process; never downsamples scan windows."""

    row_error = RowError

    def __init__(self, run: RunData) -> None:
        self.run = run
        meta = run.meta
        self.ref = RunRef(meta.entity, meta.project, meta.run_id)
        # rows a run decodes afresh on each read (`.wandb` files) need no copy before users get them
        self._shared = not getattr(run, "fresh_rows", False)

    def __repr__(self) -> str:
        return f"LocalSource({self.ref.path!r})"

    def _indices(self, window: Window) -> range:
        steps = self.run.steps()
        index_range = getattr(steps, "index_range", None)
        if index_range is not None:  # `connector.local.index.Steps`: a binary search in C
            return range(*index_range(window.lo, window.hi))
        return range(bisect.bisect_left(steps, window.lo), bisect.bisect_left(steps, window.hi))

    def _rows(self, indices: range) -> list[dict[str, Any]]:
        """The rows at `indices`, in one batch read when the run offers ``rows(start, stop)``."""
        if not indices:
            return []
        batch = getattr(self.run, "rows", None)
        if callable(batch):
            return batch(indices.start, indices.stop)
        return [self.run.row(i) for i in indices]

    def history_keys(self) -> dict[str, Any]:
        return self.run.history_keys()

    def line_count(self) -> int | None:
        return len(self.run.steps())

    def fetch_rows(self, window: Window, samples: int) -> Page:
        return Page(self._rows(self._indices(window)), shared=self._shared)

    def exported_until(self) -> int | None:
        return None

    def fetch_keyed(self, window: Window, keys: Sequence[str], samples: int) -> Page:
        wanted = list(dict.fromkeys(["_step", *keys]))
        rows = []
        for row in self._rows(self._indices(window)):
            flat = flatten_row(row)[0]
            if all(k in row or k in flat for k in wanted):
                rows.append({k: row[k] if k in row else flat[k] for k in wanted})
        return Page(rows, shared=True)

    def fetch_columns(self, window: Window, columns: Sequence[str], samples: int) -> Page:
        wanted = list(dict.fromkeys(["_step", *columns]))
        rows = []
        for row in self._rows(self._indices(window)):
            flat = flatten_row(row)[0]
            rows.append({k: flat[k] for k in wanted if k in flat})
        return Page(rows, shared=True)

    def probe_steps(self, window: Window, samples: int) -> list[int]:
        steps = self.run.steps()
        found = self._indices(window)
        return list(steps[found.start : found.stop])

    def sampled_history(
        self, samples: int, keys: Sequence[str] | None, stream: str
    ) -> list[dict[str, Any]]:
        if stream == "system":
            return _downsample(copy.deepcopy(self.run.events()), samples)
        steps = self.run.steps()
        n = len(steps)
        if keys:
            # the rows holding every key, found window by window; only the picked ones are kept
            found: list[int] = []
            wanted = list(dict.fromkeys(["_step", *keys]))
            for lo in range(0, n, _SAMPLE_WINDOW):
                for i, row in enumerate(self._rows(range(lo, min(lo + _SAMPLE_WINDOW, n))), lo):
                    flat = flatten_row(row)[0]
                    if all(k in row or k in flat for k in wanted):
                        found.append(i)
            picked = [found[i] for i in _picks(len(found), samples)]
            rows = []
            for i in picked:
                row = self.run.row(i)
                flat = flatten_row(row)[0]
                rows.append(copy.deepcopy({k: row[k] if k in row else flat[k] for k in wanted}))
            return rows
        return [copy.deepcopy(self.run.row(i)) for i in _picks(n, samples)]
