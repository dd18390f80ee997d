"""One command for the performance targets: the connector vs the official SDK 0.31.0.

Run from the repository root (venv active)::

    python benchmarks/run.py --quick   # small sizes, 1 repetition: under 2 minutes on 2 cores
    python benchmarks/run.py --full    # the Targets table's sizes (about 20 min, plus writing a
                                       # 1M-step .wandb file once: cached under benchmarks/.work/)

Writes into ``benchmarks/results/`` (``--out-dir`` to change; ``--no-write`` prints the JSON only):
``run-<mode>.json`` (every measurement, the machine, the load sampled during the run, the targets),
``run-<mode>.md`` (measure | connector | SDK | ratio | target | met?, then every measurement) and
``run-<mode>-rows.png``, ``run-<mode>-rss.png``, ``run-<mode>-export.png`` (matplotlib, from the
``bench`` extra). It never fails on a figure: only when a client returns the wrong number of rows
(or a child process fails).

What runs, against emulator processes started once (``--warm``, ``--parquet-history none``, so both
clients read live pages), each measurement in a fresh child process (peak RSS = the child's
``ru_maxrss``; for the SDK also its ``wandb-core`` helper's ``VmHWM``), the connector and the SDK
reading the same run of the same emulator:

=================  =========================================================================
measure            how (the code reused)
=================  =========================================================================
``scan``           ``run.scan_history().to_arrow()`` vs the SDK's ``for row in
                   run.scan_history()`` (streamed: the SDK's fastest full read), 23 top-level
                   keys per row, at each size of the rows/s-against-steps chart
                   (`bench_scan`'s child and `bench_scan.Bench.measure`); the connector twice:
                   decoding in its process, and with ``Api(processes=2)`` (client
                   ``connector-processes``: pages decoded by worker processes, started by the
                   untimed first page; peak RSS is the scanning process's own)
``scan_latency``   the same at the main size on a second emulator process serving the same run
                   with 50 ms per GraphQL answer (``POST /_emulator/faults {"latency": 0.05}``)
``scan_keyed``     ``scan_history(keys=["loss", "acc", "lr"])``: connector ``to_arrow()`` vs the
                   SDK streamed
``export``         ``wandb-history export PROJECT --to DIR`` (Parquet, the CLI's default
                   concurrency; ``--run`` for a subset) vs the SDK's ``list(run.scan_history())``
                   over the same number of runs in 10 threads; rows/s over the export's own
                   ``elapsed_s`` and the SDK's loop (process wall times are recorded too)
                   (`bench_export.connector_export`, `bench_export.sdk_loop`); the connector
                   twice: ``--engine local`` (one process) and ``--engine processes`` (client
                   ``connector-processes``: one worker process per CPU; its peak RSS is the
                   exporter's own, not its workers')
``rss_export``     peak RSS of ``wandb-history export`` of one run to Parquet, at two sizes
``rss_batches``    peak RSS of ``run.scan().to_batches()`` into ``pyarrow.parquet.ParquetWriter``
``local``          a ``.wandb`` file written by the SDK, into Arrow: ``connector.local.read_run``
                   vs the SDK's protobuf classes (`bench_local_reader.ensure_file` and
                   `bench_local_reader.measure`; the file is cached in ``benchmarks/.work/``)
=================  =========================================================================

Sizes (``--quick`` / ``--full``): full scan 20k / 100k steps, and rows/s against 10k, 20k /
100k, 300k, 1M steps; latency and keyed at the main size; export 10 runs x 2k steps at 2 and 10 runs /
200 runs x 10k steps at 25, 50, 100, 200 runs; RSS streaming at 10k and 100k / 100k and 1M steps;
``.wandb`` 3000 / 1M steps. ``--quick`` sizes are far below the targets' sizes, where fixed costs
(imports, the SDK's ``wandb-core`` start, the first page) weigh more: its "met?" column is indicative.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import bench_export
import bench_local_reader
import bench_scan
from _common import (
    LIVE_PAGES,
    RESULTS,
    ROOT,
    CpuMeter,
    EmulatorProcess,
    child_env,
    command_line,
    machine_info,
    machine_markdown,
    median,
    peak_rss_report,
    run_child,
    write_result,
)

SCRIPT = Path(__file__).resolve()
SPEC = "bench/{project}:runs={runs},steps={steps},keys=20,seed=1"
EXPORT_PROJECT = "bench/export"
PROCESSES = "connector-processes"
"""The connector using worker processes: ``Api(processes=N)`` for scans, ``--engine processes`` for exports."""
EXPORT_ENGINES = {"connector": "local", PROCESSES: "processes"}
"""The connector's export clients and their ``--engine``."""
SCAN_MODES = {"connector": "conn-arrow", PROCESSES: "conn-arrow-procs", "sdk": "sdk-stream"}
"""The scan clients and their `bench_scan` child modes."""
LATENCY_S = 0.05
KEYED = ("loss", "acc", "lr")
SDK_THREADS = 10
MB = 1024.0  # kB per MB
KEY_ENV = bench_scan.KEY_ENV


