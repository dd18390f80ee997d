"""Plan an export: runs → step-range chunks after the watermark.

For each run and key set the plan reads the committed `StreamState` and the run's current
``lastStep`` / ``historyLineCount`` (from the run listing, no extra request) and decides:

=============  ==================================================================================
action         when, and what is fetched
=============  ==================================================================================
``new``        nothing committed yet: ``[min_step, stop)``
``append``     ``[watermark + 1, stop)`` — only the steps after the watermark
``lag``        the run is ``running`` (now, or at the last commit): ``[watermark + 1 - lag, stop)``;
               re-read rows are merged on (run, ``_step``), so nothing is duplicated
``rewound``    the last step or the line count went **down** since the last commit: the run's rows
               are deleted and it is exported again from ``min_step``
``up-to-date`` nothing to fetch
=============  ==================================================================================

``stop = min(max_step, lastStep + 1)`` (``max_step`` exclusive). Chunks are aligned on multiples of
``chunk_steps`` (chunk ``k`` covers ``[k*chunk_steps, (k+1)*chunk_steps)``, clipped to the range),
so a chunk's name is the same on every run and resume — the Parquet sink relies on it. The
watermark after a chunk ``[lo, hi)`` is ``hi - 1``.

>>> [(c.lo, c.hi) for c in aligned_chunks(2500, 12000, 5000)]
[(2500, 5000), (5000, 10000), (10000, 12000)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..source import Window
from .checkpoint import HISTORY, StateKey, StreamState, key_set_id

if TYPE_CHECKING:
    from ..api import Run

LAYOUTS = ("wide", "long")


@dataclass(frozen=True)
class ExportOptions:
    """Everything that shapes an export besides its sources and destination."""

    keys: tuple[str, ...] | None = None
    min_step: int = 0
    max_step: int | None = None
    layout: str = "wide"
    include_system_metrics: bool = False
    concurrency: int = 4
    chunk_steps: int = 10_000
    checkpoint: str | None = None
    full_refresh: bool = False
    dry_run: bool = False
    running_lag: int = 100
    page_size: int = 1000
    filters: dict[str, Any] | None = None
    run_states: tuple[str, ...] = ()
    run_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ConfigurationError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        for name in ("concurrency", "chunk_steps", "page_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.running_lag, int) or self.running_lag < 0:
            raise ConfigurationError(f"running_lag must be >= 0 steps, got {self.running_lag!r}")
        if self.min_step is None or self.min_step < 0:
            raise ConfigurationError(f"min_step must be >= 0, got {self.min_step!r}")
        if self.max_step is not None and self.max_step <= self.min_step:
            raise ConfigurationError(
                f"max_step ({self.max_step}) must be above min_step ({self.min_step}); max_step is exclusive"
            )
        if self.keys is not None and (isinstance(self.keys, str) or not all(isinstance(k, str) for k in self.keys)):
            raise ConfigurationError(f"keys must be a list of strings, got {self.keys!r}")

    @property
    def key_set(self) -> str:
        return key_set_id(self.keys)


def aligned_chunks(start: int, stop: int, chunk_steps: int) -> list[Window]:
    """Split ``[start, stop)`` on multiples of `chunk_steps`."""
    out = []
    lo = start
    while lo < stop:
        hi = min(stop, (lo // chunk_steps + 1) * chunk_steps)
        out.append(Window(lo, hi))
        lo = hi
    return out


def run_last_step(run: Run) -> int:
    last = (run.history_keys or {}).get("lastStep")
    return last if isinstance(last, int) else -1


@dataclass
class RunPlan:
    """What one run needs, for the history stream."""

    run: Run
    key: StateKey
    prior: StreamState | None
    action: str
    start: int
    stop: int
    chunks: list[Window]
    last_step: int
    line_count: int | None
    chunk_steps: int
    notes: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.key.run_path

    @property
    def estimated_rows(self) -> int:
        """Rows expected (the line count scaled to the fetched share of the step span)."""
        if not self.chunks:
            return 0
        span = max(1, self.last_step + 1 - self.run_first_step)
        share = min(1.0, (self.stop - self.start) / span)
        return int(round((self.line_count or 0) * share))

    @property
    def run_first_step(self) -> int:
        return 0

    def describe(self) -> dict[str, Any]:
        return {
            "run": self.path,
            "state": self.run.state,
            "action": self.action,
            "watermark": None if self.prior is None else self.prior.watermark,
            "steps": [self.start, self.stop] if self.chunks else None,
            "chunks": len(self.chunks),
            "estimated_rows": self.estimated_rows,
            "notes": self.notes,
        }


def plan_run(run: Run, prior: StreamState | None, options: ExportOptions) -> RunPlan:
    """Decide what to fetch for `run` given its committed state (see the module docstring).

    >>> from connector.api import Run
    >>> from connector.rundata import MemoryRun, RunMeta
    >>> r = Run.from_run_data(MemoryRun(RunMeta("e", "p", "r"), rows=[{"_step": i} for i in range(30)]))
    >>> p = plan_run(r, None, ExportOptions(chunk_steps=10))
    >>> p.action, [(c.lo, c.hi) for c in p.chunks]
    ('new', [(0, 10), (10, 20), (20, 30)])
    >>> done = StreamState(p.key, watermark=29, last_step=29, line_count=30, run_state="finished")
    >>> plan_run(r, done, ExportOptions(chunk_steps=10)).action
    'up-to-date'
    """
    key = StateKey(run.entity, run.project, run.id, HISTORY, options.key_set)
    last = run_last_step(run)
    lines = run.history_line_count
    chunk_steps = (prior.chunk_steps if prior is not None and prior.chunk_steps else None) or options.chunk_steps
    stop = last + 1 if options.max_step is None else min(options.max_step, last + 1)
    notes: list[str] = []
    watermark = None if prior is None or prior.watermark is None else int(prior.watermark)
    rewound = watermark is not None and prior is not None and (
        (prior.last_step is not None and last < prior.last_step)
        or (prior.line_count is not None and lines is not None and lines < prior.line_count)
    )
    if rewound:
        assert prior is not None
        action, start = "rewound", options.min_step
        notes.append(
            f"last step {prior.last_step} -> {last}, line count {prior.line_count} -> {lines}: re-exported"
        )
    elif watermark is None:
        action, start = "new", options.min_step
    else:
        start = max(options.min_step, watermark + 1)
        action = "append"
        running = run.state == "running" or (prior is not None and prior.run_state == "running")
        if running and options.running_lag:
            start = max(options.min_step, start - options.running_lag)
            action = "lag"
    chunks = aligned_chunks(start, stop, chunk_steps)
    if not chunks:
        action = "up-to-date" if action != "rewound" else action
    return RunPlan(run, key, prior, action, start, stop, chunks, last, lines, chunk_steps, notes)


def run_columns(run: Run, keys: Sequence[str] | None) -> list[str] | None:
    """The flat columns to fetch for `run`: None for all; requested keys the run never logged are
    skipped (their columns stay NULL), a nested parent selects its leaves."""
    if keys is None:
        return None
    known = list(((run.history_keys or {}).get("keys") or {}).keys())
    out: list[str] = []
    for key in keys:
        if key == "_step":
            continue
        if key in known:
            out.append(key)
        else:
            out += [k for k in known if k.startswith(key + ".")]
    return list(dict.fromkeys(out))
