"""Run an export: check the destination, list runs, check the request, plan, fetch, commit, report.

Order of work, so that problems surface before anything is written:

1. **Open the destination** (`open_sink`): its form, permissions, a corrupt state file and its lock
   (another export running: `DestinationBusyError`) are checked before any API request. Nothing is
   created yet but the lock.
2. **List every run** of every source (progress shows the count). A run named by path that does not
   exist, a ``--run`` id the listing did not return, a project (or filter) with no runs, and a
   ``--keys`` key that no listed run logged are `ConfigurationError` s with a "did you mean" list,
   unless ``allow_missing``. A named run that is gone but was exported before is "deleted upstream"
   (its data is kept), not an error. Totals are known before the first run starts.
3. **Plan** each run after its watermark (`connector.export.plan`), then create the tables and export.

Workers: up to ``concurrency`` runs at a time; inside a run, chunks go in plan order (so the
watermark is always "everything in ``[min_step, watermark]`` is committed") and each chunk's pages are
fetched several at a time. Every HTTP request of every worker takes a slot from one shared AIMD
limiter (`connector.export.limiter`), so requests in flight never exceed ``concurrency``.

Per run:

1. ``begin_run``: upsert the run's row in ``runs``; for a rewound run also delete its rows and reset
   every watermark of the run (each key set and layout; one transaction).
2. For each chunk ``[lo, hi)``: scan it (one row per step, projected to ``--keys``), then
   ``write_chunk`` commits the rows and the watermark together. Chunks above every watermark of the
   run (any key set) are plain inserts; the others merge on (run, ``_step``), so another key set's
   rows are completed, never duplicated.
3. ``--include-system-metrics``: the ``events`` stream (see below).

**System metrics** (``events``) have no ``_step``: the API returns the whole stream, *downsampled by
the server* to at most ``samples`` rows, with no way to ask for a time range. Their watermark is the
last ``_timestamp`` committed; each export fetches the stream again (skipped for runs that were not
running and have not changed since the last commit) and keeps rows with ``_timestamp`` above the
watermark, merged on (run, ``_timestamp``). What it can guarantee: no duplicates, and every row
the API returned is kept. What it cannot: completeness (rows the server's sampling dropped are
never seen; a run with more events than `EVENTS_SAMPLES` is sampled), stability (a later export of a
running run may be sampled differently, so earlier exported rows are not re-checked), and rows that
share a timestamp (the last one wins).

Runs deleted upstream keep their exported data; their state gets ``deleted_at`` (and the summary
lists them) when an unfiltered project listing no longer returns them, or a run named by path is
not found.

Ctrl-C: the main thread sets a stop flag; a worker about to commit rolls back instead, the others
stop at their next chunk; the export raises `ExportInterrupted` (a `KeyboardInterrupt` carrying the
summary of what was committed; the CLI exits 130). Every commit already made is resumable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..core.arrow import SchemaPlan
from ..core.columns import check_keys, did_you_mean
from ..core.values import history_keys_from_rows, strict_json_value
from ..core.windows import MAX_SAMPLES
from ..errors import ConfigurationError
from ..remote.transport import RetryPolicy
from .checkpoint import EVENTS, STEP_STREAMS, StateKey, StreamState
from .chunks import read_chunks, rewinds_of
from .limiter import AimdLimiter
from .listing import Damaged, Listing, Missing, iter_runs
from .plan import ExportOptions, RunPlan, plan_run
from .progress import Progress
from .sinks.base import Interrupted, Sink, now_iso
from .sinks.dest import Destination, parse_destination, scrub
from .tables import TIMESTAMP_COLUMN, name_columns, with_key_names, with_run_columns

if TYPE_CHECKING:
    from ..api import Api, LazyApi, Run

EVENTS_SAMPLES = MAX_SAMPLES  # the most one request may ask (connector.core.windows)
log = logging.getLogger("connector.export")


@dataclass
class ExportSummary:
    """What an export did (``to_dict()`` is the ``--json`` output; it never holds a secret).

    `results` has one entry per run: ``{"run", "status", "rows", "steps", "watermark", "error"}``
    with ``status`` one of ``exported``, ``up-to-date``, ``failed``, ``skipped`` (a damaged local
    file with ``skip_damaged``), ``planned`` (dry run).
    """

    destination: str
    dry_run: bool = False
    runs: int = 0
    runs_exported: int = 0
    runs_up_to_date: int = 0
    rows: int = 0
    chunks: int = 0
    event_rows: int = 0
    rewound: list[str] = field(default_factory=list)
    deleted_upstream: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, str] = field(default_factory=dict)
    replaces: list[str] = field(default_factory=list)
    plan: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    limiter: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    interrupted: bool = False

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rows_per_s"] = round(self.rows_per_s, 1)
        out["elapsed_s"] = round(self.elapsed_s, 3)
        return out


class ExportInterrupted(KeyboardInterrupt):
    """Ctrl-C during an export; `summary` tells what was committed before it (all of it is kept)."""

    def __init__(self, summary: ExportSummary) -> None:
        super().__init__("interrupted")
        self.summary = summary


SINKS = {
    "duckdb": ("duckdb", "DuckDBSink"),
    "postgres": ("postgres", "PostgresSink"),
    "delta": ("delta", "DeltaSink"),
    "iceberg": ("iceberg", "IcebergSink"),
    "parquet": ("parquet", "ParquetSink"),
}  # destination kind -> (module of connector.export.sinks, class), imported only when used


def open_sink(dest: Destination, options: ExportOptions) -> Sink:
    """The sink for a parsed destination: checked, locked, nothing created but the lock."""
    import importlib

    module, name = SINKS[dest.kind]
    sink_class = getattr(importlib.import_module(f".sinks.{module}", __package__), name)
    extra = {"display": dest.display} if dest.kind == "postgres" else {}
    sink: Sink = sink_class(
        dest.target, layout=options.layout, full_refresh=options.full_refresh,
        checkpoint=options.checkpoint, read_only=options.dry_run, **extra,
    )  # fmt: skip
    return sink


def limited_api(api: Api | None, limiter: AimdLimiter, retry: RetryPolicy | None) -> LazyApi:
    """One shared `Api` (`api`, else `connector.api.default_api`), made on first use, whose transport
    goes through `limiter` and retries with `retry` (when given); `api` itself is left as it is."""
    from ..api import LazyApi

    def gated(base: Api) -> Api:
        transport = base.transport.with_gate(limiter)
        if retry is not None:
            transport.retry = retry
        return base.with_transport(transport)

    return LazyApi(api, gated)


def _one_line(exc: BaseException, secret: str | None) -> str:
    """``Type: first line of the message``, secrets removed (the full text goes to the debug log)."""
    text = str(exc).strip().splitlines()
    return scrub(f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": "), secret)


class Exporter:
    """One export: the options, the sink, the workers. Use `connector.export.export`."""

    def __init__(
        self,
        sources: Sequence[Any],
        to: str,
        options: ExportOptions,
        *,
        api: Api | None = None,
        retry: RetryPolicy | None = None,
        progress: Progress | None = None,
        engine: str = "local",
    ) -> None:
        self.sources = list(sources)
        self.dest = parse_destination(to)
        self.options = options
        self.limiter = AimdLimiter(options.concurrency)
        self.api_factory = limited_api(api, self.limiter, retry)
        self.progress = progress or Progress(quiet=True)
        self.summary = ExportSummary(self.dest.display, dry_run=options.dry_run)
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.states: dict[StateKey, StreamState] = {}
        self.live_states: dict[StateKey, StreamState] = {}
        self.sink: Sink | None = None
        # The one seam between engines: "the chunks of this plan", read in-process, by worker
        # processes (`connector.export.process_engine`) or by Ray tasks (`connector.export.ray_engine`);
        # writes and commits stay here, in the same order.
        self.read_chunks: Any = read_chunks
        if engine == "ray":
            from .ray_engine import RayChunkReader, ray_installed

            if options.dry_run:  # a plan reads no chunk: check the engine, start no cluster
                ray_installed()
            else:
                self.read_chunks = RayChunkReader(self.api_factory, concurrency=options.concurrency, retry=retry)
        elif engine == "processes" and not options.dry_run:
            from .process_engine import ProcessChunkReader

            self.read_chunks = ProcessChunkReader(self.api_factory, concurrency=options.concurrency, retry=retry)
        elif engine not in ("local", "processes"):
            raise ConfigurationError(f"engine must be 'local', 'processes' or 'ray', got {engine!r}")

    # -- entry point -----------------------------------------------------------------------------
    def run(self) -> ExportSummary:
        started = time.monotonic()
        self.sink = open_sink(self.dest, self.options)
        try:
            self.live_states = self.sink.load_states()
            self.states = {} if self.options.full_refresh else dict(self.live_states)
            runs, missing, listings = self._list()
            if self.options.dry_run:
                self._dry_run(runs, missing, listings)
            else:
                self.sink.prepare()
                self._export(runs, missing, listings)
                if not self.summary.failed and not self.stop.is_set():
                    self.sink.finish()
        except KeyboardInterrupt:
            self.stop.set()
            self.summary.interrupted = True
            raise ExportInterrupted(self.summary) from None
        finally:
            self.summary.elapsed_s = time.monotonic() - started
            self._transport_stats()
            self.progress.close()
            self.sink.close()
            getattr(self.read_chunks, "close", lambda: None)()
        return self.summary

    def _transport_stats(self) -> None:
        self.summary.limiter = self.limiter.stats()
        if self.api_factory.made:  # never made: no request went through it
            api = self.api_factory()
            self.summary.requests = api.transport.stats["requests"]
            self.summary.retries = api.transport.stats["retries"]
        if self.read_chunks is not read_chunks:  # the tasks' requests, and their shared limiter
            self.summary.requests += self.read_chunks.stats["requests"]
            self.summary.retries += self.read_chunks.stats["retries"]
            self.summary.limiter = self.read_chunks.limiter_stats() or self.summary.limiter

    # -- listing and checks ----------------------------------------------------------------------
    def _list(self) -> tuple[list[Run], list[Missing], list[Listing]]:
        o = self.options
        listings: list[Listing] = []
        runs: list[Run] = []
        missing: list[Missing] = []
        seen: set[tuple[str, str, str]] = set()
        for item in iter_runs(
            self.sources, self.api_factory, filters=o.filters, run_states=o.run_states,
            run_ids=o.run_ids, listings=listings, skip_damaged=o.skip_damaged,
        ):  # fmt: skip
            if isinstance(item, Missing):
                missing.append(item)
            elif isinstance(item, Damaged):
                status = "skipped" if o.skip_damaged else "failed"
                self._result(item.path, status, error=item.error)
                self.progress.run_done(item.path, status, 0, item.error)
            else:
                ident = (item.entity, item.project, item.id)
                if ident not in seen:  # a run named twice (or by path and by project) is exported once
                    seen.add(ident)
                    runs.append(item)
            self.progress.listing(len(runs))
        self._check_request(runs, missing, listings)
        return runs, missing, listings

    def _check_request(self, runs: list[Run], missing: list[Missing], listings: list[Listing]) -> None:
        """Typos are errors: unknown runs, empty listings, unknown keys (unless allow_missing)."""
        o = self.options
        if o.allow_missing:
            return
        exported_before = {(s.key.entity, s.key.project, s.key.run_id) for s in self.live_states.values()}
        for m in missing:
            if (m.entity, m.project, m.run_id) not in exported_before:
                raise ConfigurationError(
                    f"run {m.entity}/{m.project}/{m.run_id} not found (pass --allow-missing to skip missing runs)"
                )
        if o.run_ids and listings:
            listed = set().union(*(listing.seen for listing in listings))
            for run_id in o.run_ids:
                if run_id not in listed:
                    raise ConfigurationError(
                        f"--run {run_id!r} is not a run of "
                        + ", ".join(f"{x.entity}/{x.project}" for x in listings)
                        + did_you_mean(run_id, listed)
                        + " (pass --allow-missing to skip missing runs)"
                    )
        for listing in listings:
            if not listing.seen:
                what = "matches the filters in" if not listing.exhaustive else "exists in"
                raise ConfigurationError(
                    f"no run {what} project {listing.entity}/{listing.project} (pass --allow-missing "
                    "to accept an empty export)"
                )
        if o.keys:
            logged = {"/".join(run.path): run.history_keys for run in runs}
            check_keys(o.keys, logged, hint="pass --allow-missing to export it anyway")

    # -- dry run ---------------------------------------------------------------------------------
    def _dry_run(self, runs: list[Run], missing: list[Missing], listings: list[Listing]) -> None:
        for run in runs:
            plan = self._plan(run)
            self.summary.runs += 1
            described = plan.describe()
            if self.options.full_refresh and self._run_states(run, self.live_states):
                described["action"] = "replace"
                described["notes"].append("its exported rows and checkpoints are replaced when the refresh completes")
                self.summary.replaces.append(plan.path)
            self.summary.plan.append(described)
            self._result(plan.path, "planned", steps=described["steps"])
            if plan.action == "rewound":
                self.summary.rewound.append(plan.path)
        self.summary.deleted_upstream += [s.key.run_path for s in self._gone(listings, missing)]

    def _key(self, run: Run) -> StateKey:
        return StateKey(run.entity, run.project, run.id, self.options.stream, self.options.key_set)

    def _run_states(self, run: Run, states: dict[StateKey, StreamState], streams: Sequence[str] = STEP_STREAMS) -> list[StreamState]:
        return [
            s for k, s in states.items()
            if (k.entity, k.project, k.run_id) == (run.entity, run.project, run.id) and k.stream in streams
        ]  # fmt: skip

    def _plan(self, run: Run) -> RunPlan:
        same_stream = self._run_states(run, self.states, (self.options.stream,))
        chunk_steps = next((s.chunk_steps for s in same_stream if s.chunk_steps), None)
        return plan_run(run, self.states.get(self._key(run)), self.options, chunk_steps=chunk_steps)

    # -- export ----------------------------------------------------------------------------------
    def _export(self, runs: list[Run], missing: list[Missing], listings: list[Listing]) -> None:
        plans = [self._plan(run) for run in runs]
        self.progress.planned(len(plans), sum(p.estimated_rows for p in plans))
        workers = self.options.concurrency
        pool = ThreadPoolExecutor(workers, thread_name_prefix="wandb-export")
        pending: deque[Future[None]] = deque()
        try:
            for plan in plans:
                while len(pending) >= 2 * workers:
                    self._drain(pending)
                if self.stop.is_set():
                    break
                pending.append(pool.submit(self._export_run, plan))
            while pending:
                self._drain(pending)
            gone = [] if self.options.full_refresh else self._gone(listings, missing)
            if gone and not self.stop.is_set():
                stamp = now_iso()
                marked = [s.evolve(deleted_at=stamp) for s in gone]
                assert self.sink is not None
                self.sink.commit_state(marked)
                self.summary.deleted_upstream += sorted({s.key.run_path for s in marked})
        except KeyboardInterrupt:
            self.stop.set()
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if self.stop.is_set():
            raise KeyboardInterrupt

    def _drain(self, pending: deque[Future[None]]) -> None:
        done, _ = wait(list(pending), timeout=0.25, return_when=FIRST_COMPLETED)
        for future in done:
            pending.remove(future)
            future.result()

    def _gone(self, listings: list[Listing], missing: list[Missing]) -> list[StreamState]:
        """Committed states of runs deleted upstream (not yet marked)."""
        named = {(m.entity, m.project, m.run_id) for m in missing}
        out = []
        for state in self.states.values():
            k = state.key
            if state.deleted_at is not None:
                continue
            if (k.entity, k.project, k.run_id) in named:
                out.append(state)
                continue
            for listing in listings:
                if (
                    listing.exhaustive and listing.complete
                    and (k.entity, k.project) == (listing.entity, listing.project)
                    and k.run_id not in listing.seen
                ):  # fmt: skip
                    out.append(state)
                    break
        return out

    def _result(self, path: str, status: str, *, rows: int = 0, steps: Any = None,
                watermark: int | None = None, error: str | None = None) -> None:  # fmt: skip
        with self._lock:
            self.summary.results.append(
                {"run": path, "status": status, "rows": rows, "steps": steps, "watermark": watermark, "error": error}
            )
            if status == "failed":
                self.summary.failed[path] = error or "failed"
            elif status == "skipped":
                self.summary.skipped[path] = error or "skipped"

    def _export_run(self, plan: RunPlan) -> None:
        if self.stop.is_set():
            return
        run = plan.run
        status, error, rows, watermark = "exported", None, 0, None
        try:
            rows, watermark = self._export_history(plan)
            if rows == 0 and not plan.ranges:
                status = "up-to-date"
            if self.options.include_system_metrics and not self.stop.is_set():
                self._export_events(run)
        except (Interrupted, KeyboardInterrupt):
            self.stop.set()
            status = "interrupted"
        except Exception as exc:  # one failed run does not stop the others
            status, error = "failed", _one_line(exc, self.dest.password)
            log.debug("export of %s failed", plan.path, exc_info=True)
        steps = plan.steps
        if status != "interrupted":
            self._result(plan.path, status, rows=rows, steps=steps, watermark=watermark, error=error)
            detail = error or (f"steps [{steps[0]}, {steps[1]})" if steps else "")
            self.progress.run_done(plan.path, status, rows, detail)

    def _export_history(self, plan: RunPlan) -> tuple[int, int | None]:
        assert self.sink is not None
        o = self.options
        run = plan.run
        key = plan.key
        prior = plan.prior
        self.progress.run_started(plan.path, plan.estimated_rows)
        with self._lock:
            self.summary.runs += 1
            if plan.action == "rewound":
                self.summary.rewound.append(plan.path)
        reset: list[StreamState] = []
        if plan.action == "rewound":
            rewinds = rewinds_of(plan)
            # the run's rows go from both history tables: every watermark of the run starts over
            reset = [StreamState(s.key, rewinds=s.rewinds + (s.key == key), keys=s.keys, layout=s.layout)
                     for s in self._run_states(run, self.states)]  # fmt: skip
            if not any(s.key == key for s in reset):
                reset.append(StreamState(key, rewinds=rewinds, keys=o.keys, layout=o.layout))
        self.sink.begin_run(_runs_row(run), reset)
        watermark = None if prior is None or prior.watermark is None else int(prior.watermark)
        if not plan.ranges:
            with self._lock:
                self.summary.runs_up_to_date += 1
            if prior is not None and (prior.run_state != run.state or prior.deleted_at):
                self.sink.commit_state([prior.evolve(run_state=run.state, deleted_at=None)])
            return 0, watermark
        # Steps above every committed watermark of the run (any key set) cannot be in the table yet
        # (rows and watermarks commit together), so those chunks are plain inserts; the rest merge.
        floor = -1
        if plan.action != "rewound":
            marks = [s.watermark for s in self._run_states(run, self.states, (o.stream,)) if s.watermark is not None]
            floor = int(max(marks)) if marks else -1
        total = 0
        for chunk in self.read_chunks(plan, o, stop=self.stop):
            assert chunk.state.watermark is not None  # a chunk's state always has its watermark
            watermark = int(chunk.state.watermark)
            if chunk.table is None:  # no rows at the end of the range: the state still moves on
                self.sink.commit_state([chunk.state])
                continue
            rows = self.sink.write_chunk(
                "history", chunk.table, chunk.state, lo=chunk.lo, hi=chunk.hi, stop=self.stop, fresh=chunk.lo > floor,
            )  # fmt: skip
            floor = max(floor, chunk.hi - 1)
            total += rows
            self.progress.rows(plan.path, rows)
            with self._lock:
                self.summary.rows += rows
                self.summary.chunks += 1
        self._check_line_count(plan, total)
        with self._lock:
            self.summary.runs_exported += 1
        return total, watermark

    def _check_line_count(self, plan: RunPlan, rows: int) -> None:
        """A whole-run export whose row count disagrees with ``historyLineCount`` beyond its
        staleness allowance (`connector.core.scan.LINE_COUNT_SLACK_ROWS` / `_SHARE`) is reported: the
        count is a hint, never a proof, so this warns (summary ``warnings``) and does not fail."""
        from ..core.scan import LINE_COUNT_SLACK_ROWS, LINE_COUNT_SLACK_SHARE

        o, lines = self.options, plan.line_count
        whole = plan.action in ("new", "rewound") and o.min_step == 0 and o.max_step is None
        if not whole or lines is None:
            return
        slack = max(LINE_COUNT_SLACK_ROWS, int(LINE_COUNT_SLACK_SHARE * lines))
        if rows > lines and plan.run.state == "running":
            return  # the run kept logging after it was listed
        if abs(rows - lines) > slack:
            text = f"exported {rows} rows but the server reports historyLineCount {lines}"
            log.warning("%s: %s", plan.path, text)
            with self._lock:
                self.summary.warnings[plan.path] = text

    def _export_events(self, run: Run) -> None:
        assert self.sink is not None
        key = StateKey(run.entity, run.project, run.id, EVENTS, "*")
        prior = self.states.get(key)
        last = (run.history_keys or {}).get("lastStep")
        if (
            prior is not None
            and prior.run_state != "running"
            and run.state != "running"
            and prior.last_step == last
            and prior.line_count == run.history_line_count
        ):
            return  # nothing can have changed
        rows = run.history(samples=EVENTS_SAMPLES, pandas=False, stream="system")
        table, watermark = events_table(rows, None if prior is None else prior.watermark)
        state = StreamState(
            key,
            watermark=watermark,
            last_step=last if isinstance(last, int) else None,
            line_count=run.history_line_count,
            run_state=run.state,
        )
        if table is None:
            self.sink.commit_state([state])
            return
        assert watermark is not None  # rows came, so they set the watermark
        table, renamed = name_columns(table, (TIMESTAMP_COLUMN, "_extra"))
        table = with_key_names(with_run_columns(table, run.entity, run.project, run.id), renamed)
        lo = prior.watermark if prior is not None and prior.watermark is not None else float("-inf")
        n = self.sink.write_chunk(EVENTS, table, state, lo=lo, hi=watermark, stop=self.stop)
        with self._lock:
            self.summary.event_rows += n


def events_table(rows: list[dict[str, Any]], watermark: float | None) -> tuple[pa.Table | None, float | None]:
    """System-metric rows after `watermark` as an Arrow table (no ``_step``), and the new watermark.

    >>> t, wm = events_table([{"_timestamp": 2.0, "system.cpu": 5.0}, {"_timestamp": 1.0}], 1.0)
    >>> t.column_names, t.num_rows, wm
    (['_timestamp', 'system.cpu', '_extra'], 1, 2.0)
    """
    floor = float("-inf") if watermark is None else float(watermark)
    by_ts: dict[float, dict[str, Any]] = {}
    for row in rows:
        ts = row.get(TIMESTAMP_COLUMN)
        if isinstance(ts, int | float) and not isinstance(ts, bool) and ts > floor:
            by_ts[float(ts)] = {**row, "_step": 0}
    if not by_ts:
        return None, watermark
    ordered = [by_ts[t] for t in sorted(by_ts)]
    plan = SchemaPlan.from_history_keys(history_keys_from_rows(ordered))
    table = pa.Table.from_batches([plan.to_batch(ordered)]).drop_columns(["_step"])
    return table, max(by_ts)


def _runs_row(run: Run) -> dict[str, Any]:
    """The run's `runs` row; config and summary as strict JSON (non-finite floats as strings)."""
    import json

    row = run.to_dict()
    row["config"] = json.dumps(strict_json_value(row["config"]), sort_keys=True, allow_nan=False)
    row["summary"] = json.dumps(strict_json_value(row["summary"]), sort_keys=True, allow_nan=False)
    return row


__all__ = ["EVENTS_SAMPLES", "ExportInterrupted", "ExportSummary", "Exporter", "events_table", "open_sink"]
