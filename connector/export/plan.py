"""Plan an export: runs → step ranges after the watermark, cut into chunks where the rows are.

For each run and key set the plan reads the committed `StreamState` and the run's current
``lastStep`` / ``historyLineCount`` (from the run listing, no extra request) and decides:

=============  ==================================================================================
action         when, and what is fetched
=============  ==================================================================================
``new``        nothing committed yet: ``[min_step, stop)``
``append``     ``[watermark + 1, stop)`` — only the steps after the watermark
``lag``        the run is ``running`` (now, or at the last commit): ``[watermark + 1 - lag, stop)``;
               re-read rows are merged on (run, ``_step``), so nothing is duplicated
``backfill``   ``--min-step`` is below the committed range ``[covered, watermark]``: first
               ``[min_step, covered)`` (merged), then as above
``rewound``    the last step or the line count went **down** since the last commit: the run's rows
               are deleted and it is exported again from ``min_step``
``up-to-date`` nothing to fetch
=============  ==================================================================================

``stop = min(max_step, lastStep + 1)`` (``max_step`` exclusive). A plan is a few `StepRange` s,
never a list per chunk: each range is read as one streaming scan (which itself plans its pages
where the rows are), and its rows are cut into **chunks** on multiples of ``chunk_steps``
(`slot_chunks`): chunk ``k`` holds the rows of ``[k*chunk_steps, (k+1)*chunk_steps)``, so a chunk's
name is the same on every run and resume (the Parquet sink relies on it), and an empty stretch of
steps costs nothing — a run whose steps are unix-millisecond timestamps costs what its rows cost.
After a chunk, the watermark is the end of its slot (all rows before the next row are committed),
after the last one the end of the range; it never goes down.

Options that shape rows are part of the state's identity or recorded in it, so a changed option is
never taken for "up to date": ``--keys`` selects the key set (each has its own watermark; rows of
every key set merge into one row per (run, ``_step``)), ``--layout`` the stream (``history`` or
``history_long``: another table), and the covered range remembers ``--min-step`` (lowered only
once a backfill range is complete and reaches it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..core.columns import check_key_list, last_step
from ..core.scan import DEFAULT_PAGE_SIZE
from ..errors import ConfigurationError
from .checkpoint import HISTORY, HISTORY_LONG, StateKey, StreamState, key_set_id

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
    page_size: int = DEFAULT_PAGE_SIZE
    filters: dict[str, Any] | None = None
    run_states: tuple[str, ...] = ()
    run_ids: tuple[str, ...] = ()
    allow_missing: bool = False
    skip_damaged: bool = False

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
        if self.keys is not None:
            check_key_list(self.keys)

    @property
    def key_set(self) -> str:
        return key_set_id(self.keys)

    @property
    def stream(self) -> str:
        """The state stream of the history in this layout (each layout is a table of its own)."""
        return HISTORY if self.layout == "wide" else HISTORY_LONG


@dataclass(frozen=True)
class StepRange:
    """One step range to read, and the covered range ``[min_step, watermark]`` it commits.

    `min_step` and `watermark` are what the state records once the whole range is committed;
    chunks before its end commit ``prior_min_step`` and the end of their slot.
    """

    lo: int
    hi: int
    min_step: int
    watermark: int
    prior_min_step: int
    prior_watermark: int

    def chunk_state(self, slot_end: int, last: bool) -> tuple[int, int]:
        """(min_step, watermark) to commit after a chunk ending at `slot_end` (exclusive)."""
        if last:
            return self.min_step, self.watermark
        return self.prior_min_step, max(self.prior_watermark, min(slot_end, self.hi) - 1)


@dataclass(frozen=True)
class Chunk:
    """The rows of one aligned slot of a range: ``[lo, hi)``; `last` ends its range."""

    lo: int
    hi: int
    slot_end: int
    last: bool


def slot_chunks(
    batches: Iterable[pa.RecordBatch], lo: int, hi: int, chunk_steps: int
) -> Iterator[tuple[Chunk, pa.Table]]:
    """Cut a step-ordered stream of the rows of ``[lo, hi)`` into one table per aligned slot.

    Only slots holding rows are yielded; the last chunk's window reaches `hi`.

    >>> import pyarrow as pa
    >>> b = pa.record_batch({"_step": [3, 4, 25, 1_700_000_000_000]})
    >>> [(c.lo, c.hi, t.num_rows, c.last) for c, t in slot_chunks([b], 0, 1_700_000_000_001, 10)]
    [(0, 10, 2, False), (20, 30, 1, False), (1700000000000, 1700000000001, 1, True)]
    """
    pending: list[pa.RecordBatch] = []
    slot: int | None = None

    def emit(last: bool) -> tuple[Chunk, pa.Table]:
        assert slot is not None
        start, end = slot * chunk_steps, (slot + 1) * chunk_steps
        chunk = Chunk(max(lo, start), hi if last else min(hi, end), end, last)
        return chunk, pa.Table.from_batches(pending)

    for batch in batches:
        if batch.num_rows == 0:
            continue
        slots = np.asarray(batch.column("_step").to_numpy(zero_copy_only=False)) // chunk_steps
        cuts = [0, *(np.flatnonzero(np.diff(slots)) + 1).tolist(), batch.num_rows]
        for a, b in zip(cuts, cuts[1:], strict=False):
            here = int(slots[a])
            if slot is not None and here != slot:
                yield emit(False)
                pending = []
            slot = here
            pending.append(batch.slice(a, b - a))
    if pending:
        yield emit(True)


@dataclass
class RunPlan:
    """What one run needs, for the history stream."""

    run: Run
    key: StateKey
    prior: StreamState | None
    action: str
    ranges: list[StepRange]
    last_step: int
    line_count: int | None
    chunk_steps: int
    notes: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.key.run_path

    @property
    def steps(self) -> list[int] | None:
        """``[lowest, highest)`` step read, or None when there is nothing to read."""
        if not self.ranges:
            return None
        return [min(r.lo for r in self.ranges), max(r.hi for r in self.ranges)]

    @property
    def estimated_rows(self) -> int:
        """Rows expected (the line count scaled to the fetched share of the step span)."""
        if not self.ranges:
            return 0
        span = max(1, self.last_step + 1)
        steps = sum(r.hi - r.lo for r in self.ranges)
        return int(round((self.line_count or 0) * min(1.0, steps / span)))

    def describe(self) -> dict[str, Any]:
        return {
            "run": self.path,
            "state": self.run.state,
            "action": self.action,
            "watermark": None if self.prior is None else self.prior.watermark,
            "steps": self.steps,
            "ranges": [[r.lo, r.hi] for r in self.ranges],
            "estimated_rows": self.estimated_rows,
            "notes": self.notes,
        }


def plan_run(
    run: Run, prior: StreamState | None, options: ExportOptions, *, chunk_steps: int | None = None
) -> RunPlan:
    """Decide what to fetch for `run` given its committed state (see the module docstring).

    `chunk_steps` overrides the chunking (the run's files in another key set already use it).

    >>> from connector.api import Run
    >>> from connector.core.rundata import MemoryRun, RunMeta
    >>> r = Run.from_run_data(MemoryRun(RunMeta("e", "p", "r"), rows=[{"_step": i} for i in range(30)]))
    >>> p = plan_run(r, None, ExportOptions(chunk_steps=10))
    >>> p.action, [(x.lo, x.hi, x.watermark) for x in p.ranges]
    ('new', [(0, 30, 29)])
    >>> done = StreamState(p.key, watermark=29, last_step=29, line_count=30, run_state="finished", min_step=20)
    >>> p = plan_run(r, done, ExportOptions(chunk_steps=10))
    >>> p.action, [(x.lo, x.hi, x.min_step, x.watermark) for x in p.ranges]
    ('backfill', [(0, 20, 0, 29)])
    """
    key = StateKey(run.entity, run.project, run.id, options.stream, options.key_set)
    last = last_step(run.history_keys)
    lines = run.history_line_count
    chunk_steps = chunk_steps or (prior.chunk_steps if prior is not None else None) or options.chunk_steps
    stop = last + 1 if options.max_step is None else min(options.max_step, last + 1)
    notes: list[str] = []
    watermark = None if prior is None or prior.watermark is None else int(prior.watermark)
    rewound = watermark is not None and prior is not None and (
        (prior.last_step is not None and last < prior.last_step)
        or (prior.line_count is not None and lines is not None and lines < prior.line_count)
    )
    first = options.min_step
    if watermark is None or rewound:
        action = "rewound" if rewound else "new"
        if rewound:
            assert prior is not None
            notes.append(
                f"last step {prior.last_step} -> {last}, line count {prior.line_count} -> {lines}: re-exported"
            )
        ranges = [StepRange(first, stop, first, stop - 1, first, -1)] if stop > first else []
        return RunPlan(run, key, prior, action, ranges, last, lines, chunk_steps, notes)
    assert prior is not None
    covered = prior.min_step or 0
    ranges = []
    action = "append"
    if first < covered and first < stop:
        end = min(covered, stop)
        after = first if end == covered else covered  # lowered only when the range reaches it
        ranges.append(StepRange(first, end, after, watermark, covered, watermark))
        action = "backfill"
        notes.append(f"steps [{first}, {covered}) were not exported before (--min-step was {covered})")
        covered = after
    start = max(first, watermark + 1)
    running = run.state == "running" or prior.run_state == "running"
    if running and options.running_lag:
        start = max(first, start - options.running_lag)
        action = "lag" if action == "append" else action
    if start < stop:
        ranges.append(StepRange(start, stop, covered, max(watermark, stop - 1), covered, watermark))
    if not ranges:
        action = "up-to-date"
    return RunPlan(run, key, prior, action, ranges, last, lines, chunk_steps, notes)
