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
``benchmarks/results/export.md`` with the machine (nproc, CPU model, RAM) and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "export.md"

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


def machine() -> str:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        ram = f"{mem_kb / 1024 / 1024:.1f} GiB"
    except OSError:
        ram = "unknown"
    return f"nproc {os.cpu_count()}, {cpu}, RAM {ram}, Python {platform.python_version()}, {platform.system()}"


def start_emulator(spec: str) -> tuple[subprocess.Popen[str], str, str]:
    from connector.emulator import DEFAULT_API_KEY

    proc = subprocess.Popen(
        [sys.executable, "-m", "connector.emulator", "--synthetic", spec, "--warm", "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://\S+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"emulator did not start: {line!r}")
    return proc, match.group(1), DEFAULT_API_KEY


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of one subprocess."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.PIPE, text=True
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read() if proc.stderr else ""
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed ({proc.returncode}): {err[-2000:]}")
    return wall, usage.ru_maxrss / 1024, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="bench/p:runs=200,steps=10000,keys=20")
    parser.add_argument(
        "--sdk-runs", type=int, default=40, help="runs the SDK loop reads (scaled to all)"
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--threads", default="4,10", help="SDK thread counts")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    project = args.spec.split(":", 1)[0]
    n_runs = int(re.search(r"runs=(\d+)", args.spec).group(1))  # type: ignore[union-attr]
    n_steps = int(re.search(r"steps=(\d+)", args.spec).group(1))  # type: ignore[union-attr]
    total_rows = n_runs * n_steps

    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    print(f"starting the emulator ({args.spec}, warming)...", flush=True)
    t0 = time.perf_counter()
    emu, url, key = start_emulator(args.spec)
    print(f"emulator ready in {time.perf_counter() - t0:.0f}s at {url}", flush=True)
    results: list[dict[str, object]] = []
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_API_KEY": key, "WANDB_BASE_URL": url}
        for label, dest in (("Parquet", str(work / "dataset")), ("DuckDB", str(work / "h.duckdb"))):
            cmd = [sys.executable, "-m", "connector.cli", "export", project, "--to", dest, "--json",
                   "--concurrency", str(args.concurrency)]  # fmt: skip
            wall, rss, out = timed(cmd, env)
            summary = json.loads(out)
            assert summary["rows"] == total_rows, summary
            results.append({"what": f"wandb-history export -> {label} (concurrency {args.concurrency})",
                            "rows": summary["rows"], "seconds": wall, "rss": rss, "scaled": False})  # fmt: skip
            print(results[-1], flush=True)
        home = work / "sdk-home"
        sdk_env = dict(os.environ)
        for name in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_ENTITY", "WANDB_PROJECT"):
            sdk_env.pop(name, None)
        for name, sub in (("HOME", ""), ("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config"),
                          ("WANDB_DATA_DIR", "data"), ("WANDB_DIR", "wandb"), ("TMPDIR", "tmp")):  # fmt: skip
            (home / sub).mkdir(parents=True, exist_ok=True)
            sdk_env[name] = str(home / sub)
        sdk_env.update({"WANDB_ERROR_REPORTING": "false", "WANDB_SILENT": "true"})
        script = work / "sdk_loop.py"
        script.write_text(SDK_SCRIPT)
        for threads in [int(t) for t in args.threads.split(",")]:
            cmd = [sys.executable, str(script), url, key, project, str(args.sdk_runs), str(threads)]
            wall, rss, out = timed(cmd, sdk_env)
            got = json.loads(out.strip().splitlines()[-1])
            assert got["rows"] == got["runs"] * n_steps, got
            scale = n_runs / got["runs"]
            results.append({"what": f"SDK scan_history loop, {threads} threads ({got['runs']} runs, scaled x{scale:g})",
                            "rows": total_rows, "seconds": wall * scale, "measured": wall, "rss": rss,
                            "scaled": scale != 1})  # fmt: skip
            print(results[-1], flush=True)
    finally:
        emu.terminate()
        emu.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    write_results(Path(args.out), args, results)


def write_results(path: Path, args: argparse.Namespace, results: list[dict[str, object]]) -> None:
    sdk4 = next((r for r in results if "4 threads" in str(r["what"])), None)
    lines = [
        "# Export benchmark",
        "",
        f"Command: `python benchmarks/bench_export.py --spec {args.spec} --sdk-runs {args.sdk_runs} "
        f"--concurrency {args.concurrency}`",
        "",
        f"Machine: {machine()}. The emulator runs in its own process on the same machine (warmed: rows",
        "pre-encoded), so exporter and server share the CPUs.",
        "",
        "| what | rows | wall s | rows/s | peak RSS MiB | vs SDK 4 threads |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        secs = float(r["seconds"])  # type: ignore[arg-type]
        ratio = f"{float(sdk4['seconds']) / secs:.1f}x" if sdk4 else "-"  # type: ignore[arg-type,index]
        wall = f"{secs:.1f}" + (
            f" (measured {float(r['measured']):.1f})" if r.get("scaled") else ""
        )  # type: ignore[arg-type]
        lines.append(
            f"| {r['what']} | {int(r['rows']):,} | {wall} | {int(r['rows']) / secs:,.0f} | "  # type: ignore[call-overload]
            f"{float(r['rss']):,.0f} | {ratio} |"  # type: ignore[arg-type]
        )
    lines += [
        "",
        "Notes: the exporter's rows are written (Parquet files / DuckDB table with its primary key);",
        "the SDK loop only materialises its rows as dicts and counts them. SDK rows for the runs it did",
        "not read are scaled linearly from the measured subset (its per-run time is steady). Peak RSS",
        "is `ru_maxrss` of each subprocess.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
