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


def _downsample(rows: list[dict[str, Any]], samples: int) -> list[dict[str, Any]]:
    if len(rows) <= samples:
        return rows
    if samples <= 1:
        return rows[:1]
    last = len(rows) - 1
    picks = sorted({round(i * last / (samples - 1)) for i in range(samples)})
    return [rows[i] for i in picks]


class LocalSource:
    """History of one `RunData` held in this process; never downsamples scan windows."""

    row_error = RowError

    def __init__(self, run: RunData) -> None:
        self.run = run
        meta = run.meta
        self.ref = RunRef(meta.entity, meta.project, meta.run_id)

    def __repr__(self) -> str:
        return f"LocalSource({self.ref.path!r})"

    def _indices(self, window: Window) -> range:
        steps = self.run.steps()
        return range(bisect.bisect_left(steps, window.lo), bisect.bisect_left(steps, window.hi))

    def history_keys(self) -> dict[str, Any]:
        return self.run.history_keys()

    def line_count(self) -> int | None:
        return len(self.run.steps())

    def fetch_rows(self, window: Window, samples: int) -> Page:
        return Page([self.run.row(i) for i in self._indices(window)], shared=True)

    def exported_until(self) -> int | None:
        return None

    def fetch_keyed(self, window: Window, keys: Sequence[str], samples: int) -> Page:
        wanted = list(dict.fromkeys(["_step", *keys]))
        rows = []
        for i in self._indices(window):
            row = self.run.row(i)
            flat = flatten_row(row)[0]
            if all(k in row or k in flat for k in wanted):
                rows.append({k: row[k] if k in row else flat[k] for k in wanted})
        return Page(rows, shared=True)

    def fetch_columns(self, window: Window, columns: Sequence[str], samples: int) -> Page:
        wanted = list(dict.fromkeys(["_step", *columns]))
        rows = []
        for i in self._indices(window):
            flat = flatten_row(self.run.row(i))[0]
            rows.append({k: flat[k] for k in wanted if k in flat})
        return Page(rows, shared=True)

    def probe_steps(self, window: Window, samples: int) -> list[int]:
        steps = self.run.steps()
        return [steps[i] for i in self._indices(window)]

    def sampled_history(
        self, samples: int, keys: Sequence[str] | None, stream: str
    ) -> list[dict[str, Any]]:
        if stream == "system":
            return _downsample(copy.deepcopy(self.run.events()), samples)
        steps = self.run.steps()
        if keys:
            page = self.fetch_keyed(Window(steps[0], steps[-1] + 1) if steps else Window(0, 0),
                                    keys, samples)
            return _downsample(page.rows, samples)
        return _downsample([copy.deepcopy(self.run.row(i)) for i in range(len(steps))], samples)