@dataclass(frozen=True)
class Sizes:
    """The sizes of one mode (``--quick``, ``--full`` or the hidden ``--tiny`` of the test)."""

    name: str
    scan_steps: tuple[int, ...]
    """Sizes of the full scan (rows/s and peak RSS against steps); holds `main` and `large`."""
    main: int
    """The Targets table's 100k row: full scan, latency, keyed."""
    large: int | None
    """The 1M row (``--full`` only)."""
    rss_steps: tuple[int, int]
    """Streaming to Parquet: small and large run, for RSS(large) / RSS(small)."""
    export_runs: int
    export_steps: int
    export_points: tuple[int, ...]
    """Numbers of runs exported (the largest = all of them): export throughput against runs."""
    local_steps: int
    reps: int
    """Repetitions of the main-size scans (everything else runs once)."""
    jobs: int = 1
    """Measurements at a time: 1, except in ``--tiny`` (whose figures only need to exist)."""


SIZES = {
    "tiny": Sizes("tiny", (2_000,), 2_000, None, (1_000, 3_000), 3, 500, (3,), 300, 1, jobs=3),
    "quick": Sizes("quick", (10_000, 20_000), 20_000, None, (10_000, 100_000), 10, 2_000, (2, 10),
                   3_000, 1),
    "full": Sizes("full", (100_000, 300_000, 1_000_000), 100_000, 1_000_000, (100_000, 1_000_000),
                  200, 10_000, (25, 50, 100, 200), 1_000_000, 3),
}  # fmt: skip

TARGETS = {
    "scan": 30.0,
    "scan_large": 30.0,
    "scan_scaling": 0.9,
    "scan_latency": 10.0,
    "scan_keyed": 5.0,
    "export": 10.0,
    "rss_mb": 200.0,
    "rss_flat": 1.3,
    "local": 5.0,
    "local_rss_mb": 300.0,
}


def tag(n: int) -> str:
    """A short name for a number of steps.

    >>> tag(20_000), tag(1_000_000), tag(2_500)
    ('20k', '1m', '2500')
    """
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


# == the measured child of the Parquet-writer case =================================================


def _child_writer(argv: list[str]) -> int:
    """``run.scan().to_batches()`` into ``pyarrow.parquet.ParquetWriter``; one JSON line out."""
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    import pyarrow.parquet as pq

    from connector.api import Api

    run = Api(api_key=os.environ[KEY_ENV], base_url=a.url).run(a.path)
    t1 = time.perf_counter()
    scan = run.scan()
    rows, last = 0, None
    with pq.ParquetWriter(a.out, scan.schema) as writer:
        for batch in scan.to_batches():
            writer.write_batch(batch)
            rows += batch.num_rows
            last = batch.column(batch.schema.get_field_index("_step"))[-1].as_py()
    op = time.perf_counter() - t1
    out = {"rows": rows, "last_step": last, "op_s": op, "import_s": t1 - t0,
           "file_mb": Path(a.out).stat().st_size / 2**20, "rss": peak_rss_report()}  # fmt: skip
    out["ok"] = rows == a.expect and last == a.expect - 1
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 3


# == the run ======================================================================================


class WrongRows(RuntimeError):
    """A client returned the wrong number of rows: the one failure of this command."""


def _check(measure: str, client: str, rows: int, expected: int) -> None:
    if rows != expected:
        raise WrongRows(f"{measure}/{client}: {rows:,} rows, expected {expected:,}")


class LoadSampler:
    """The load average and the machine's busy cores, sampled every `interval` s in a thread."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self, meter: CpuMeter | None) -> None:
        one, five, fifteen = os.getloadavg()
        busy = None
        if meter is not None:
            meter.stop()
            busy = round(meter.busy_s / meter.wall_s, 2) if meter.wall_s else None
        self.samples.append({"t_s": round(time.perf_counter() - self._t0, 1), "load1": one,
                             "load5": five, "load15": fifteen, "busy_cores": busy})  # fmt: skip

    def _loop(self) -> None:
        meter: CpuMeter | None = None
        while True:
            self._sample(meter)
            meter = CpuMeter().start()
            if self._stop.wait(self.interval):
                self._sample(meter)
                return

    def start(self) -> LoadSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, Any]:
        loads = [s["load1"] for s in self.samples]
        busy = [s["busy_cores"] for s in self.samples if s["busy_cores"] is not None]
        return {
            "interval_s": self.interval,
            "load1_min": min(loads), "load1_median": median(loads), "load1_max": max(loads),
            "busy_cores_median": median(busy) if busy else None,
            "busy_cores_max": max(busy) if busy else None,
        }  # fmt: skip


@contextlib.contextmanager
def metered(emu: EmulatorProcess) -> Iterator[dict[str, float]]:
    """Machine busy CPU and the emulator's CPU over a block, into the yielded dict."""
    out: dict[str, float] = {"load1": os.getloadavg()[0]}
    server0 = emu.cpu_seconds()
    meter = CpuMeter().start()
    yield out
    meter.stop()
    out.update(busy_s=meter.busy_s, wall_s=meter.wall_s, server_cpu_s=emu.cpu_seconds() - server0)


