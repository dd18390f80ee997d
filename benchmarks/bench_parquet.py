"""A finished run read through W&B's Parquet history exports: the connector vs the official SDK.

Run from the repository root (after the README's set-up)::

    python benchmarks/bench_parquet.py            # 1M steps x 20 keys (a few minutes)
    python benchmarks/bench_parquet.py --quick    # 100k steps, prints only

Method: two emulator processes serve the same synthetic run (``runs=1,keys=20,seed=1``: 23
top-level keys per row, nested dict, histogram, string, NaN/±inf). The first keeps its history in
Parquet files on its storage host (the service's default for finished runs, 100k rows per file); the
second serves every page live (``--parquet-history none``). Each measurement is a fresh child
process that times only the full scan and reports its rows, wall time and peak RSS:

* connector over the files: ``run.scan().to_batches()``, streamed (batches counted and dropped);
* connector over live pages: the same against the second emulator;
* SDK over the files: ``for row in run.scan_history()`` (wandb-core's own Parquet reader), streamed.

One unrecorded scan first makes the emulator write its files and fills nothing else: the connector's
cache and the SDK's are each in a fresh folder per measurement, so every measured scan downloads.
Results go to ``benchmarks/results/parquet.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from _common import (
    RESULTS,
    EmulatorProcess,
    child_env,
    command_line,
    machine_info,
    machine_markdown,
    run_child,
    sdk_env,
    write_result,
)

CONNECTOR = r"""
import json, sys, time
from connector import Api
base, key, path = sys.argv[1:]
run = Api(api_key=key, base_url=base).run(path)
start = time.perf_counter()
rows = sum(batch.num_rows for batch in run.scan().to_batches())
print(json.dumps({"rows": rows, "seconds": time.perf_counter() - start}))
"""

SDK = r"""
import json, sys, time
import wandb
base, key, path = sys.argv[1:]
run = wandb.Api(api_key=key, overrides={"base_url": base}, timeout=600).run(path)
start = time.perf_counter()
rows = sum(1 for _ in run.scan_history())
print(json.dumps({"rows": rows, "seconds": time.perf_counter() - start}))
"""


def measure(script: str, url: str, key: str, path: str, *, sdk: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        env = sdk_env(folder) if sdk else child_env({"WANDB_CACHE_DIR": folder})
        child = run_child([sys.executable, "-c", script, url, key, path], env=env, timeout=3600).check()
    report = child.json()
    return {
        "rows": report["rows"],
        "seconds": report["seconds"],
        "rows_per_s": report["rows"] / report["seconds"],
        "peak_rss_mb": child.maxrss_kb / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k steps, print only")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    steps = args.steps or (100_000 if args.quick else 1_000_000)
    spec = f"bench/pq:runs=1,steps={steps},keys=20,seed=1"
    results: dict[str, dict[str, float]] = {}
    with EmulatorProcess([spec], warm=False) as files, EmulatorProcess(
        [spec], extra_args=["--parquet-history", "none"]
    ) as live:
        path = _first_path(files)
        started = time.perf_counter()
        measure(CONNECTOR, files.url, files.api_key, path, sdk=False)  # the emulator writes its files
        print(f"emulator wrote the Parquet files in {time.perf_counter() - started:.1f} s", flush=True)
        results["connector, Parquet files"] = measure(CONNECTOR, files.url, files.api_key, path, sdk=False)
        results["connector, live pages"] = measure(CONNECTOR, live.url, live.api_key, path, sdk=False)
        results["official SDK 0.31.0, Parquet files"] = measure(SDK, files.url, files.api_key, path, sdk=True)
    for name, r in results.items():
        assert r["rows"] == steps, (name, r)
    sdk_rate = results["official SDK 0.31.0, Parquet files"]["rows_per_s"]
    live_rate = results["connector, live pages"]["rows_per_s"]
    lines = [
        f"# Parquet history exports: {steps:,} steps x 20 keys, full scan into Arrow",
        "",
        f"Command: `{command_line()}`",
        "",
        "| client | rows/s | vs SDK | vs connector live | seconds | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['rows_per_s']:,.0f} | {r['rows_per_s'] / sdk_rate:.1f}x | "
            f"{r['rows_per_s'] / live_rate:.1f}x | {r['seconds']:.1f} | {r['peak_rss_mb']:,.0f} |"
        )
    lines += ["", "SDK peak RSS is its Python process only (wandb-core runs in a child).", ""]
    lines.append(machine_markdown(machine_info()))
    text = "\n".join(lines) + "\n"
    print(text)
    print(json.dumps(results))
    if not args.quick and not args.no_write:
        write_result(RESULTS / "parquet.md", text)
    return 0


def _first_path(emulator: EmulatorProcess) -> str:
    import requests

    return str(requests.get(emulator.url + "/_emulator/runs", timeout=30).json()["runs"][0])


if __name__ == "__main__":
    raise SystemExit(main())
