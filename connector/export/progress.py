"""Progress of an export: per run and overall rows, rows/s and ETA.

On a terminal (`stream.isatty()`) a block of lines is redrawn at most `hz` times a second on stderr:
one line per run in flight and an overall line. Elsewhere nothing is drawn until `close()` (the CLI
prints its summary). ``quiet=True`` draws nothing at all. Progress shows run paths and counts only,
never a URL, a key or a password.

ETA = (estimated rows left) / (overall rows/s), where a run's estimate is its history line count
scaled to the share of its step span being fetched.

>>> import io
>>> p = Progress(stream=io.StringIO(), quiet=False)
>>> p.run_started("e/p/r", 100); p.rows("e/p/r", 50); p.run_done("e/p/r")
>>> p.total_rows, p.runs_done
(50, 1)
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class _RunProgress:
    estimate: int
    rows: int = 0
    started: float = field(default_factory=time.monotonic)


def _rate(rows: int, seconds: float) -> float:
    return rows / seconds if seconds > 0 else 0.0


def _eta(left: int, rate: float) -> str:
    if rate <= 0 or left <= 0:
        return "--:--"
    s = int(left / rate)
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


class Progress:
    """Thread-safe progress tracker and terminal renderer."""

    def __init__(self, *, stream: TextIO | None = None, quiet: bool = False, hz: float = 4.0, max_lines: int = 8) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) and not quiet
        self.interval = 1.0 / hz
        self.max_lines = max_lines
        self._lock = threading.Lock()
        self._runs: dict[str, _RunProgress] = {}
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._drawn = 0
        self.total_rows = 0
        self.estimate = 0
        self.runs_done = 0
        self.runs_total = 0

    def planned(self, runs: int, estimate: int) -> None:
        with self._lock:
            self.runs_total += runs
            self.estimate += estimate

    def run_started(self, path: str, estimate: int) -> None:
        with self._lock:
            self._runs[path] = _RunProgress(estimate)
        self._maybe_draw()

    def rows(self, path: str, n: int) -> None:
        with self._lock:
            run = self._runs.get(path)
            if run is not None:
                run.rows += n
            self.total_rows += n
        self._maybe_draw()

    def run_done(self, path: str) -> None:
        with self._lock:
            run = self._runs.pop(path, None)
            if run is not None and run.estimate > run.rows:
                self.estimate -= run.estimate - run.rows  # the estimate was high: correct the ETA
            self.runs_done += 1
        self._maybe_draw()

    def lines(self) -> list[str]:
        """The lines a terminal shows (also handy in tests)."""
        now = time.monotonic()
        with self._lock:
            out = []
            for path, run in list(self._runs.items())[: self.max_lines]:
                rate = _rate(run.rows, now - run.started)
                left = max(0, run.estimate - run.rows)
                out.append(f"  {path:<40.40} {run.rows:>10,} rows {rate:>9,.0f}/s  ETA {_eta(left, rate)}")
            rate = _rate(self.total_rows, now - self._start)
            left = max(0, self.estimate - self.total_rows)
            out.append(
                f"export: {self.runs_done}/{self.runs_total} runs  {self.total_rows:,} rows  "
                f"{rate:,.0f} rows/s  ETA {_eta(left, rate)}"
            )
        return out

    def _maybe_draw(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        lines = self.lines()
        clear = "\x1b[F\x1b[2K" * self._drawn
        self.stream.write(clear + "\n".join(lines) + "\n")
        self.stream.flush()
        self._drawn = len(lines)

    def close(self) -> None:
        if self.tty:
            self._maybe_draw(force=True)
