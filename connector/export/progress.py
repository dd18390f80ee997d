"""Progress of an export, for people (a live display on a terminal) and for machines (plain lines).

The runner calls, in this order: `Progress.listing` while runs are listed (totals unknown),
`Progress.planned` once with the totals, then `run_started` / `rows` / `run_done` from worker
threads, and `close` at the end (also on errors and Ctrl-C). Every method is thread-safe.

* **Terminal** (``stream.isatty()`` or ``force_terminal=True``): a `rich` live display on the
  stream (stderr by default) redrawn 4 times a second. While listing: a spinner ``listing runs: N``.
  After `planned`: an overall bar of rows with rows/s and an ETA, and one line per run in flight
  (at most `MAX_RUN_LINES`). At `close` the display is removed and one final line stays.
* **Not a terminal** (cron, CI, Airflow): plain lines, flushed one by one, no control characters:
  the totals when planned, one line per finished run (``[3/20] e/p/r exported 1,000 rows steps [0,
  1000) in 2.1s``, ``[4/20] e/p/r FAILED: <one-line error>``), and an overall line at most every
  `interval` seconds (checked whenever the runner reports something).
* ``quiet=True``: nothing at all.

ETA = rows left / rows per second since `planned`, where rows left = the estimates of the runs not
started yet + what each run in flight has left of its estimate (a run that ends below its estimate
stops counting). No ETA before `planned`: the totals are not known while runs are being listed.

Progress only ever receives run paths, counts and one-line errors; URLs in an error are shown as
``<url>``, so nothing printed holds a server address, a key or a password.

>>> import io
>>> out = io.StringIO()
>>> p = Progress(stream=out)
>>> p.listing(2); p.planned(2, 300)
>>> p.run_started("e/p/r1", 100); p.rows("e/p/r1", 100)
>>> p.run_done("e/p/r1", "exported", 100, "steps [0, 100)")
>>> p.run_done("e/p/r2", "failed", 0, "ValueError: bad\\nmore")
>>> print(out.getvalue().replace("0.0s", "Xs"), end="")
export: 2 runs planned, ~300 rows
[1/2] e/p/r1 exported 100 rows steps [0, 100) in Xs
[2/2] e/p/r2 FAILED: ValueError: bad
>>> p.total_rows, p.runs_done
(100, 2)
"""

from __future__ import annotations

import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live

MAX_RUN_LINES = 8
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://\S+")


@dataclass
class _Run:
    estimate: int
    rows: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class RunView:
    """One run in flight: its path, rows committed, estimated rows, seconds since it started."""

    path: str
    rows: int
    estimate: int
    seconds: float


@dataclass(frozen=True)
class View:
    """A snapshot of an export's progress; the pure functions below turn it into text.

    `runs` and `left` are None until `Progress.planned` (totals unknown while listing).
    """

    listed: int = 0
    runs: int | None = None
    done: int = 0
    failed: int = 0
    rows: int = 0
    left: int | None = None
    seconds: float = 0.0  # since planned(): the rate's denominator
    elapsed: float = 0.0  # since the Progress was made
    running: tuple[RunView, ...] = ()

    @property
    def rate(self) -> float:
        return _rate(self.rows, self.seconds)


def _rate(rows: int, seconds: float) -> float:
    return rows / seconds if seconds > 0 else 0.0


def eta(left: int | None, rate: float) -> str:
    """``mm:ss`` (or ``h:mm:ss``) to go; ``--:--`` when unknown.

    >>> eta(100, 10.0), eta(7200, 1.0), eta(None, 1.0), eta(10, 0.0)
    ('00:10', '2:00:00', '--:--', '--:--')
    """
    if left is None or rate <= 0 or left <= 0:
        return "--:--"
    s = int(left / rate)
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def one_line(text: str) -> str:
    """The first line of `text`, without control characters and with URLs shown as ``<url>``.

    >>> one_line("HTTPError: 500 for url: http://h:1/graphql?x=1\\nTraceback")
    'HTTPError: 500 for url: <url>'
    """
    lines = text.strip().splitlines()
    return _URL.sub("<url>", _CONTROL.sub("?", lines[0] if lines else "")).strip()