def _other_load(m: dict[str, float], child_cpu_s: float) -> float:
    """Average busy cores used by anything but the child and the emulator (approximate for the SDK:
    ``wandb-core``'s CPU counts only when its parent reaped it)."""
    return round(max(0.0, m["busy_s"] - child_cpu_s - m["server_cpu_s"]) / m["wall_s"], 3)


def _post_json(url: str, obj: dict[str, Any]) -> None:
    req = urllib.request.Request(url, data=json.dumps(obj).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


@dataclass
class Runner:
    sizes: Sizes
    emu: EmulatorProcess
    latency_emu: EmulatorProcess
    paths: dict[str, str]
    export_ids: list[str]
    work: Path
    timeout: float

    def __post_init__(self) -> None:
        ns = argparse.Namespace(timeout=self.timeout)
        sdk_home = str(self.work / "sdk-home")
        self.bench = bench_scan.Bench(ns, self.emu, self.paths, 0, sdk_home)
        self.latency_bench = bench_scan.Bench(ns, self.latency_emu, self.paths, 0, sdk_home)

    # -- scans (bench_scan's child) ---------------------------------------------------------------

    def scan(self, measure: str, steps: int, client: str, rep: int) -> dict[str, Any]:
        mode = SCAN_MODES[client]
        keys = KEYED if measure == "scan_keyed" else ()
        bench = self.latency_bench if measure == "scan_latency" else self.bench
        case = bench_scan.Case(f"{measure}/{tag(steps)}/{mode}", mode, measure, steps,
                               self.paths[tag(steps)], 1, keys=keys)  # fmt: skip
        try:
            m = bench.measure(case, rep)
        except RuntimeError as exc:
            if "wrong result" in str(exc) or "rc=3" in str(exc):
                raise WrongRows(str(exc)) from exc
            raise
        r = m.report
        return {
            "measure": measure, "client": client, "case": case.key, "steps": steps, "runs": 1,
            "rep": rep, "rows": r["rows"], "expected_rows": steps, "seconds": r["op_s"],
            "rows_per_s": m.rows_per_s, "peak_rss_mb": m.py_mb,
            "core_rss_mb": m.core_mb if client == "sdk" else None, "total_rss_mb": m.total_mb,
            "process_wall_s": m.child.wall_s, "other_load": round(m.other_cores, 3),
            "loadavg1": m.loadavg1, "server_cpu_s": m.server_cpu_s,
            "client_cpu_s": r["py_cpu_s"], "core_cpu_s": r["core_cpu_s"],
            "history_requests": m.history_requests, "history_mb": m.history_mb,
            "fixed_s": {k: r[k] for k in ("import_s", "api_s", "run_s", "first_scan_s")},
            "call": (f"scan_history(keys={list(keys)})" if keys else "scan_history()")
            + (".to_arrow()" if client == "connector" else
               f".to_arrow(), Api(processes={bench_scan.PROCESSES})" if client == PROCESSES else ", streamed"),
        }  # fmt: skip

    # -- export (bench_export's functions) --------------------------------------------------------

    def export(self, client: str, runs: int) -> dict[str, Any]:
        steps = self.sizes.export_steps
        expected = runs * steps
        with metered(self.emu) as m:
            if client in EXPORT_ENGINES:
                dest = Path(tempfile.mkdtemp(prefix=f"export-{runs}-", dir=self.work))
                ids = self.export_ids[:runs] if runs < len(self.export_ids) else []
                summary, child = bench_export.connector_export(
                    self.emu, EXPORT_PROJECT, dest / "dataset", run_ids=ids, timeout=self.timeout,
                    engine=EXPORT_ENGINES[client],
                )
                shutil.rmtree(dest, ignore_errors=True)
                rows, inner = int(summary["rows"]), summary.get("elapsed_s")
            else:
                got, child = bench_export.sdk_loop(
                    self.emu, EXPORT_PROJECT, limit=runs, threads=SDK_THREADS,
                    home=self.work / "sdk-home", timeout=self.timeout,
                )  # fmt: skip
                _check("export", client, int(got["runs"]), runs)
                rows, inner = int(got["rows"]), got["seconds"]
        _check("export", client, rows, expected)
        seconds = float(inner or child.wall_s)
        return {
            "measure": "export", "client": client, "case": f"export/{runs}x{tag(steps)}/{client}",
            "steps": steps, "runs": runs, "rep": 0, "rows": rows, "expected_rows": expected,
            "seconds": seconds, "rows_per_s": rows / seconds,
            "rows_per_process_s": rows / child.wall_s,
            "peak_rss_mb": child.maxrss_kb / MB, "core_rss_mb": None,
            "total_rss_mb": child.maxrss_kb / MB, "process_wall_s": child.wall_s,
            "other_load": _other_load(m, child.user_s + child.system_s),
            "loadavg1": m["load1"], "server_cpu_s": m["server_cpu_s"],
            "call": f"wandb-history export --engine {EXPORT_ENGINES[client]} --to DIR (Parquet)"
            if client in EXPORT_ENGINES else f"list(run.scan_history()) per run, {SDK_THREADS} threads",
        }  # fmt: skip

    # -- streaming one run to Parquet: peak RSS -----------------------------------------------------

    def rss(self, measure: str, steps: int) -> dict[str, Any]:
        path = self.paths[tag(steps)]
        dest = Path(tempfile.mkdtemp(prefix=f"{measure}-{tag(steps)}-", dir=self.work))
        try:
            with metered(self.emu) as m:
                if measure == "rss_export":
                    project = path.rsplit("/", 1)[0]
                    summary, child = bench_export.connector_export(
                        self.emu, project, dest / "dataset", timeout=self.timeout
                    )
                    rows, seconds = int(summary["rows"]), float(summary.get("elapsed_s") or child.wall_s)
                    call = "wandb-history export --to DIR (Parquet)"
                else:
                    argv = [sys.executable, str(SCRIPT), "--child", "writer", "--url", self.emu.url,
                            "--path", path, "--expect", str(steps), "--out", str(dest / "run.parquet")]  # fmt: skip
                    child = run_child(argv, env=child_env({KEY_ENV: self.emu.api_key}),
                                      timeout=self.timeout, cwd=ROOT)  # fmt: skip
                    if child.returncode not in (0, 3):
                        child.check()
                    report = child.json()
                    rows, seconds = int(report["rows"]), report["op_s"]
                    call = "run.scan().to_batches() -> pyarrow.parquet.ParquetWriter"
        finally:
            shutil.rmtree(dest, ignore_errors=True)
        _check(measure, "connector", rows, steps)
        return {
            "measure": measure, "client": "connector", "case": f"{measure}/{tag(steps)}",
            "steps": steps, "runs": 1, "rep": 0, "rows": rows, "expected_rows": steps,
            "seconds": seconds, "rows_per_s": rows / seconds, "peak_rss_mb": child.maxrss_kb / MB,
            "core_rss_mb": None, "total_rss_mb": child.maxrss_kb / MB,
            "process_wall_s": child.wall_s,
            "other_load": _other_load(m, child.user_s + child.system_s), "loadavg1": m["load1"],
            "server_cpu_s": m["server_cpu_s"], "call": call,
        }  # fmt: skip

    # -- a .wandb file into Arrow (bench_local_reader) ------------------------------------------------

    def local(self, file: Path) -> list[dict[str, Any]]:
        steps = self.sizes.local_steps
        measured = bench_local_reader.measure(file, 1)
        out = []
        for kind, client, call in (
            ("ours", "connector", "connector.local.read_run(file) -> Arrow"),
            ("sdk", "sdk", "wandb_internal_pb2.Record.ParseFromString per record -> Arrow"),
        ):
            r = measured[kind][0]
            _check("local", client, int(r["rows"]), steps)
            out.append({
                "measure": "local", "client": client, "case": f"local/{tag(steps)}/{kind}",
                "steps": steps, "runs": 1, "rep": 0, "rows": r["rows"], "expected_rows": steps,
                "seconds": r["arrow_seconds"], "rows_per_s": r["rows"] / r["arrow_seconds"],
                "rows_per_cpu_s": r["rows"] / r["arrow_cpu_seconds"],
                "peak_rss_mb": r["maxrss_kb"] / MB, "core_rss_mb": None,
                "total_rss_mb": r["maxrss_kb"] / MB, "process_wall_s": None, "other_load": None,
                "loadavg1": r["loadavg"], "file_mb": file.stat().st_size / 2**20, "call": call,
            })  # fmt: skip
        return out


def plan(runner: Runner, local_file: Callable[[], Path]) -> list[Callable[[], list[dict[str, Any]]]]:
    """The measurements, in order: main-size scans interleaved over repetitions, the other scan
    sizes, export, RSS, the `.wandb` reader."""
    s = runner.sizes
    jobs: list[Callable[[], list[dict[str, Any]]]] = []

    def one(fn: Callable[..., dict[str, Any]], *args: Any) -> None:
        jobs.append(lambda: [fn(*args)])

    for rep in range(s.reps):
        for measure in ("scan", "scan_latency", "scan_keyed"):
            for client in ("connector", PROCESSES, "sdk") if measure != "scan_keyed" else ("connector", "sdk"):
                one(runner.scan, measure, s.main, client, rep)
    for steps in s.scan_steps:
        if steps != s.main:
            for client in ("connector", PROCESSES, "sdk"):
                one(runner.scan, "scan", steps, client, 0)
    for runs in s.export_points:
        for client in (*EXPORT_ENGINES, "sdk"):
            one(runner.export, client, runs)
    for steps in s.rss_steps:
        for measure in ("rss_export", "rss_batches"):
            one(runner.rss, measure, steps)
    jobs.append(lambda: runner.local(local_file()))
    return jobs


# == the targets table ============================================================================


def _med(ms: list[dict[str, Any]], measure: str, client: str, field: str = "rows_per_s",
         **where: Any) -> float | None:  # fmt: skip
    vals = [m[field] for m in ms if m["measure"] == measure and m["client"] == client
            and all(m[k] == v for k, v in where.items())]  # fmt: skip
    return median(vals) if vals else None


def targets(ms: list[dict[str, Any]], s: Sizes) -> list[dict[str, Any]]:
    """The table of performance targets, from the measurements."""
    rows: list[dict[str, Any]] = []

    def add(measure: str, conn: float | None, sdk: float | None, unit: str, target: str,
            test: Callable[[float], bool] | None, value: str = "ratio") -> None:  # fmt: skip
        ratio = conn / sdk if conn is not None and sdk else None
        judged = ratio if value == "ratio" else conn
        met = None if judged is None or test is None else bool(test(judged))
        rows.append({"measure": measure, "connector": conn, "sdk": sdk, "unit": unit,
                     "ratio": ratio, "target": target, "met": met})  # fmt: skip

    n = tag(s.main)
    add(f"full scan {n} × 20 keys into Arrow, rows/s vs SDK",
        _med(ms, "scan", "connector", steps=s.main), _med(ms, "scan", "sdk", steps=s.main),
        "rows/s", "≥ 30×", lambda r: r >= TARGETS["scan"])  # fmt: skip
    procs = f"`Api(processes={bench_scan.PROCESSES})`"
    add(f"same with {procs} (pages decoded by worker processes)",
        _med(ms, "scan", PROCESSES, steps=s.main), _med(ms, "scan", "sdk", steps=s.main),
        "rows/s", "≥ 30×", lambda r: r >= TARGETS["scan"])  # fmt: skip
    if s.large:
        big = tag(s.large)
        conn_big = _med(ms, "scan", "connector", steps=s.large)
        add(f"same, {big} steps", conn_big, _med(ms, "scan", "sdk", steps=s.large), "rows/s",
            "≥ 30×", lambda r: r >= TARGETS["scan_large"])  # fmt: skip
        add(f"same, {big} steps, {procs}", _med(ms, "scan", PROCESSES, steps=s.large),
            _med(ms, "scan", "sdk", steps=s.large), "rows/s",
            "≥ 30×", lambda r: r >= TARGETS["scan_large"])  # fmt: skip
        conn_main = _med(ms, "scan", "connector", steps=s.main)
        scaling = conn_big / conn_main if conn_big and conn_main else None
        add(f"same: connector rows/s({big}) ÷ rows/s({n})", scaling, None, "x", "≥ 0.9",
            lambda r: r >= TARGETS["scan_scaling"], value="connector")  # fmt: skip
    else:
        add("same, 1M steps (and rows/s(1M) ≥ 0.9 × rows/s(100k))", None, None, "rows/s",
            "≥ 30× (--full only)", None)  # fmt: skip
    add(f"same with {LATENCY_S * 1000:.0f} ms per answer (emulator latency), {n}",
        _med(ms, "scan_latency", "connector"), _med(ms, "scan_latency", "sdk"), "rows/s", "≥ 10×",
        lambda r: r >= TARGETS["scan_latency"])  # fmt: skip
    add(f"same with {LATENCY_S * 1000:.0f} ms per answer, {procs}",
        _med(ms, "scan_latency", PROCESSES), _med(ms, "scan_latency", "sdk"), "rows/s", "≥ 10×",
        lambda r: r >= TARGETS["scan_latency"])  # fmt: skip
    add(f"keyed scan `scan_history(keys=[{', '.join(KEYED)}])` vs SDK keyed, {n}",
        _med(ms, "scan_keyed", "connector"), _med(ms, "scan_keyed", "sdk"), "rows/s", "≥ 5×",
        lambda r: r >= TARGETS["scan_keyed"])  # fmt: skip
    runs = max(s.export_points)
    add(f"export {runs} runs × {tag(s.export_steps)} steps → Parquet vs SDK loop ({SDK_THREADS} threads)",
        _med(ms, "export", "connector", runs=runs), _med(ms, "export", "sdk", runs=runs), "rows/s",
        "≥ 10×", lambda r: r >= TARGETS["export"])  # fmt: skip
    add("same with `--engine processes` (one worker process per CPU)",
        _med(ms, "export", PROCESSES, runs=runs), _med(ms, "export", "sdk", runs=runs), "rows/s",
        "≥ 10×", lambda r: r >= TARGETS["export"])  # fmt: skip
    small, large = s.rss_steps
    for measure, label in (("rss_export", "`export`"),
                           ("rss_batches", "`run.scan().to_batches()` → `ParquetWriter`")):  # fmt: skip
        peak = _med(ms, measure, "connector", "peak_rss_mb", steps=large)
        add(f"peak RSS streaming {tag(large)} × 20 to Parquet, {label}", peak, None, "MB",
            "≤ 200 MB", lambda v: v <= TARGETS["rss_mb"], value="connector")  # fmt: skip
        low = _med(ms, measure, "connector", "peak_rss_mb", steps=small)
        add(f"same, RSS({tag(large)}) ÷ RSS({tag(small)}), {label}",
            peak / low if peak and low else None, None, "x", "≤ 1.3",
            lambda v: v <= TARGETS["rss_flat"], value="connector")  # fmt: skip
    loc = tag(s.local_steps)
    add(f"`.wandb` {loc} steps into Arrow vs SDK protobuf decode, rows/s",
        _med(ms, "local", "connector"), _med(ms, "local", "sdk"), "rows/s", "≥ 5×",
        lambda r: r >= TARGETS["local"])  # fmt: skip
    add(f"`.wandb` {loc} steps into Arrow, peak RSS", _med(ms, "local", "connector", "peak_rss_mb"),
        _med(ms, "local", "sdk", "peak_rss_mb"), "MB", "≤ 300 MB",
        lambda v: v <= TARGETS["local_rss_mb"], value="connector")  # fmt: skip
    return rows


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "rows/s":
        return f"{value:,.0f} rows/s"
    if unit == "MB":
        return f"{value:,.0f} MB"
    return f"{value:.2f}"


def render(data: dict[str, Any]) -> str:
    s = Sizes(**data["sizes"])
    ms = data["measurements"]
    load = data["load"]["summary"]
    lines = [
        f"# Benchmarks, `--{data['mode']}`: connector vs official SDK {data['machine']['packages'].get('wandb', '?')}",
        "",
        f"Recorded {data['started']} by `benchmarks/run.py` in {data['elapsed_s']:.0f} s. Command "
        "(repository root, venv active):",
        "",
        f"```\n{data['command']}\n```",
        "",
        "Both clients read the same runs from the same emulator process (`--warm`, "
        "`--parquet-history none`: live pages only); the latency rows use a second emulator "
        f"process serving the same run with {LATENCY_S * 1000:.0f} ms per answer. One fresh "
        "process per measurement; rows/s over the operation only: for scans, import, `Api()`, "
        "loading the run and one warm-up page are timed apart; for exports, the export's own "
        "`elapsed_s` (its `--json` summary) and the SDK's thread-pool loop (after import, "
        "`wandb-core`'s start and listing the runs). Process wall times are in the last table. "
        "See the docstring of `benchmarks/run.py`.",
        "",
    ]
    if s.name != "full":
        lines += [
            f"**`--{s.name}` sizes** (the targets are stated for `--full`): full scan at "
            f"{tag(s.main)} steps, no 1M row; export {s.export_runs} runs × {tag(s.export_steps)} "
            f"steps; RSS {tag(s.rss_steps[1])} vs {tag(s.rss_steps[0])}; `.wandb` "
            f"{tag(s.local_steps)} steps. Fixed costs weigh more at these sizes, so \"met?\" is "
            "indicative only.",
            "",
        ]
    lines += ["| measure | connector | SDK | ratio | target | met? |", "|---|---:|---:|---:|---:|:---:|"]
    for t in data["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        ratio = f"{t['ratio']:.2f}×" if t["ratio"] is not None else "-"
        lines.append(f"| {t['measure']} | {_fmt(t['connector'], t['unit'])} | "
                     f"{_fmt(t['sdk'], t['unit'])} | {ratio} | {t['target']} | {met} |")  # fmt: skip
    lines += [
        "",
        "Scans: connector `scan_history(...).to_arrow()` (every row kept, as one Arrow table) vs "
        "the SDK's `for row in run.scan_history(...)` (streamed, its fastest full read). SDK peak "
        "RSS: its Python process plus `wandb-core`.",
        "",
        "## Machine and load",
        "",
        machine_markdown(data["machine"]),
        f"- during the run (sampled every {load['interval_s']:g} s): load average (1 min) "
        f"{load['load1_min']:.2f}..{load['load1_max']:.2f} (median {load['load1_median']:.2f}); "
        "machine busy cores median "
        + (f"{load['busy_cores_median']:.2f}, max {load['busy_cores_max']:.2f}"
           if load["busy_cores_median"] is not None else "-")
        + f" of {data['machine']['nproc']}",
        "- emulator: " + ", ".join(f"`{x}`" for x in data["emulator"]["specs"])
        + f"; start-up {data['emulator']['startup_s']:.1f} s",
        "",
        "\"other load\" below: the machine's busy CPU during a measurement minus the measured "
        "processes' and the emulator's, in cores; well above 0 means noisy figures.",
        "",
    ]  # fmt: skip
    charts = data.get("charts") or []
    if charts:
        lines += ["## Charts", ""] + [f"![{Path(c).stem}]({Path(c).name})" for c in charts] + [""]
    lines += [
        "## Every measurement",
        "",
        "| measure | client | call | steps | runs | rows | seconds | rows/s | process wall s "
        "| peak RSS MB (Python + wandb-core) | other load | load avg |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in ms:
        rss = f"{m['peak_rss_mb']:,.0f}" + (f" + {m['core_rss_mb']:,.0f}" if m["core_rss_mb"] else "")
        other = "-" if m["other_load"] is None else f"{m['other_load']:.2f}"
        wall = "-" if m["process_wall_s"] is None else f"{m['process_wall_s']:.1f}"
        lines.append(
            f"| {m['measure']} | {m['client']} | {m['call']} | {m['steps']:,} | {m['runs']} | "
            f"{m['rows']:,} | {m['seconds']:.2f} | {m['rows_per_s']:,.0f} | {wall} | {rss} | {other} | "
            f"{m['loadavg1']:.2f} |"
        )
    lines.append("")
    return "\n".join(lines)


# == charts =======================================================================================


def draw_charts(data: dict[str, Any], out_dir: Path, stem: str) -> list[Path]:
    """Three PNGs: rows/s and peak RSS against steps (connector vs SDK), export rows/s against runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = data["measurements"]

    def series(measure: str, client: str, x: str, y: str) -> tuple[list[float], list[float]]:
        xs = sorted({m[x] for m in ms if m["measure"] == measure and m["client"] == client})
        ys = [_med(ms, measure, client, y, **{x: v}) or 0.0 for v in xs]
        return xs, ys

    out: list[Path] = []
    title = f"--{data['mode']}, {data['started']}"

    def save(fig: Any, name: str) -> None:
        path = out_dir / f"{stem}-{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for client, label in (("connector", "connector scan_history().to_arrow()"),
                          (PROCESSES, "same, Api(processes=...)"),
                          ("sdk", "SDK scan_history(), streamed")):  # fmt: skip
        xs, ys = series("scan", client, "steps", "rows_per_s")
        ax.plot(xs, ys, marker="o", label=label)
    ax.set(xscale="log", xlabel="steps (20 keys)", ylabel="rows/s",
           title=f"Full scan, live pages ({title})")  # fmt: skip
    ax.legend()
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    save(fig, "rows")

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for measure, client, label in (
        ("scan", "connector", "connector to_arrow() (all rows kept)"),
        ("scan", "sdk", "SDK streamed (Python + wandb-core)"),
        ("rss_export", "connector", "connector export → Parquet"),
        ("rss_batches", "connector", "connector to_batches() → ParquetWriter"),
    ):
        xs, ys = series(measure, client, "steps", "total_rss_mb")
        ax.plot(xs, ys, marker="o", label=label)
    ax.axhline(TARGETS["rss_mb"], color="grey", linestyle="--", linewidth=1, label="200 MB target")
    ax.set(xscale="log", xlabel="steps (20 keys)", ylabel="peak RSS (MB)",
           title=f"Peak RSS ({title})")  # fmt: skip
    ax.legend(fontsize="small")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    save(fig, "rss")

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for client, label in (("connector", "wandb-history export → Parquet"),
                          (PROCESSES, "same, --engine processes"),
                          ("sdk", f"SDK scan_history() loop, {SDK_THREADS} threads")):  # fmt: skip
        xs, ys = series("export", client, "runs", "rows_per_s")
        ax.plot(xs, ys, marker="o", label=label)
    steps = Sizes(**data["sizes"]).export_steps
    ax.set(xlabel=f"runs ({tag(steps)} steps each)", ylabel="rows/s",
           title=f"Export throughput ({title})")  # fmt: skip
    ax.legend()
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    save(fig, "export")
    return out


# == main =========================================================================================


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["--child", "writer"]:
        return _child_writer(argv[2:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true", help="small sizes, under 2 minutes")
    mode.add_argument("--full", action="store_true", help="the Targets table's sizes")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the test's size
    p.add_argument("--reps", type=int, help="repetitions of the main-size scans (1 quick, 3 full)")
    p.add_argument("--local-steps", type=int, help="steps of the .wandb file (3000 quick, 1M full)")
    p.add_argument("--out-dir", type=Path, default=RESULTS, help="where the results go")
    p.add_argument("--no-write", action="store_true", help="write nothing; print the JSON")
    p.add_argument("--no-charts", action="store_true", help="no PNG charts (no matplotlib needed)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per child process")
    a = p.parse_args(argv)
    sizes = SIZES["tiny" if a.tiny else "quick" if a.quick else "full"]
    if a.reps or a.local_steps:
        sizes = Sizes(**{**asdict(sizes), "reps": a.reps or sizes.reps,
                         "local_steps": a.local_steps or sizes.local_steps})  # fmt: skip
    charts = not (a.no_write or a.no_charts)
    if charts and importlib.util.find_spec("matplotlib") is None:
        print("benchmarks/run.py draws its charts with matplotlib, which is not installed: "
              "pip install -e '.[bench]' (or pass --no-charts)", file=sys.stderr)  # fmt: skip
        return 2
    stem = f"run-{'quick' if a.quick else 'full'}" + ("-tiny" if a.tiny else "")
    command = command_line(argv)
    with contextlib.redirect_stdout(sys.stderr):  # progress to stderr; stdout gets the result
        data = measure_all(sizes, command, a.timeout)
    if a.no_write:
        print(json.dumps(data, indent=1))
        return 0
    out_dir = a.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    if charts:
        data["charts"] = [str(p) for p in draw_charts(data, out_dir, stem)]
        for path in data["charts"]:
            print(f"wrote {path}", file=sys.stderr)
    text = render(data)
    with contextlib.redirect_stdout(sys.stderr):
        write_result(out_dir / f"{stem}.json", json.dumps(data, indent=1) + "\n")
        write_result(out_dir / f"{stem}.md", text)
    print(text)
    return 0


def measure_all(sizes: Sizes, command: str, timeout: float) -> dict[str, Any]:
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    t0 = time.perf_counter()
    info = machine_info()
    print(f"benchmarks/run.py --{sizes.name}: {info['nproc']} CPUs, load average {info['loadavg']}")
    sampler = LoadSampler(2.0 if sizes.name != "full" else 10.0).start()
    steps = sorted(set(sizes.scan_steps) | set(sizes.rss_steps))
    specs = [SPEC.format(project=f"s{tag(n)}", runs=1, steps=n) for n in steps]
    specs.append(SPEC.format(project="export", runs=sizes.export_runs, steps=sizes.export_steps))
    latency_spec = SPEC.format(project=f"s{tag(sizes.main)}", runs=1, steps=sizes.main)
    live = list(LIVE_PAGES)
    work = Path(tempfile.mkdtemp(prefix="bench-run-"))
    measurements: list[dict[str, Any]] = []
    try:
        # start-up in parallel: the two emulators warm while the SDK writes the .wandb file
        pool = ThreadPoolExecutor(3)
        local = pool.submit(bench_local_reader.ensure_file, sizes.local_steps)
        started_emus = [pool.submit(EmulatorProcess, specs, extra_args=live),
                        pool.submit(EmulatorProcess, [latency_spec], extra_args=live)]  # fmt: skip
        pool.shutdown(wait=False)
        with contextlib.ExitStack() as stack:
            for future in started_emus:  # every emulator that started is stopped, whatever fails
                with contextlib.suppress(Exception):
                    stack.enter_context(future.result())
            emu, latency_emu = (future.result() for future in started_emus)
            _post_json(latency_emu.url + "/_emulator/faults", {"latency": LATENCY_S})
            served = emu.runs()
            paths = {tag(n): next(x for x in served if x.startswith(f"bench/s{tag(n)}/")) for n in steps}
            export_ids = sorted(x.rsplit("/", 1)[1] for x in served if x.startswith(EXPORT_PROJECT + "/"))
            print(f"emulators ready in {time.perf_counter() - t0:.1f} s ({emu.url}, latency "
                  f"{latency_emu.url})")  # fmt: skip
            runner = Runner(sizes, emu, latency_emu, paths, export_ids, work, timeout)
            jobs = plan(runner, local.result)
            if sizes.jobs > 1:
                with ThreadPoolExecutor(sizes.jobs) as pool:
                    for got in pool.map(lambda job: job(), jobs):
                        measurements += got
            else:
                for job in jobs:
                    got = job()
                    for m in got:
                        print(f"  {m['case']:<34} {m['rows_per_s']:>11,.0f} rows/s  peak "
                              f"{m['total_rss_mb']:,.0f} MB")  # fmt: skip
                    measurements += got
            emulator = {"specs": specs, "latency_spec": latency_spec, "latency_s": LATENCY_S,
                        "startup_s": emu.startup_s, "latency_startup_s": latency_emu.startup_s,
                        "args": live + ["--warm"]}  # fmt: skip
    finally:
        sampler.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "mode": sizes.name,
        "command": command,
        "started": started,
        "elapsed_s": time.perf_counter() - t0,
        "sizes": asdict(sizes),
        "machine": info,
        "emulator": emulator,
        "load": {"summary": sampler.summary(), "samples": sampler.samples},
        "settings": {"latency_s": LATENCY_S, "keyed": list(KEYED), "sdk_threads": SDK_THREADS,
                     "export_concurrency": "the CLI's default", "parquet_history": "none"},  # fmt: skip
        "measurements": measurements,
        "targets": targets(measurements, sizes),
    }


if __name__ == "__main__":
    raise SystemExit(main())
