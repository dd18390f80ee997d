"""Benchmark `wandb-history export` against a loop of the official SDK's `scan_history`.

One command::

    python benchmarks/bench_export.py [--spec bench/p:runs=200,steps=10000,keys=20] [--sdk-runs 40]

What it does, all against ONE emulator process (``python -m connector.emulator --warm``) started
once for the whole run:

1. ``wandb-history export bench/p --to DIR`` (Parquet dataset) in a subprocess;
2. ``wandb-history export bench/p --to FILE.duckdb`` in a subprocess;
3. the official SDK (``wandb==0.31``) in a subprocess: ``wandb.Api(api_key=..., overrides=
   {"base_url": url}, timeout=120)``, ``api.runs("bench/p")``, then ``list(run.scan_history())`` for
   each run in a thread pool of 4 and of 10 threads; rows are materialised as the SDK's dicts and
   counted (not written anywhere). HOME, WANDB_* dirs and TMPDIR live under a temp dir,
   ``WANDB_ERROR_REPORTING=false``, ``WANDB_SILENT=true``. The SDK loop runs on the first
   ``--sdk-runs`` runs and its time is scaled linearly to all runs (said so in the results).

Each subprocess's wall time, rows/s and peak RSS (``os.wait4`` rusage ``ru_maxrss``) are written to
``benchmarks/results/export.md`` with the machine and the command. ``--spec bench/p:runs=4,steps=1000
--sdk-runs 2 --threads 2 --no-write`` is a quick check that prints only.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    LIVE_PAGES,
    RESULTS,
    ChildResult,
    EmulatorProcess,
    child_env,
    command_line,
    machine_info,
    machine_markdown,
    run_child,
    sdk_env,
    write_result,
)

SDK_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from concurrent.futures import ThreadPoolExecutor
    import wandb
    url, key, project, limit, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    api = wandb.Api(api_key=key, overrides={"base_url": url}, timeout=120)
    runs = list(api.runs(project, per_page=200))[:limit]
    def rows(run):
        return sum(1 for _ in run.scan_history(page_size=1000))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(rows, runs))
    print(json.dumps({"rows": total, "runs": len(runs), "seconds": time.perf_counter() - t0}))
    """
)


@dataclass
class Result:
    what: str
    rows: int
    seconds: float
    """Wall seconds, scaled to every run for the SDK loop when it read fewer."""
    rss_mib: float
    measured: float | None = None
    """The SDK loop's measured wall seconds when `seconds` is scaled."""


def spec_count(spec: str, name: str) -> int:
    """A count of the emulator's synthetic spec.

    >>> spec_count("bench/p:runs=200,steps=10000,keys=20", "steps")
    10000
    """
    match = re.search(rf"\b{name}=(\d+)", spec)
    if match is None:
        raise SystemExit(f"--spec {spec!r} has no {name}=N")
    return int(match.group(1))


def connector_export(
    emu: EmulatorProcess,
    project: str,
    dest: str | Path,
    *,
    concurrency: int | None = None,
    run_ids: Sequence[str] = (),
    timeout: float = 3600,
    engine: str | None = None,
) -> tuple[dict[str, Any], ChildResult]:
    """``wandb-history export PROJECT --to DEST --json`` in a child process against `emu`
    (only `run_ids` when given; the CLI's default concurrency when `concurrency` is None; the
    default engine, ``local``, when `engine` is None).
    Returns its ``--json`` summary and the child (wall time, ``ru_maxrss``: the exporter's own,
    not its worker processes')."""
    cmd = [sys.executable, "-m", "connector.cli", "export", project, "--to", str(dest), "--json"]
    if engine is not None:
        cmd += ["--engine", engine]
    if concurrency is not None:
        cmd += ["--concurrency", str(concurrency)]
    for run_id in run_ids:
        cmd += ["--run", run_id]
    env = child_env({"WANDB_API_KEY": emu.api_key, "WANDB_BASE_URL": emu.url})
    child = run_child(cmd, env=env, timeout=timeout).check()
    return child.json(), child


