"""Benchmark ``wandb-history export --engine ray`` against the single-process exporter, and measure
the inputs of the scale model (``benchmarks/results/scale_model.md``).

One command::

    python benchmarks/bench_ray_export.py            # 200 runs x 10k steps x 20 keys (2M rows)
    python benchmarks/bench_ray_export.py --quick    # 20 runs x 2k steps, prints only

What it does, against ONE emulator process (``python -m connector.emulator --warm``, live pages
only: every history row is a paged GraphQL request, the costly path of the API):

1. ``wandb-history export bench/p --to DIR --json`` (Parquet dataset), ``--engine local`` then
   ``--engine ray`` (a local Ray cluster started by the export: ``ray.init()`` on this machine's
   CPUs; its start-up is inside the wall time), each in a subprocess; then the same to DuckDB.
2. For each export: wall time, rows/s, the emulator's counters (history requests, rows per request)
   and CPU seconds (per-request server cost), the machine's busy CPU seconds (client = machine -
   emulator; other processes on the machine add to it: the load average is recorded).
3. The **sink alone**: the exported rows written again through the sink (`connector.export.runner.
   open_sink`, one ``write_chunk`` per chunk of ``--chunk-steps``, from tables already in memory),
   the ceiling of a driver that only writes.

Results go to ``benchmarks/results/ray_export.md`` (with ``--quick``: printed only).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    LIVE_PAGES,
    RESULTS,
    CpuMeter,
    EmulatorProcess,
    child_env,
    command_line,
    machine_info,
    machine_markdown,
    run_child,
    write_result,
)


@dataclass
class Measure:
    what: str
    rows: int
    wall_s: float
    history_requests: int
    history_rows: int
    emulator_cpu_s: float
    machine_cpu_s: float
    rss_mib: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s

    @property
    def rows_per_request(self) -> float:
        return self.history_rows / max(1, self.history_requests)

    @property
    def server_ms_per_request(self) -> float:
        return 1000 * self.emulator_cpu_s / max(1, self.history_requests)

    @property
    def client_cpu_s(self) -> float:
        return max(0.0, self.machine_cpu_s - self.emulator_cpu_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.__dict__, "rows_per_s": round(self.rows_per_s), "rows_per_request": round(self.rows_per_request, 1),
            "server_ms_per_request": round(self.server_ms_per_request, 2), "client_cpu_s": round(self.client_cpu_s, 1),
        }  # fmt: skip


def export(emu: EmulatorProcess, project: str, dest: str, engine: str, args: argparse.Namespace) -> Measure:
    cmd = [sys.executable, "-m", "connector.cli", "export", project, "--to", dest, "--json",
           "--concurrency", str(args.concurrency), "--chunk-steps", str(args.chunk_steps), "--engine", engine]  # fmt: skip
    env = child_env({"WANDB_API_KEY": emu.api_key, "WANDB_BASE_URL": emu.url, "RAY_DEDUP_LOGS": "0"})
    env.pop("RAY_ADDRESS", None)
    emu.reset()
    cpu0 = emu.cpu_seconds()
    meter = CpuMeter().start()
    child = run_child(cmd, env=env, timeout=3600).check()
    meter.stop()
    summary = child.json()
    history = emu.counters()["by_field"].get("history", {})
    kind = "Parquet" if not dest.endswith(".duckdb") else "DuckDB"
    return Measure(
        f"--engine {engine} -> {kind}", summary["rows"], child.wall_s, int(history.get("requests", 0)),
        int(history.get("rows", 0)), emu.cpu_seconds() - cpu0, meter.busy_s, child.maxrss_kb / 1024,
    )  # fmt: skip


def sink_only(source_dataset: str, dest: str, chunk_steps: int) -> tuple[int, float]:
    """(rows, seconds) to write the rows of an exported Parquet dataset again through the sink of
    `dest`, one ``write_chunk`` per chunk, tables already in memory (no API, no decoding)."""
    from connector.export.checkpoint import StateKey, StreamState
    from connector.export.plan import ExportOptions
    from connector.export.runner import open_sink
    from connector.export.sinks.dest import parse_destination
    from connector.export.sinks.parquet import read_table

    table = read_table(source_dataset, "history")
    chunks = []
    for run_id in sorted(set(table.column("run_id").to_pylist())):
        import pyarrow.compute as pc

        mine = table.filter(pc.equal(table.column("run_id"), run_id)).sort_by("_step")
        entity, project = mine.column("entity")[0].as_py(), mine.column("project")[0].as_py()
        steps = mine.column("_step").to_numpy()
        last = int(steps[-1])
        for lo in range(0, last + 1, chunk_steps):
            a, b = int(steps.searchsorted(lo)), int(steps.searchsorted(lo + chunk_steps))
            if b > a:
                key = StateKey(entity, project, run_id, "history", "*")
                state = StreamState(key, watermark=min(lo + chunk_steps, last + 1) - 1, last_step=last,
                                    chunk_steps=chunk_steps, min_step=0)  # fmt: skip
                chunks.append((mine.slice(a, b - a), state, lo, min(lo + chunk_steps, last + 1)))
    sink = open_sink(parse_destination(dest), ExportOptions(chunk_steps=chunk_steps))
    stop = threading.Event()
    rows = 0
    t0 = time.perf_counter()
    try:
        sink.prepare()
        for t, state, lo, hi in chunks:
            rows += sink.write_chunk("history", t, state, lo=lo, hi=hi, stop=stop, fresh=True)
        sink.finish()
    finally:
        sink.close()
    return rows, time.perf_counter() - t0


RAY_START = (
    "import json, time; t0 = time.perf_counter(); import ray; "
    "ray.init(configure_logging=False, log_to_driver=False, include_dashboard=False); "
    "t1 = time.perf_counter(); ray.shutdown(); print(json.dumps({'init_s': t1 - t0}))"
)


def ray_startup_s() -> float:
    """Seconds for ``import ray; ray.init()`` of a local cluster in a fresh process (what every
    ``--engine ray`` export without ``RAY_ADDRESS`` pays first)."""
    env = child_env()
    env.pop("RAY_ADDRESS", None)
    return float(run_child([sys.executable, "-c", RAY_START], env=env, timeout=300).check().json()["init_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default=None, help="emulator spec (default: 200 runs x 10k steps x 20 keys)")
    parser.add_argument("--quick", action="store_true", help="20 runs x 2k steps; print only")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--chunk-steps", type=int, default=10_000)
    parser.add_argument("--out", default=str(RESULTS / "ray_export.md"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    spec = args.spec or ("bench/p:runs=20,steps=2000,keys=20" if args.quick else "bench/p:runs=200,steps=10000,keys=20")
    project = spec.split(":", 1)[0]
    work = Path(tempfile.mkdtemp(prefix="bench-ray-export-"))
    results: list[Measure] = []
    sinks: list[tuple[str, int, float]] = []
    info = machine_info()
    startup = ray_startup_s()
    print(f"ray start-up: {startup:.1f}s", flush=True)
    try:
        print(f"starting the emulator ({spec}, warming)...", flush=True)
        with EmulatorProcess([spec], extra_args=LIVE_PAGES) as emu:
            print(f"emulator ready in {emu.startup_s:.0f}s", flush=True)
            for kind, suffix in (("parquet", ""), ("duckdb", ".duckdb")):
                for engine in ("local", "ray"):
                    m = export(emu, project, str(work / f"{engine}-{kind}{suffix}"), engine, args)
                    results.append(m)
                    print(json.dumps(m.to_dict()), flush=True)
        for kind, suffix in (("Parquet", ""), ("DuckDB", ".duckdb")):
            rows, secs = sink_only(str(work / "ray-parquet"), str(work / f"sink-only-{kind}{suffix}"), args.chunk_steps)
            sinks.append((kind, rows, secs))
            print(f"sink only -> {kind}: {rows} rows in {secs:.1f}s ({rows / secs:,.0f} rows/s)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = render(spec, args, info, results, sinks, startup)
    if args.quick or args.no_write:
        print(text)
    else:
        write_result(args.out, text)


def render(spec: str, args: argparse.Namespace, info: dict[str, Any], results: list[Measure],
           sinks: list[tuple[str, int, float]], startup: float) -> str:  # fmt: skip
    base = {m.what.split("-> ")[1]: m for m in results if "local" in m.what}
    lines = [
        "# Distributed export: `--engine ray` against the single-process exporter",
        "",
        f"Command: `{command_line()}` (run {time.strftime('%Y-%m-%d %H:%M')}); data: `{spec}` (live pages",
        f"only), `--concurrency {args.concurrency} --chunk-steps {args.chunk_steps}`.",
        "",
        "Machine:",
        "",
        machine_markdown(info),
        "",
        "Everything shares the same 2 CPUs: the emulator process, the export's driver and (with",
        "`--engine ray`) the local Ray cluster the export starts (its start-up, a few seconds, is",
        f"inside the wall time: `import ray; ray.init()` alone took {startup:.1f} s in a fresh process;",
        "*rows/s w/o start-up* subtracts it). Other processes on the machine (see the load average) add noise.",
        "",
        "| export | rows | wall s | rows/s | rows/s w/o start-up | vs local | history requests | rows/request | "
        "emulator CPU ms/request | client CPU s | driver peak RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in results:
        ref = base.get(m.what.split("-> ")[1])
        ratio = f"{m.rows_per_s / ref.rows_per_s:.2f}x" if ref else "-"
        steady = f"{m.rows / max(0.1, m.wall_s - startup):,.0f}" if "ray" in m.what else "-"
        lines.append(
            f"| {m.what} | {m.rows:,} | {m.wall_s:.1f} | {m.rows_per_s:,.0f} | {steady} | {ratio} | {m.history_requests:,} | "
            f"{m.rows_per_request:,.0f} | {m.server_ms_per_request:.1f} | {m.client_cpu_s:.0f} | {m.rss_mib:,.0f} |"
        )
    lines += ["", "Sink alone (the driver's share: the exported rows written again, from memory):", ""]
    lines += ["| sink | rows | s | rows/s |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {k} | {r:,} | {s:.1f} | {r / s:,.0f} |" for k, r, s in sinks]
    lines += [
        "",
        "Columns: *history requests* and *rows/request* from the emulator's counters "
        "(`/_emulator/counters`, field `history`); *emulator CPU ms/request* = the emulator "
        "process's CPU seconds during the export / its history requests (listing requests are a "
        "handful); *client CPU s* = the machine's busy CPU seconds during the export minus the "
        "emulator's (driver + Ray workers + Ray's own processes); peak RSS is the driver's "
        "(`ru_maxrss`), not the Ray workers'.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
