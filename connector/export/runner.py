"""Run an export: list runs, plan chunks after each watermark, fetch, commit, report.

Workers: up to ``concurrency`` runs at a time; inside a run, chunks go in step order (so the
watermark is always "everything up to here is committed") and each chunk's pages are fetched several
at a time. Every HTTP request of every worker takes a slot from one shared AIMD limiter
(`connector.export.limiter`), so requests in flight never exceed ``concurrency``.

Per run:

1. ``begin_run``: upsert the run's row in ``runs``; for a rewound run also delete its rows and reset
   its watermark (one transaction).
2. For each chunk ``[lo, hi)``: scan it (one row per step, projected to ``--keys``), then
   ``write_chunk`` commits the rows and the watermark ``hi - 1`` together.
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
stop at their next chunk; the export raises `KeyboardInterrupt` (the CLI exits 130). Every commit
already made is resumable.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..arrow import SchemaPlan
from ..scan import HistoryScan
from ..transport import RetryPolicy
from ..values import history_keys_from_rows
from .checkpoint import EVENTS, StateKey, StreamState
from .limiter import AimdLimiter
from .plan import ExportOptions, plan_run, run_columns
from .progress import Progress
from .sinks.base import Interrupted, Sink, now_iso
from .sinks.dest import Destination, parse_destination, scrub
from .sources import Listing, Missing, iter_runs
from .tables import TIMESTAMP_COLUMN, mark_json_columns, strict_json_value, with_run_columns

if TYPE_CHECKING:
    from ..api import Api, Run

EVENTS_SAMPLES = 100_000


@dataclass
class ExportSummary:
    """What an export did (``to_dict()`` is the ``--json`` output; it never holds a secret)."""

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
    plan: list[dict[str, Any]] = field(default_factory=list)
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


def open_sink(dest: Destination, options: ExportOptions) -> Sink:
    """The sink for a parsed destination."""
    read_only = options.dry_run
    if dest.kind == "duckdb":
        from .sinks.duckdb import DuckDBSink

        return DuckDBSink(
            dest.target, layout=options.layout, full_refresh=options.full_refresh,
            checkpoint=options.checkpoint, read_only=read_only,
        )  # fmt: skip
    if dest.kind == "postgres":
        from .sinks.postgres import PostgresSink

        return PostgresSink(
            dest.target, display=dest.display, layout=options.layout,
            full_refresh=options.full_refresh, checkpoint=options.checkpoint, read_only=read_only,
        )  # fmt: skip
    from .sinks.parquet import ParquetSink

    return ParquetSink(
        dest.target, layout=options.layout, full_refresh=options.full_refresh,
        checkpoint=options.checkpoint, read_only=read_only,
    )  # fmt: skip


def limited_api(api: Api | None, limiter: AimdLimiter, retry: RetryPolicy | None) -> Callable[[], Api]:
    """A factory of one shared `Api` whose transport goes through `limiter` (made on first use)."""
    box: list[Api] = []
    lock = threading.Lock()

    def factory() -> Api:
        with lock:
            if not box:
                from ..api import Api as _Api

                base = api if api is not None else _Api()
                clone = copy.copy(base)
                clone.transport = base.transport.with_gate(limiter)
                if retry is not None:
                    clone.transport.retry = retry
                box.append(clone)
            return box[0]

    return factory


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
        self.sink: Sink | None = None

    # -- entry point -----------------------------------------------------------------------------
    def run(self) -> ExportSummary:
        started = time.monotonic()
        self.sink = open_sink(self.dest, self.options)
        try:
            self.states = self.sink.load_states()
            if self.options.dry_run:
                self._dry_run()
            else:
                self._export()
                if not self.summary.failed:
                    self.sink.finish()
        except KeyboardInterrupt:
            self.summary.interrupted = True
            raise
        finally:
            self.summary.elapsed_s = time.monotonic() - started
            self._transport_stats()
            self.progress.close()
            self.sink.close()
        return self.summary

    def _transport_stats(self) -> None:
        self.summary.limiter = self.limiter.stats()
        try:
            api = self.api_factory() if self._api_used else None
        except Exception:  # no API configured: a local-only export
            api = None
        if api is not None:
            self.summary.requests = api.transport.stats["requests"]
            self.summary.retries = api.transport.stats["retries"]

    @property
    def _api_used(self) -> bool:
        return any(isinstance(s, str) and not _looks_local(s) for s in self.sources)

    def _runs(self, listings: list[Listing]):  # type: ignore[no-untyped-def]
        o = self.options
        return iter_runs(
            self.sources, self.api_factory, filters=o.filters, run_states=o.run_states,
            run_ids=o.run_ids, listings=listings,
        )  # fmt: skip

    # -- dry run ---------------------------------------------------------------------------------
    def _dry_run(self) -> None:
        listings: list[Listing] = []
        for run in self._runs(listings):
            if isinstance(run, Missing):
                self.summary.deleted_upstream.append(f"{run.entity}/{run.project}/{run.run_id}")
                continue
            plan = plan_run(run, self.states.get(self._key(run)), self.options)
            self.summary.runs += 1
            self.summary.plan.append(plan.describe())
            if plan.action == "rewound":
                self.summary.rewound.append(plan.path)
        self.summary.deleted_upstream += [s.key.run_path for s in self._deleted(listings)]

    def _key(self, run: Run) -> StateKey:
        return StateKey(run.entity, run.project, run.id, "history", self.options.key_set)

    # -- export ----------------------------------------------------------------------------------
    def _export(self) -> None:
        listings: list[Listing] = []
        workers = self.options.concurrency
        pool = ThreadPoolExecutor(workers, thread_name_prefix="wandb-export")
        pending: deque[Future[None]] = deque()
        missing: list[Missing] = []
        try:
            for run in self._runs(listings):
                if isinstance(run, Missing):
                    missing.append(run)
                    continue
                while len(pending) >= 2 * workers:
                    self._drain(pending, block=True)
                if self.stop.is_set():
                    break
                pending.append(pool.submit(self._export_run, run))
            while pending:
                self._drain(pending, block=True)
            gone = self._deleted(listings) + self._named_missing(missing)
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

    def _drain(self, pending: deque[Future[None]], *, block: bool) -> None:
        done, _ = wait(list(pending), timeout=0.25 if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            pending.remove(future)
            future.result()

    def _deleted(self, listings: list[Listing]) -> list[StreamState]:
        out = []
        for listing in listings:
            if not (listing.exhaustive and listing.complete):
                continue
            for state in self.states.values():
                k = state.key
                if (k.entity, k.project) == (listing.entity, listing.project) and k.run_id not in listing.seen:
                    if state.deleted_at is None:
                        out.append(state)
        return out

    def _named_missing(self, missing: list[Missing]) -> list[StreamState]:
        ids = {(m.entity, m.project, m.run_id) for m in missing}
        return [
            s for s in self.states.values()
            if (s.key.entity, s.key.project, s.key.run_id) in ids and s.deleted_at is None
        ]  # fmt: skip

    def _export_run(self, run: Run) -> None:
        if self.stop.is_set():
            return
        path = f"{run.entity}/{run.project}/{run.id}"
        try:
            self._export_history(run)
            if self.options.include_system_metrics and not self.stop.is_set():
                self._export_events(run)
        except (Interrupted, KeyboardInterrupt):
            self.stop.set()
        except Exception as exc:  # one failed run does not stop the others
            secret = self.dest.password
            with self._lock:
                self.summary.failed[path] = scrub(f"{type(exc).__name__}: {exc}", secret)
        finally:
            self.progress.run_done(path)

    def _export_history(self, run: Run) -> None:
        assert self.sink is not None
        o = self.options
        key = self._key(run)
        prior = self.states.get(key)
        plan = plan_run(run, prior, o)
        self.progress.planned(1, plan.estimated_rows)
        self.progress.run_started(plan.path, plan.estimated_rows)
        with self._lock:
            self.summary.runs += 1
            if plan.action == "rewound":
                self.summary.rewound.append(plan.path)
        reset: list[StreamState] = []
        rewinds = prior.rewinds if prior is not None else 0
        if plan.action == "rewound":
            rewinds += 1
            reset = [StreamState(key, rewinds=rewinds, keys=o.keys, layout=o.layout)]
        self.sink.begin_run(_runs_row(run), reset)
        if not plan.chunks:
            with self._lock:
                self.summary.runs_up_to_date += 1
            if prior is not None and (prior.run_state != run.state or prior.deleted_at):
                self.sink.commit_state([prior.evolve(run_state=run.state, deleted_at=None)])
            return
        columns = run_columns(run, o.keys)
        history_keys = run.history_keys
        # Steps above the committed watermark cannot be in the destination yet (rows and watermark
        # commit together), so those chunks are plain inserts; lag re-reads merge.
        committed = prior.watermark if prior is not None and plan.action != "rewound" else -1
        for window in plan.chunks:
            if self.stop.is_set():
                raise Interrupted("interrupted")
            scan = HistoryScan(
                run.source,
                columns=tuple(columns) if columns is not None else None,
                min_step=window.lo,
                max_step=window.hi,
                page_size=o.page_size,
                concurrency=o.concurrency,
                known_keys=history_keys,
            )
            json_columns = {name for name, kind in scan.plan.kinds if kind == "json"}
            table = mark_json_columns(scan.to_arrow(), json_columns)
            table = with_run_columns(table, run.entity, run.project, run.id)
            state = StreamState(
                key,
                watermark=window.hi - 1,
                last_step=plan.last_step,
                line_count=plan.line_count,
                run_state=run.state,
                rewinds=rewinds,
                keys=o.keys,
                layout=o.layout,
                chunk_steps=plan.chunk_steps,
            )
            rows = self.sink.write_chunk(
                "history", table, state, lo=window.lo, hi=window.hi, stop=self.stop,
                fresh=window.lo > committed,
            )
            committed = window.hi - 1
            self.progress.rows(plan.path, rows)
            with self._lock:
                self.summary.rows += rows
                self.summary.chunks += 1
        with self._lock:
            self.summary.runs_exported += 1

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
        table = with_run_columns(table, run.entity, run.project, run.id)
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


def _looks_local(source: str) -> bool:
    from ..resolve import is_local_path

    return is_local_path(source)


__all__ = ["EVENTS_SAMPLES", "ExportSummary", "Exporter", "events_table", "open_sink"]
