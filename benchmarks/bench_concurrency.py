"""Pages in flight vs network latency: how the scan's default concurrency was chosen.

    python benchmarks/bench_concurrency.py [--steps 30000] [--latencies 0,0.02,0.1] [--levels 1,2,3,4,6]
    python benchmarks/bench_concurrency.py --processes 2 --latencies 0,0.05 --levels 3,4,6,8  # Api(processes=2)
    python benchmarks/bench_concurrency.py --steps 2000 --latencies 0 --levels 1,3 --reps 1 --no-write  # quick

One emulator process (pre-encoded, `--warm`) serves `bench/p:runs=1,steps=N,keys=20,seed=1`; its
latency knob (`POST /_emulator/faults {"latency": s}`) delays every answer, standing in for the round
trip and server time of the real service. For each latency and each number of pages in flight, one
streamed scan (`run.scan_history(concurrency=c).to_batches()`) is timed in this process (best of
`--reps`). On loopback with no latency the decode holds the GIL and more threads only contend; with
latency, pages in flight hide it. With ``--processes N`` the scans use ``Api(processes=N)`` (pages
decoded by worker processes, started before the first timed scan), which is how the default pages in
flight with decoding workers was chosen. Results: `benchmarks/results/concurrency.md`
(``concurrency-processes.md`` with ``--processes``).
"""

from __future__ import annotations

import argparse
import sys
import time

import requests
from _common import (
    LIVE_PAGES,
    RESULTS,
    EmulatorProcess,
    command_line,
    machine_info,
    machine_markdown,
    write_result,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--latencies", default="0,0.02,0.1")
    parser.add_argument("--levels", default="1,2,3,4,6")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--processes", type=int, default=0, help="Api(processes=N): decoding worker processes")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    latencies = [float(x) for x in args.latencies.split(",")]
    levels = [int(x) for x in args.levels.split(",")]

    from connector import Api

    spec = f"bench/p:runs=1,steps={args.steps},keys=20,seed=1"
    table: dict[float, dict[int, float]] = {}
    with EmulatorProcess([spec], warm=True, extra_args=LIVE_PAGES) as emu:
        api = Api(api_key=emu.api_key, base_url=emu.url, processes=args.processes)
        run = api.run(emu.runs()[0])
        for _ in run.scan_history(max_step=1000).to_batches():
            pass  # starts the decoding workers (with --processes) before any timed scan
        for latency in latencies:
            requests.post(f"{emu.url}/_emulator/faults", json={"latency": latency}, timeout=10)
            for level in levels:
                best = 0.0
                for _ in range(args.reps):
                    start = time.perf_counter()
                    rows = sum(b.num_rows for b in run.scan_history(concurrency=level).to_batches())
                    best = max(best, rows / (time.perf_counter() - start))
                table.setdefault(latency, {})[level] = best
                print(f"latency {latency * 1000:5.0f} ms  in flight {level}: {best:10,.0f} rows/s", flush=True)
        requests.post(f"{emu.url}/_emulator/faults", json={}, timeout=10)

    head = "| latency per answer | " + " | ".join(f"{c} in flight" for c in levels) + " |"
    lines = [
        "# Scan throughput by pages in flight and latency",
        "",
        f"Command: `{command_line(argv)}`",
        "",
        machine_markdown(machine_info()),
        "",
        f"Streamed scan of `{spec}` (23 keys per row)"
        + (f", `Api(processes={args.processes})`" if args.processes else "")
        + f", rows/s, best of {args.reps}:",
        "",
        head,
        "|---|" + "---:|" * len(levels),
    ]
    for latency, row in table.items():
        cells = " | ".join(f"{row[c]:,.0f}" for c in levels)
        lines.append(f"| {latency * 1000:.0f} ms | {cells} |")
    if args.processes:
        lines += [
            "",
            "With the pages decoded by worker processes, fetching no longer competes with decoding for",
            "the GIL: more pages in flight cost nothing on loopback and hide latency, so the default",
            "with `Api(processes=N)` is `3 × N` pages in flight (`connector.api.PAGES_PER_PROCESS`).",
        ]
    else:
        lines += [
            "",
            "The default (3 pages in flight) is near the best on loopback, where the decode holds the GIL",
            "and extra threads contend, and already hides most of a 20 ms latency; with 100 ms per answer",
            "more pages in flight keep helping (`Api(concurrency=...)` or `scan_history(concurrency=...)`).",
        ]
    text = "\n".join(lines) + "\n"
    if args.no_write:
        print(text)
    else:
        write_result(RESULTS / ("concurrency-processes.md" if args.processes else "concurrency.md"), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