def sdk_loop(
    emu: EmulatorProcess,
    project: str,
    *,
    limit: int,
    threads: int,
    home: str | Path,
    timeout: float = 3600,
) -> tuple[dict[str, Any], ChildResult]:
    """The official SDK's ``list(run.scan_history())`` over the first `limit` runs of `project` in a
    pool of `threads` threads, in a child process with its files under `home` (`SDK_SCRIPT`).
    Returns ``{"rows", "runs", "seconds"}`` (seconds: the loop alone) and the child."""
    cmd = [sys.executable, "-c", SDK_SCRIPT, emu.url, emu.api_key, project, str(limit), str(threads)]
    child = run_child(cmd, env=sdk_env(home), timeout=timeout).check()
    return child.json(), child


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="bench/p:runs=200,steps=10000,keys=20")
    parser.add_argument(
        "--sdk-runs", type=int, default=40, help="runs the SDK loop reads (scaled to all)"
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--threads", default="4,10", help="SDK thread counts")
    parser.add_argument("--out", default=str(RESULTS / "export.md"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    project = args.spec.split(":", 1)[0]
    n_runs, n_steps = spec_count(args.spec, "runs"), spec_count(args.spec, "steps")
    total_rows = n_runs * n_steps

    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    print(f"starting the emulator ({args.spec}, warming)...", flush=True)
    results: list[Result] = []
    try:
        with EmulatorProcess([args.spec], extra_args=LIVE_PAGES) as emu:
            print(f"emulator ready in {emu.startup_s:.0f}s at {emu.url}", flush=True)
            for label, dest in (("Parquet", str(work / "dataset")), ("DuckDB", str(work / "h.duckdb"))):
                summary, child = connector_export(emu, project, dest, concurrency=args.concurrency)
                assert summary["rows"] == total_rows, summary
                results.append(Result(f"wandb-history export -> {label} (concurrency {args.concurrency})",
                                      summary["rows"], child.wall_s, child.maxrss_kb / 1024))  # fmt: skip
                print(results[-1], flush=True)
            for threads in [int(t) for t in args.threads.split(",")]:
                got, child = sdk_loop(emu, project, limit=args.sdk_runs, threads=threads,
                                      home=work / "sdk-home")  # fmt: skip
                assert got["rows"] == got["runs"] * n_steps, got
                scale = n_runs / got["runs"]
                results.append(Result(
                    f"SDK scan_history loop, {threads} threads ({got['runs']} runs, scaled x{scale:g})",
                    total_rows, child.wall_s * scale, child.maxrss_kb / 1024,
                    child.wall_s if scale != 1 else None,
                ))  # fmt: skip
                print(results[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = render(results)
    if args.no_write:
        print(text)
    else:
        write_result(args.out, text)


def render(results: list[Result]) -> str:
    sdk4 = next((r for r in results if "4 threads" in r.what), None)
    lines = [
        "# Export benchmark",
        "",
        f"Command: `{command_line()}` (run {time.strftime('%Y-%m-%d %H:%M')}).",
        "",
        "Machine:",
        "",
        machine_markdown(machine_info()),
        "",
        "The emulator runs in its own process on the same machine (warmed: rows pre-encoded), so",
        "exporter and server share the CPUs.",
        "",
        "| what | rows | wall s | rows/s | peak RSS MiB | vs SDK 4 threads |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        ratio = f"{sdk4.seconds / r.seconds:.1f}x" if sdk4 else "-"
        wall = f"{r.seconds:.1f}" + (f" (measured {r.measured:.1f})" if r.measured is not None else "")
        lines.append(
            f"| {r.what} | {r.rows:,} | {wall} | {r.rows / r.seconds:,.0f} | {r.rss_mib:,.0f} | {ratio} |"
        )
    lines += [
        "",
        "Notes: the exporter's rows are written (Parquet files / DuckDB table with its primary key);",
        "the SDK loop only materialises its rows as dicts and counts them. SDK rows for the runs it did",
        "not read are scaled linearly from the measured subset (its per-run time is steady). Peak RSS",
        "is `ru_maxrss` of each subprocess.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
