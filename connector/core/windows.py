"""Plan the step windows of a scan.

Dense runs get fixed windows of `page_size` steps, as the official client pages. A run whose step
span exceeds its row count by two pages or more (it starts at a high step, or has gaps) is probed
first: one request
for its `_step` column (all steps, or an even sample) places windows where the rows are, so a gap of a
million steps costs no flood of empty pages.

Each window carries `samples`, the most rows the server may return for it: the window's width, capped
at `MAX_SAMPLES` (what the official SDK never exceeds). When the width fits, the server can never
downsample: no window holds more rows than steps. A wider window (a sparse stretch found by the probe)
may come back downsampled, possibly to fewer rows than `samples` and at random, so the scan splits it
and fetches the halves until they fit; an empty answer ends the split early. Sampling is never silent,
and a row count is never taken as proof.

>>> [(w.lo, w.hi) for w in plan_windows(0, 2500, page_size=1000)]
[(0, 1000), (1000, 2000), (2000, 2500)]
>>> steps = [5_000_000 + i for i in range(1500)]
>>> [(w.lo, w.hi) for w in plan_windows(0, 5_001_500, page_size=1000, line_count=1500,
...                                      probe=lambda w, n: steps)]
[(0, 5001000), (5001000, 5001500)]
>>> ts = [1_700_000_000_000 + 1000 * i for i in range(50)]   # unix-millisecond steps, no line count
>>> [(w.lo, w.hi) for w in plan_windows(0, ts[-1] + 1, page_size=1000, probe=lambda w, n: ts)]
[(0, 1700000049001)]
"""

from __future__ import annotations

from collections.abc import Callable

from .source import Window

MAX_SAMPLES = 10_000  # samples per request: the official SDK never asks more
PROBE_SAMPLES = MAX_SAMPLES
MAX_DENSE_WINDOWS = 10_000  # more fixed windows than this (a huge step span): probe instead
#: Rows per page read from columnar files (exports): no server sampling applies there, and larger
#: pages amortise the per-page Arrow work; bounded so memory stays a few pages of rows.
FILE_PAGE_ROWS = 50_000


def window_samples(window: Window, page_size: int) -> int:
    """The `samples` argument for one window (see the module docstring).

    >>> window_samples(Window(0, 1000), 1000), window_samples(Window(0, 10**9), 1000)
    (1000, 10000)
    """
    return max(1, min(window.width, MAX_SAMPLES))


def plan_windows(
    start: int,
    stop: int,
    *,
    page_size: int,
    line_count: int | None = None,
    probe: Callable[[Window, int], list[int]] | None = None,
) -> list[Window]:
    """Split ``[start, stop)`` into windows of about `page_size` rows each."""
    if stop <= start:
        return []
    span = stop - start
    # The probe costs one request; it pays as soon as it saves two or more empty pages. A span too
    # wide for fixed windows is probed even without a line count (steps may be timestamps, or the
    # server's lastStep may be wrong): cost and memory follow the rows, never the numeric span.
    sparse = line_count is not None and probe is not None and span - line_count >= 2 * page_size
    huge = probe is not None and span > MAX_DENSE_WINDOWS * page_size
    if not (sparse or huge):
        return [Window(lo, min(lo + page_size, stop)) for lo in range(start, stop, page_size)]
    assert probe is not None
    samples = max(1, min(line_count, PROBE_SAMPLES)) if line_count is not None else PROBE_SAMPLES
    steps = sorted(s for s in probe(Window(start, stop), samples) if start <= s < stop)
    if not steps:
        return [Window(start, stop)]
    rows = line_count if line_count is not None else len(steps)
    exact = len(steps) < samples or len(steps) >= rows
    per_window = page_size if exact else max(1, round(page_size * len(steps) / max(rows, 1)))
    bounds = [start] + [steps[i] for i in range(per_window, len(steps), per_window)] + [stop]
    bounds = sorted(set(bounds))
    return [Window(lo, hi) for lo, hi in zip(bounds, bounds[1:], strict=False)]


def coalesce_below(windows: list[Window], boundary: int | None, page_size: int) -> list[Window]:
    """`windows` with those entirely below `boundary` (steps read from columnar files, where the
    server never samples) merged into runs of about `FILE_PAGE_ROWS` rows; the rest unchanged.

    >>> ws = [Window(lo, lo + 1000) for lo in range(0, 120_000, 1000)]
    >>> [(w.lo, w.hi) for w in coalesce_below(ws, 101_500, 1000)][:5]
    [(0, 50000), (50000, 100000), (100000, 101000), (101000, 102000), (102000, 103000)]
    >>> coalesce_below(ws, None, 1000) == ws
    True
    """
    if boundary is None or not windows:
        return windows
    per_merge = max(1, FILE_PAGE_ROWS // max(page_size, 1))
    below = [w for w in windows if w.hi <= boundary]
    merged = [
        Window(group[0].lo, group[-1].hi)
        for group in (below[i : i + per_merge] for i in range(0, len(below), per_merge))
    ]
    return merged + windows[len(below) :]