def _n(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _of(done: int, runs: int | None) -> str:
    return f"{done}/{max(runs, done)}" if runs is not None else f"{done}/?"


def overall_line(view: View) -> str:
    """The periodic line printed when the stream is not a terminal.

    >>> overall_line(View(listed=120))
    'export: listing runs, 120 so far'
    >>> overall_line(View(listed=20, runs=20, done=8, rows=80_000, left=120_000, seconds=2.0))
    'export: 8/20 runs, 80,000 rows, 40,000 rows/s, ETA 00:03'
    """
    if view.runs is None:
        return f"export: listing runs, {view.listed:,} so far"
    failed = f", {view.failed} failed" if view.failed else ""
    return (
        f"export: {_of(view.done, view.runs)} runs{failed}, {view.rows:,} rows, {view.rate:,.0f} rows/s, "
        f"ETA {eta(view.left, view.rate)}"
    )


def final_line(view: View) -> str:
    """The line left at `Progress.close` (after `Progress.planned`).

    >>> final_line(View(runs=3, done=3, failed=1, rows=9_500, left=0, seconds=2.0, elapsed=2.5))
    'export: 3/3 runs, 1 failed, 9,500 rows in 2.5s (4,750 rows/s)'
    """
    failed = f", {view.failed} failed" if view.failed else ""
    return (
        f"export: {_of(view.done, view.runs)} runs{failed}, {view.rows:,} rows in {view.elapsed:.1f}s "
        f"({view.rate:,.0f} rows/s)"
    )


def run_done_line(index: int, runs: int | None, path: str, status: str, rows: int, detail: str,
                  seconds: float | None) -> str:  # fmt: skip
    """The line for a finished run (not on a terminal).

    >>> run_done_line(3, 20, "e/p/r", "exported", 1000, "steps [0, 1000)", 2.14)
    '[3/20] e/p/r exported 1,000 rows steps [0, 1000) in 2.1s'
    >>> run_done_line(4, 20, "e/p/s", "failed", 0, "OSError: disk full", 0.5)
    '[4/20] e/p/s FAILED: OSError: disk full'
    >>> run_done_line(5, None, "e/p/t", "up-to-date", 0, "", None)
    '[5/?] e/p/t up-to-date'
    """
    head = f"[{_of(index, runs)}] {one_line(path)}"
    detail = one_line(detail)
    if status == "failed":
        return f"{head} FAILED: {detail or 'unknown error'}"
    if status == "skipped":
        return f"{head} skipped" + (f": {detail}" if detail else "")
    text = f"{head} {status}"
    if status == "exported" or rows:
        text += f" {rows:,} rows"
    if detail:
        text += f" {detail}"
    if seconds is not None:
        text += f" in {seconds:.1f}s"
    return text


def run_line(run: RunView, width: int = 32) -> str:
    """A run in flight, as the terminal shows it (a long path keeps its end: the run id).

    >>> run_line(RunView("e/p/r", 500, 2000, 0.5))
    '  e/p/r                                  500 of ~2,000 rows  1,000 rows/s'
    >>> run_line(RunView("entity/" + "p" * 40 + "/abc123", 0, 10, 0.0), width=20)[:22]
    '  ...pppppppppp/abc123'
    """
    path = run.path if len(run.path) <= width else "..." + run.path[-(width - 3):]
    return f"  {path:<{width}} {run.rows:>9,} of ~{run.estimate:,} rows  {_rate(run.rows, run.seconds):,.0f} rows/s"


def terminal_lines(view: View, max_runs: int = MAX_RUN_LINES) -> list[str]:
    """What the terminal display shows, as text: the first line follows the bar (once planned).

    >>> terminal_lines(View(listed=12))
    ['listing runs: 12']
    >>> v = View(runs=20, done=2, rows=5_000, left=15_000, seconds=1.0,
    ...          running=(RunView("e/p/a", 1_000, 4_000, 1.0), RunView("e/p/b", 0, 2_000, 0.1)))
    >>> for line in terminal_lines(v, max_runs=1): print(line)
     25%  ETA 00:03  2/20 runs  5,000/~20,000 rows  5,000 rows/s
      e/p/a                                1,000 of ~4,000 rows  1,000 rows/s
      +1 more run in flight
    """
    if view.runs is None:
        return [f"listing runs: {view.listed:,}"]
    failed = f" ({view.failed} failed)" if view.failed else ""
    total = view.rows + (view.left or 0)
    pct = 100 * view.rows // total if total else 100
    out = [
        f"{pct:>3}%  ETA {eta(view.left, view.rate)}  {_of(view.done, view.runs)} runs{failed}  "
        f"{view.rows:,}/~{total:,} rows  {view.rate:,.0f} rows/s"
    ]
    out += [run_line(r) for r in view.running[:max_runs]]
    more = len(view.running) - max_runs
    if more > 0:
        out.append(f"  +{more} more run{'s' if more > 1 else ''} in flight")
    return out


class Progress:
    """Thread-safe progress of an export (see the module docstring for what it prints where)."""

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        quiet: bool = False,
        interval: float = 30.0,
        force_terminal: bool | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.interval = interval
        if force_terminal is None:
            isatty = getattr(self.stream, "isatty", None)
            force_terminal = bool(isatty()) if callable(isatty) else False
        self.terminal = force_terminal and not quiet
        self._lock = threading.RLock()  # the counts; held only briefly, never while drawing
        self._live_lock = threading.Lock()  # starting, redrawing and stopping the live display
        self._start = time.monotonic()
        self._planned_at: float | None = None
        self._last_line = self._start
        self._runs: dict[str, _Run] = {}
        self._started_estimate = 0
        self._closed = False
        self._live: Live | None = None
        self._spinner: Any = None
        self.listed = 0
        self.runs_total: int | None = None
        self.estimate: int | None = None
        self.total_rows = 0
        self.runs_done = 0
        self.runs_failed = 0

    # -- the runner's calls ----------------------------------------------------------------------
    def listing(self, runs_listed: int) -> None:
        """Runs listed so far (called repeatedly while listing; the totals are not known yet)."""
        with self._lock:
            self.listed = runs_listed
        self._after_event()

    def planned(self, runs: int, estimated_rows: int) -> None:
        """The totals, once, after listing and planning and before any run starts."""
        with self._lock:
            self.runs_total = runs
            self.estimate = estimated_rows
            self.listed = max(self.listed, runs)
            self._planned_at = time.monotonic()
            if not self.quiet and not self.terminal and not self._closed:
                self._write(f"export: {_n(runs, 'run')} planned, ~{_n(estimated_rows, 'row')}")
        self._after_event(redraw=True)

    def run_started(self, path: str, estimated_rows: int) -> None:
        with self._lock:
            self._runs[path] = _Run(max(0, estimated_rows))
            self._started_estimate += max(0, estimated_rows)
        self._after_event()

    def rows(self, path: str, n: int) -> None:
        """`n` rows of run `path` were committed."""
        with self._lock:
            run = self._runs.get(path)
            if run is not None:
                run.rows += n
            self.total_rows += n
        self._after_event()

    def run_done(self, path: str, status: str, rows: int, detail: str = "") -> None:
        """Run `path` finished: ``exported``, ``up-to-date``, ``failed`` or ``skipped``."""
        with self._lock:
            run = self._runs.pop(path, None)
            self.runs_done += 1
            self.runs_failed += int(status == "failed")
            if not self.quiet and not self.terminal and not self._closed:
                seconds = time.monotonic() - run.started if run is not None else None
                self._write(run_done_line(self.runs_done, self.runs_total, path, status, rows, detail, seconds))
        self._after_event()

    def close(self) -> None:
        """Stop the live display and leave one final line there (once planned); later calls are no-ops.

        Not on a terminal nothing more is printed: the caller prints its own summary."""
        with self._live_lock:
            with self._lock:
                if self._closed:
                    return
                self._closed = True
                final = final_line(self.view()) if self.runs_total is not None and self.terminal else None
            live, self._live = self._live, None
            if live is not None:
                live.stop()
            if final is not None:
                self._console(live).print(final, highlight=False, markup=False, soft_wrap=True)

    # -- views -----------------------------------------------------------------------------------
    def view(self) -> View:
        """A consistent snapshot of the counts."""
        now = time.monotonic()
        with self._lock:
            left = None
            if self.estimate is not None:
                pending = max(0, self.estimate - self._started_estimate)
                left = pending + sum(max(0, r.estimate - r.rows) for r in self._runs.values())
            return View(
                listed=self.listed,
                runs=self.runs_total,
                done=self.runs_done,
                failed=self.runs_failed,
                rows=self.total_rows,
                left=left,
                seconds=now - self._planned_at if self._planned_at is not None else 0.0,
                elapsed=now - self._start,
                running=tuple(RunView(p, r.rows, r.estimate, now - r.started) for p, r in self._runs.items()),
            )

    def lines(self) -> list[str]:
        """The lines a terminal shows now, as text (for tests; no terminal needed)."""
        return terminal_lines(self.view())

    # -- output ----------------------------------------------------------------------------------
    def _write(self, line: str) -> None:
        """One plain line, flushed (call with the lock held)."""
        self.stream.write(line + "\n")
        self.stream.flush()

    def _after_event(self, redraw: bool = False) -> None:
        if self.quiet or self._closed:
            return
        if self.terminal:
            self._draw(redraw)
            return
        with self._lock:
            now = time.monotonic()
            if now - self._last_line >= self.interval and not self._closed:
                self._last_line = now
                self._write(overall_line(self.view()))

    def _console(self, live: Live | None) -> Any:
        if live is not None:
            return live.console
        from rich.console import Console

        return Console(file=self.stream, force_terminal=True, highlight=False)

    def _draw(self, redraw: bool) -> None:
        """Start the live display on the first event; redraw it now when `redraw`.

        Lock order: ``_live_lock``, then rich's own lock, then ``_lock`` (taken by `_renderable`, also
        from rich's refresh thread); ``_lock`` is never held while calling into rich.
        """
        if self._live is not None and not redraw:
            return  # rich's refresh thread redraws 4 times a second
        with self._live_lock:
            if self._closed:
                return
            if self._live is not None:
                self._live.refresh()
                return
            from rich.live import Live
            from rich.spinner import Spinner

            self._spinner = Spinner("dots", text="")
            self._live = Live(
                console=self._console(None),
                get_renderable=self._renderable,
                refresh_per_second=4,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=self.stream is sys.stderr,
            )
            self._live.start(refresh=True)

    def _renderable(self) -> RenderableType:
        """The live display: a spinner while listing, then the bar, its text and the runs."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        view = self.view()
        lines = terminal_lines(view)
        if view.runs is None:
            self._spinner.update(text=Text(lines[0]))
            return self._spinner
        total = view.rows + (view.left or 0)
        bar = ProgressBar(total=max(total, 1), completed=view.rows if total else 1, width=20)
        head = Table.grid(padding=(0, 1))
        head.add_row(bar, Text(lines[0], no_wrap=True, overflow="ellipsis"))
        return Group(head, *(Text(line, no_wrap=True, overflow="ellipsis") for line in lines[1:]))


__all__ = ["MAX_RUN_LINES", "Progress", "RunView", "View", "eta", "final_line", "one_line",
           "overall_line", "run_done_line", "run_line", "terminal_lines"]  # fmt: skip
