"""Mean of `loss` over a 10% step window of a 1M-step run: pushdown vs full scan vs the official SDK.

One command, one emulator, one run, in this order:

(a) pushdown — ``SELECT avg(value_number) FROM wandb_history(run, keys := ['loss']) WHERE _step >= a AND
    _step < b`` in DuckDB, and the same mean through the Polars LazyFrame
    (``scan_history(run).filter(...).select(pl.col("loss").mean())``);
(b) a full scan of the run (every key, every step, `Run.scan()`), then filter and mean in Arrow;
(c) the official SDK, ``wandb.Api(...).run(path).scan_history(keys=["loss"], min_step=a,
    max_step=b)`` in a subprocess with every wandb file under a temp folder.

Time is wall-clock from the first request to the mean (after one unmeasured 10-step warm-up query
that imports the engines and opens the first connection); bytes are the response bodies of the
emulator's history fields (``history``, ``sampledHistory``, ``parquetHistory``), from its
counters, plus every request counted. Results go to ``benchmarks/results/window_mean.md``.

    python benchmarks/bench_window_mean.py                 # 1M steps, 20 keys
    python benchmarks/bench_window_mean.py --steps 100000  # a quicker look
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    RESULTS,
    EmulatorProcess,
    command_line,
    machine_info,
    machine_markdown,
    sdk_env,
    write_result,
)

HISTORY_FIELDS = ("history", "sampledHistory", "parquetHistory", "events")
NOTE = """\
Why (a) moves more bytes than (c): the SDK's keyed scan applies the all-keys rule and asks for
`loss` rows only; the connector's projection never changes which rows come back, so it also fetches
a `_step`-only spec per window (a step without `loss` is still a row, with NULL). Both are one
`sampledHistory` request per 1000-step page.
"""

SDK_SCRIPT = r"""
import json, sys, time
import wandb
base, key, path, a, b = sys.argv[1:]
api = wandb.Api(api_key=key, overrides={"base_url": base}, timeout=120)
run = api.run(path)
t = time.perf_counter()
values = [row["loss"] for row in run.scan_history(keys=["loss"], min_step=int(a), max_step=int(b))]
seconds = time.perf_counter() - t
print(json.dumps({"n": len(values), "mean": sum(values) / len(values), "seconds": seconds}))
"""


def measure(emu: Any, label: str, fn: Callable[[], tuple[Any, ...]]) -> dict[str, Any]:
    emu.reset()
    t = time.perf_counter()
    mean, n, *inner = fn()
    seconds = time.perf_counter() - t
    counters = emu.counters()
    fields = counters["by_field"]
    history_bytes = sum(fields.get(f, {}).get("bytes", 0) for f in HISTORY_FIELDS)
    result = {
        "label": label,
        "seconds": seconds,
        "mean": mean,
        "rows": n,
        "scan_seconds": inner[0] if inner else None,
        "requests": counters["requests"],
        "history_bytes": history_bytes,
        "fields": {k: {"requests": v["requests"], "bytes": v["bytes"]} for k, v in fields.items()},
    }
    print(
        f"{label:<34} {seconds:9.2f} s  {history_bytes / 1e6:10.2f} MB  "
        f"{counters['requests']:6d} requests  mean={mean:.12g} over {n} steps",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--share", type=float, default=0.10, help="window width as a share of steps")
    parser.add_argument("--no-sdk", action="store_true", help="skip the official SDK")
    parser.add_argument("--no-full", action="store_true", help="skip the full scan")
    parser.add_argument("--output", default=str(RESULTS / "window_mean.md"), help="results file")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    import duckdb
    import polars as pl
    import pyarrow.compute as pc

    from connector import Api
    from connector.emulator import synthetic_runs
    from connector.engines.duckdb import register, unregister
    from connector.engines.polars import scan_history

    spec = f"bench/p:runs=1,steps={args.steps},keys={args.keys}"
    a = int(args.steps * 0.45)
    b = a + int(args.steps * args.share)
    results: list[dict[str, Any]] = []
    # The emulator runs in its own process with every row pre-encoded (--warm), so it never shares
    # the measured client's GIL; the methods send different documents, so none reuses another's
    # cached answers. The truth comes from the generator in this process.
    generated = synthetic_runs(spec)[0]
    with EmulatorProcess([spec], warm=True) as emu:
        path = emu.runs()[0]
        api = Api(api_key=emu.api_key, base_url=emu.url)
        lo, hi = generated.steps().index(a), generated.steps().index(b)
        truth_rows = generated.rows(lo, hi)
        truth = sum(r["loss"] for r in truth_rows) / len(truth_rows)
        print(f"run {path}: {args.steps} steps, {args.keys} keys; window [{a}, {b}); truth mean {truth:.12g}")

        con = register(duckdb.connect(), api)

        def duck() -> tuple[float, int]:
            mean, n = con.sql(
                f"SELECT avg(value_number), count(value_number) FROM wandb_history('{path}', keys := ['loss']) "
                f"WHERE _step >= {a} AND _step < {b}"
            ).fetchall()[0]
            return mean, n

        def polars_lazy() -> tuple[float, int]:
            frame = (
                scan_history(path, api=api)
                .filter((pl.col("_step") >= a) & (pl.col("_step") < b))
                .select(pl.col("loss").mean().alias("m"), pl.col("loss").count().alias("n"))
                .collect()
            )
            return frame["m"][0], frame["n"][0]

        def full_scan() -> tuple[float, int]:
            table = api.run(path).scan().to_arrow()
            steps = table.column("_step")
            mask = pc.and_(pc.greater_equal(steps, a), pc.less(steps, b))
            loss = table.column("loss").filter(mask)
            return pc.mean(loss).as_py(), len(loss)

        # warm-up (imports, first connection) on a 10-step window, not measured
        con.sql(f"SELECT avg(value_number) FROM wandb_history('{path}', keys := ['loss'], max_step := 10)").fetchall()
        results.append(measure(emu, "(a) DuckDB wandb_history macro", duck))
        results.append(measure(emu, "(a) Polars scan_history LazyFrame", polars_lazy))
        unregister(con)
        con.close()
        if not args.no_full:
            results.append(measure(emu, "(b) full scan, then filter", full_scan))
        if not args.no_sdk:
            with tempfile.TemporaryDirectory(prefix="bench-sdk-") as tmp:
                env = sdk_env(Path(tmp))

                def sdk() -> tuple[float, int, float]:
                    proc = subprocess.run(
                        [sys.executable, "-c", SDK_SCRIPT, emu.url, emu.api_key, path, str(a), str(b)],
                        env=env, capture_output=True, text=True, timeout=7200,
                    )  # fmt: skip
                    if proc.returncode != 0:
                        raise RuntimeError(f"SDK failed: {proc.stderr[-2000:]}")
                    out = json.loads(proc.stdout.strip().splitlines()[-1])
                    return out["mean"], out["n"], out["seconds"]

                results.append(measure(emu, "(c) official SDK scan_history", sdk))
    for r in results:
        if abs(r["mean"] - truth) > 1e-9 * abs(truth):
            print(f"MISMATCH: {r['label']} mean {r['mean']} != truth {truth}", file=sys.stderr)
            return 1
    write_results(Path(args.output), args, spec, (a, b), results, command_line(argv))
    return 0


def write_results(
    out: Path, args: Any, spec: str, window: tuple[int, int], results: list[dict[str, Any]], command: str
) -> None:
    base = results[0]
    lines = [
        "# Mean of `loss` over a 10% step window",
        "",
        f"Command: `{command}` (from the repository root).",
        "",
        f"Emulator spec `{spec}`; window `[{window[0]}, {window[1]})` "
        f"({window[1] - window[0]} steps); every mean checked against the synthetic generator.",
        "",
        machine_markdown(machine_info()),
        "",
        "| method | time (s) | history bytes | requests | time / (a) DuckDB | bytes / (a) DuckDB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['label']} | {r['seconds']:.2f} | {r['history_bytes']:,} | {r['requests']} | "
            f"{r['seconds'] / base['seconds']:.1f}× | {r['history_bytes'] / max(base['history_bytes'], 1):.1f}× |"
        )
    sdk = [r for r in results if r["scan_seconds"] is not None]
    lines += [
        "",
        "Time is wall-clock around each method; for the SDK it includes starting the subprocess",
        "(importing wandb, starting wandb-core)"
        + (f"; the SDK's own timer around `scan_history` alone read {sdk[0]['scan_seconds']:.2f} s "
           f"({sdk[0]['scan_seconds'] / base['seconds']:.1f}× (a) DuckDB)." if sdk else "."),
        "",
        *NOTE.splitlines(),
        "",
        "Bytes are response bodies of the emulator's history fields (`history`, `sampledHistory`,",
        "`parquetHistory`); requests count every GraphQL POST, metadata included. Per-field detail:",
        "",
        "```json",
        json.dumps({r["label"]: r["fields"] for r in results}, indent=1),
        "```",
        "",
    ]
    if args.no_write:
        print("\n".join(lines))
    else:
        write_result(out, "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
