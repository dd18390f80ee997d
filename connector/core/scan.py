"""`HistoryScan`: plans step windows, fetches them with bounded concurrency, yields them in order.

A scan is an immutable description (run, keys or columns, step window, page size). Iterating it gives
SDK-shaped dict rows; `to_batches()` and the other terminal methods give Arrow with one fixed schema
(see `connector.core.arrow`). Each iteration starts again from `min_step`.

Three modes:

* full rows (no keys): every row in the window;
* **keys** (`Run.scan_history(keys=[...])`): the SDK's all-keys rule — only rows holding every key;
* **columns** (`Run.scan(columns=[...])`, Polars, DuckDB, export): keys select columns and never
  change which rows come back — one row per step, with nulls where a key was not logged.

Memory is bounded by ``concurrency × page_size`` rows, not by the length of the run.

Pages are checked as they are assembled: besides the per-answer checks of the source (see
`connector.remote.source`), every page must start after the last step of the page before it, so no step
comes back twice in one scan; a row set Arrow cannot hold is an error naming the run and the window.
Errors are `ProtocolError` for the W&B API (`RowError` for other sources), with the cause attached.

`historyLineCount` is a hint, never a reason to fail: when a complete full scan (full rows, the whole
run) reads a number of rows that differs from it by more than the staleness allowance,
``max(LINE_COUNT_SLACK_ROWS, LINE_COUNT_SLACK_SHARE × historyLineCount)`` (10 rows or 1%), a WARNING
names the run and both numbers. More rows than promised are expected of a running run and not
reported for one.

>>> from connector.core.rundata import MemoryRun, RunMeta
>>> from connector.local.source import LocalSource
>>> run = MemoryRun(RunMeta("e", "p", "r"), rows=[{"_step": i, "loss": i / 2} for i in range(5)])
>>> scan = HistoryScan(LocalSource(run), min_step=1, max_step=3)
>>> [row["_step"] for row in scan], scan.to_arrow().num_rows
([1, 2], 2)
"""

from __future__ import annotations

import copy
import logging
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import ConfigurationError, ConnectorError, RowError, TransportError
from .arrow import FLOAT, STEP_COLUMN, SchemaPlan
from .columns import last_step, select_columns
from .decode import DecodePool
from .source import HistorySource, Page, Window
from .values import NONFINITE
from .windows import coalesce_below, plan_windows, window_samples

if TYPE_CHECKING:
    import pandas
    import polars

DEFAULT_CONCURRENCY = 3
#: Rows per page (one API request) unless a caller asks otherwise; every layer's default.
DEFAULT_PAGE_SIZE = 1000
#: The staleness allowance of `historyLineCount` (see the module docstring).
LINE_COUNT_SLACK_ROWS = 10
LINE_COUNT_SLACK_SHARE = 0.01
#: Errors of turning checked rows into Arrow that mean the rows were unusable, not a bug of ours.
_CONVERSION_ERRORS = (
    pa.ArrowException, TypeError, ValueError, OverflowError, RecursionError, MemoryError,
)  # fmt: skip

log = logging.getLogger("connector.core.scan")


@dataclass
class ScanStats:
    """What the last iteration of a scan fetched."""

    pages: int = 0
    rows: int = 0
    bytes: int = 0
    splits: int = 0


