"""What a run holds, independent of where it comes from (synthetic, `.wandb` file, a test).

The emulator serves `RunData` objects over the W&B API, and the local source reads them directly.

>>> run = MemoryRun(RunMeta("e", "p", "r1"), rows=[{"_step": 0, "loss": 1.0}])
>>> run.steps(), run.row(0), run.history_keys()["lastStep"]
([0], {'_step': 0, 'loss': 1.0}, 0)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .values import history_keys_from_rows


@dataclass
class RunMeta:
    """Run metadata, shaped like the GraphQL `Run` (config and summary as plain dicts)."""

    entity: str
    project: str
    run_id: str
    display_name: str | None = None
    state: str = "finished"
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    created_at: str = "2024-01-01T00:00:00"
    heartbeat_at: str | None = None
    group: str | None = None
    job_type: str | None = None
    notes: str | None = None
    username: str = "emulator"


@runtime_checkable
class RunData(Protocol):
    """A run's full content. `steps()` is ascending and unique; `row(i)` is the row at `steps()[i]`."""

    meta: RunMeta

    def steps(self) -> Sequence[int]: ...

    def row(self, index: int) -> dict[str, Any]: ...

    def events(self) -> list[dict[str, Any]]: ...

    def history_keys(self) -> dict[str, Any]: ...


class MemoryRun:
    """A `RunData` held in memory; rows can be appended and the run rewound (for tests)."""

    def __init__(
        self,
        meta: RunMeta,
        rows: Sequence[dict[str, Any]] = (),
        events: Sequence[dict[str, Any]] = (),
    ) -> None:
        self.meta = meta
        self._lock = threading.Lock()
        self._rows = sorted(rows, key=lambda r: r["_step"])
        self._steps = [r["_step"] for r in self._rows]
        if len(set(self._steps)) != len(self._steps):
            raise ValueError(f"run {meta.run_id}: duplicate _step values")
        self._events = list(events)
        self._keys: dict[str, Any] | None = None

    def steps(self) -> Sequence[int]:
        return self._steps

    def row(self, index: int) -> dict[str, Any]:
        return self._rows[index]

    def events(self) -> list[dict[str, Any]]:
        return self._events

    def history_keys(self) -> dict[str, Any]:
        with self._lock:
            if self._keys is None:
                self._keys = history_keys_from_rows(self._rows)
            return self._keys

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append rows whose steps are above the last step."""
        with self._lock:
            for r in rows:
                if self._steps and r["_step"] <= self._steps[-1]:
                    raise ValueError(f"step {r['_step']} is not after the last step {self._steps[-1]}")
                self._rows.append(r)
                self._steps.append(r["_step"])
            self._keys = None

    def truncate(self, max_step: int) -> None:
        """Drop rows at or above `max_step` (a rewound run)."""
        with self._lock:
            keep = [r for r in self._rows if r["_step"] < max_step]
            self._rows = keep
            self._steps = [r["_step"] for r in keep]
            self._keys = None