@dataclass(frozen=True)
class HistoryScan:
    """A scan of one run's history. Build it with `Run.scan_history` or `Run.scan`."""

    source: HistorySource
    keys: tuple[str, ...] | None = None
    columns: tuple[str, ...] | None = None
    min_step: int = 0
    max_step: int | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    concurrency: int = DEFAULT_CONCURRENCY
    #: `historyKeys` to plan with (schema and first window); None fetches them from the source.
    known_keys: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    #: Worker processes that decode the pages `to_batches` reads (`connector.core.decode`); None:
    #: pages are decoded in this process.
    decode_pool: DecodePool | None = field(default=None, compare=False, repr=False)
    stats: ScanStats = field(default_factory=ScanStats, compare=False, repr=False)
    _state: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.page_size, int) or self.page_size < 1:
            raise ConfigurationError(f"page_size must be a positive integer, got {self.page_size!r}")
        if self.concurrency < 1:
            raise ConfigurationError(f"concurrency must be >= 1, got {self.concurrency!r}")
        for label, value in (("min_step", self.min_step), ("max_step", self.max_step)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ConfigurationError(f"{label} must be an integer, got {value!r}")
        if self.keys is not None and not self.keys:
            object.__setattr__(self, "keys", None)  # keys=[] means every key, as in the SDK
        if self.keys is not None and self.columns is not None:
            raise ConfigurationError("a scan takes keys (all-keys rule) or columns, not both")

    # -- planning -------------------------------------------------------------------------------

    def with_options(self, **changes: Any) -> HistoryScan:
        """A copy of this scan with other options (it plans afresh).

        >>> from connector.core.rundata import MemoryRun, RunMeta
        >>> from connector.local.source import LocalSource
        >>> s = HistoryScan(LocalSource(MemoryRun(RunMeta("e", "p", "r"))))
        >>> s.with_options(min_step=10).min_step
        10
        """
        return replace(self, stats=ScanStats(), _state={}, **changes)

    @property
    def history_keys(self) -> dict[str, Any]:
        """The `historyKeys` this scan planned with (fetched once per scan object)."""
        if "history_keys" not in self._state:
            known = self.known_keys
            self._state["history_keys"] = known if known is not None else self.source.history_keys() or {}
        keys: dict[str, Any] = self._state["history_keys"]
        return keys

    @property
    def plan(self) -> SchemaPlan:
        if "plan" not in self._state:
            hk = self.history_keys
            selected = self.keys if self.keys is not None else self.columns
            if selected is None:
                plan = SchemaPlan.from_history_keys(hk)
            else:
                plan = SchemaPlan.from_history_keys(hk, self._selected_columns())
            self._state["plan"] = plan
        planned: SchemaPlan = self._state["plan"]
        return planned

    def _selected_columns(self) -> list[str]:
        if "selected" not in self._state:
            path = self.source.ref.path
            if self.keys is not None:
                # a key never logged stays: the all-keys rule then yields no rows, as in the SDK
                cols = select_columns(self.history_keys, self.keys, run_path=path, unknown="keep")
            else:
                cols = select_columns(self.history_keys, self.columns or (), run_path=path)
            self._state["selected"] = [STEP_COLUMN, *(cols or ())]
        selected: list[str] = self._state["selected"]
        return selected

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema of every batch of this scan."""
        return self.plan.schema

    def windows(self, *, refresh: bool = True) -> list[Window]:
        """The step windows this scan fetches, in order.

        The schema is fixed for the life of the scan object, but each iteration reads the run's
        last step afresh (as the SDK does), so a re-iterated scan of a live run sees new steps.
        """
        hk = (self.source.history_keys() or {}) if refresh else self.history_keys
        last = last_step(hk)
        stop = last + 1 if self.max_step is None else min(self.max_step, last + 1)
        start = max(self.min_step or 0, 0)
        self._state["whole_run"] = start == 0 and stop == last + 1
        windows = plan_windows(
            start,
            stop,
            page_size=self.page_size,
            line_count=self.source.line_count(),
            probe=self._probe,
        )
        return coalesce_below(windows, self.source.exported_until(), self.page_size)

    def _probe(self, window: Window, samples: int) -> list[int]:
        """The source's step probe; a refused request (HTTP 400: a cap on samples) is asked again
        with fewer samples, and past that the probe gives nothing (it is only a planning hint)."""
        while samples >= 1:
            try:
                return self.source.probe_steps(window, samples)
            except TransportError as exc:
                if exc.status != 400:
                    raise
                samples //= 10
        return []

    # -- fetching -------------------------------------------------------------------------------

    def _fetch_once(self, window: Window, samples: int) -> Page:
        if self.keys is not None:
            return self.source.fetch_keyed(window, self.keys, samples)
        if self.columns is not None:
            return self.source.fetch_columns(window, self._selected_columns()[1:], samples)
        return self.source.fetch_rows(window, samples)

    def _fetch(self, window: Window) -> Page:
        try:
            page = self._fetch_once(window, window_samples(window, self.page_size))
        except TransportError as exc:
            # 400: the server refused the request (a cap on samples or rows nobody publishes):
            # ask for half the window at a time instead of failing
            if exc.status != 400 or window.width <= 1:
                raise
            log.info("run %s: steps [%d, %d) refused (%s); asking for halves", self.source.ref.path, window.lo, window.hi, exc)
            page = Page([], complete=False)
        if page.complete or window.width <= 1:
            return page
        self.stats.splits += 1
        left, right = (self._fetch(half) for half in window.halves())
        return Page(
            left.decode() + right.decode(),
            complete=True,
            nbytes=left.nbytes + right.nbytes,
            shared=left.shared or right.shared,
        )

    def pages(self) -> Generator[Page, None, None]:
        """Fetch the windows, several in flight, and yield their pages in step order (decoded and
        checked, see the module docstring)."""
        inner = self._pages()
        try:
            for _, page in inner:
                yield page
        finally:
            inner.close()

    def _error(self, what: str, window: Window | None = None) -> ConnectorError:
        """The error for unusable rows: `ProtocolError` from the W&B API, `RowError` otherwise."""
        where = f"run {self.source.ref.path}"
        if window is not None:
            where += f", steps [{window.lo}, {window.hi})"
        return self.source.row_error(f"{where}: {what}")

    def _pages(self, offload: bool = False) -> Generator[tuple[Window, Page], None, None]:
        """(window, page) in step order; with `offload`, pages that can be decoded elsewhere
        (`Page.offload`) come undecoded, and the caller checks the order of every page's steps."""
        planned_before = "plan" in self._state
        _ = self.plan  # resolve keys and schema before any page is fetched
        windows = self.windows(refresh=planned_before)
        self.stats.pages = self.stats.rows = self.stats.bytes = self.stats.splits = 0
        previous = [-1 << 63]  # the last step of the pages yielded so far
        if self.concurrency == 1 or len(windows) <= 1:
            for window in windows:
                yield window, self._checked(window, self._fetch(window), previous, offload)
        else:
            pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="wandb-history")
            pending: deque[tuple[Window, Future[Page]]] = deque()
            todo = iter(windows)
            try:
                for window in todo:
                    pending.append((window, pool.submit(self._fetch, window)))
                    if len(pending) >= self.concurrency:
                        break
                while pending:
                    window, future = pending.popleft()
                    page = future.result()
                    for later in todo:
                        pending.append((later, pool.submit(self._fetch, later)))
                        break
                    yield window, self._checked(window, page, previous, offload)
            finally:
                for _, future in pending:
                    future.cancel()
                pool.shutdown(wait=False, cancel_futures=True)
        self._check_line_count()

    def _checked(self, window: Window, page: Page, previous: list[int], offload: bool = False) -> Page:
        """`page` decoded, counted, and checked to start after the previous page's last step."""
        if offload and page.offload() is not None:
            return self._count(page)
        first: Any = None
        last: Any = None
        if page.table is not None:
            steps = page.table.column(STEP_COLUMN)
            if len(steps):
                first, last = steps[0].as_py(), steps[-1].as_py()
            filled = len(steps) > 0
        else:
            try:
                rows = page.decode()
            except RowError as exc:
                raise self._error(str(exc), window) from exc
            filled = bool(rows)
            if filled:
                first, last = rows[0].get("_step"), rows[-1].get("_step")
        if filled and not offload:  # with offload, the caller checks every page's order, once
            self._check_order(window, first, last, previous)
        return self._count(page)

    def _check_order(self, window: Window, first: Any, last: Any, previous: list[int]) -> None:
        """A page's steps start after the previous page's last step (`previous`, updated)."""
        if first.__class__ is not int or last.__class__ is not int:
            raise self._error(f"a row has _step {first!r:.40} / {last!r:.40}, not an integer", window)
        if first <= previous[0]:
            raise self._error(
                f"step {first} comes again or out of order (the page before ended at {previous[0]})",
                window,
            )
        previous[0] = last

    def _check_line_count(self) -> None:
        """WARNING when a complete full scan disagrees with `historyLineCount` (see the docstring)."""
        if self.keys is not None or self.columns is not None or not self._state.get("whole_run"):
            return
        lines = self.source.line_count()
        if lines is None:
            return
        rows = self.stats.rows
        slack = max(LINE_COUNT_SLACK_ROWS, int(LINE_COUNT_SLACK_SHARE * lines))
        if rows < lines - slack or (rows > lines + slack and not getattr(self.source, "running", False)):
            log.warning(
                "run %s: a full scan read %d rows but the run reports historyLineCount %d (more than "
                "%d apart); the server's history answers may be incomplete or the count stale",
                self.source.ref.path, rows, lines, slack,
            )  # fmt: skip

    def _count(self, page: Page) -> Page:
        self.stats.pages += 1
        self.stats.rows += len(page)
        self.stats.bytes += page.nbytes
        return page

    # -- rows -----------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """SDK-shaped rows: nested dicts, media as `_type` dicts, NaN/±inf as floats."""
        float_columns = (
            [n for n, k in self.plan.kinds if k == FLOAT] if self.keys or self.columns else []
        )
        for page in self.pages():
            rows = copy.deepcopy(page.decode()) if page.shared else page.decode()
            for row in rows:
                for name in float_columns:
                    value = row.get(name)
                    if value.__class__ is str and value in NONFINITE:
                        row[name] = NONFINITE[value]
                yield row

    def __next__(self) -> dict[str, Any]:
        """The next row of this scan object's own cursor, so ``next(run.scan_history())`` works as
        with the SDK's iterator. The cursor is separate from ``for`` loops, which each start again
        from `min_step`; it ends (StopIteration) once and stays ended."""
        if "cursor" not in self._state:
            self._state["cursor"] = iter(self)
        return next(self._state["cursor"])

    # -- Arrow and friends ----------------------------------------------------------------------

    def to_batches(self, plan: SchemaPlan | None = None) -> Generator[pa.RecordBatch, None, None]:
        """Stream `pa.RecordBatch`es, one per non-empty page, all of `schema`.

        `plan` converts the pages instead of the scan's own plan: a reader that fixed the column
        types beforehand (the union of many runs, a projection of the run's full plan) gets its
        own schema, with the same checks. Its columns are read from the fetched rows.

        >>> from connector.api import Run
        >>> from connector.core.rundata import MemoryRun, RunMeta
        >>> run = Run.from_run_data(MemoryRun(RunMeta("e", "p", "r"), rows=[{"_step": 0, "a": 1.0}]))
        >>> plan = SchemaPlan((("_step", "int"), ("a", "json")), with_extra=False)
        >>> [b.to_pylist() for b in run.scan(["a"]).to_batches(plan)]
        [[{'_step': 0, 'a': '1.0'}]]
        """
        plan = self.plan if plan is None else plan
        if self.decode_pool is not None:
            yield from self._offloaded_batches(plan, self.decode_pool)
            return
        inner = self._pages()
        try:
            for window, page in inner:
                if len(page):
                    yield self._batch(window, page, plan)
        finally:
            inner.close()

    def _batch(self, window: Window, page: Page, plan: SchemaPlan) -> pa.RecordBatch:
        """`page` (decoded here) as one batch of `plan`'s schema."""
        try:
            conformed = None if page.table is None else plan.conform(page.table)
            return conformed if conformed is not None else plan.to_batch(page.decode())
        except ConnectorError:
            raise
        except _CONVERSION_ERRORS as exc:
            raise self._conversion_error(exc, window) from exc

    def _conversion_error(self, exc: BaseException, window: Window) -> ConnectorError:
        return self._error(f"rows Arrow cannot hold ({type(exc).__name__}: {str(exc)[:200]})", window)

    def _offloaded_batches(self, plan: SchemaPlan, pool: DecodePool) -> Generator[pa.RecordBatch, None, None]:
        """`to_batches` with the pages that can be decoded elsewhere decoded by `pool`'s workers,
        up to twice as many pages in flight as it has workers; batches still come in step order."""
        inner = self._pages(offload=True)
        pending: deque[tuple[Window, Any, Any]] = deque()  # (window, future or batch, job)
        previous = [-1 << 63]

        def finish() -> pa.RecordBatch:
            window, done, job = pending.popleft()
            batch: pa.RecordBatch
            if job is None:  # decoded here
                batch = done
                steps = batch.column(0)
                first, last = (steps[0].as_py(), steps[-1].as_py()) if len(steps) else (None, None)
            else:
                try:
                    batch, first, last = pool.result(done, job, plan)
                except ConnectorError:
                    raise
                except _CONVERSION_ERRORS as exc:
                    raise self._conversion_error(exc, window) from exc
            if len(batch):  # in step order, pages decoded here or elsewhere alike
                self._check_order(window, first, last, previous)
            return batch

        try:
            for window, page in inner:
                if not len(page):
                    continue
                job = page.offload()
                if job is None:
                    pending.append((window, self._batch(window, page, plan), None))
                else:
                    pending.append((window, pool.submit(job, plan), job))
                    page.texts = None  # the worker has them
                while pending and (len(pending) > 2 * pool.processes or pending[0][2] is None):
                    yield finish()
            while pending:
                yield finish()
        finally:
            for _, done, job in pending:
                if job is not None:
                    done.cancel()
            inner.close()

    def to_arrow_batch_reader(self) -> pa.RecordBatchReader:
        """A `pa.RecordBatchReader` over `to_batches()` (single use)."""
        return pa.RecordBatchReader.from_batches(self.schema, self.to_batches())

    def to_arrow(self) -> pa.Table:
        """The whole scan as one `pa.Table`."""
        return pa.Table.from_batches(list(self.to_batches()), schema=self.schema)

    def __arrow_c_schema__(self) -> Any:
        return self.schema.__arrow_c_schema__()

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return self.to_arrow_batch_reader().__arrow_c_stream__(requested_schema)  # type: ignore[no-untyped-call]  # pyarrow-stubs leave it unannotated

    def to_polars(self) -> polars.DataFrame:
        """The whole scan as a `polars.DataFrame`."""
        import polars as pl

        return pl.from_arrow(self.to_arrow())  # type: ignore[return-value]  # a Table converts to a DataFrame

    def to_duckdb(self, con: Any, name: str) -> Any:
        """Fetch this scan and register it in DuckDB as `name` (no pushdown: see connector.duckdb).

        >>> import duckdb
        >>> from connector.api import Run
        >>> from connector.core.rundata import MemoryRun, RunMeta
        >>> run = Run.from_run_data(MemoryRun(RunMeta("e", "p", "r"), rows=[{"_step": 1, "a": 2.0}]))
        >>> run.scan().to_duckdb(duckdb.connect(), "h").sql("SELECT a FROM h").fetchall()
        [(2.0,)]
        """
        con.register(name, self.to_arrow())
        return con

    def to_pandas(self) -> pandas.DataFrame:
        """The whole scan as a `pandas.DataFrame` (needs pandas: ``pip install pandas``)."""
        try:
            import pandas  # noqa: F401
        except ImportError as exc:
            raise ImportError("to_pandas() needs pandas: pip install pandas") from exc
        return self.to_arrow().to_pandas()
