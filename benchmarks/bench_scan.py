"""Full-history scan: this connector vs the official W&B SDK (wandb 0.31), rows/s and peak RSS.

Run from the repository root::

    python benchmarks/bench_scan.py           # full: 100k and 300k steps, 3 repetitions (~5 min)
    python benchmarks/bench_scan.py --quick   # smoke check: 10k and 20k steps, 1 repetition (<30 s idle)

The full run writes ``benchmarks/results/scan.md`` (``--output`` to change, ``--no-write`` to skip);
``--quick`` only prints unless ``--output`` is given.

Method:

* **Server.** One emulator process (``python -m connector.emulator --synthetic ... --warm``) serves
  both runs for the whole benchmark: ``bench/p`` (N steps) and ``bench/big`` (the large run), each
  ``runs=1,keys=20,seed=1`` (run 0 of a spec: every key on every row, 23 top-level keys). ``--warm``
  pre-encodes every row, so the server costs little; it runs in its own process so it never competes
  with the client for the GIL or memory. Its CPU time is read from ``/proc`` for every measurement.
  Rows carry a nested dict (``train``), a histogram, a string and NaN/±Infinity tokens, so a page
  (~850 kB per 1000 rows) is a little heavier than the anchor server's all-float rows (~730 kB).
* **One fresh process per measurement.** The child imports its client, builds the API object,
  loads the run and scans one page (first-use lazy imports: pyarrow imports pandas when it is
  installed, the SDK its own) — fixed costs, timed apart — then times **only the full scan**,
  ``historyKeys`` request included: rows/s = rows / scan wall time. It checks the row count and the last step, then reports its peak RSS *with the data still
  alive*. Cases:

  - connector ``scan_history().to_batches()``, streamed (batches counted and dropped);
  - the same with ``import pandas`` made to fail (pyarrow's ``pa.array`` imports pandas whenever it
    is installed, ~50 MB that a user without pandas does not pay);
  - connector ``scan_history().to_arrow()`` (all rows kept as one Arrow table);
  - SDK ``list(run.scan_history())`` (all rows kept as dicts);
  - SDK ``for row in run.scan_history(): n += 1`` (streamed);
  - connector streamed at concurrency 1, 2, 3, 4 (pages in flight; the default's row is the
    streamed case above, not a separate run).

  The SDK is built as ``wandb.Api(api_key=..., overrides={"base_url": url}, timeout=120)`` with every
  file it writes under a temporary folder, ``WANDB_ERROR_REPORTING=false``, ``WANDB_SILENT=true``.
* **Peak RSS.** Python process: its own ``ru_maxrss`` (reaped with ``os.wait4``; cross-checked with
  ``VmHWM``). SDK: plus the ``VmHWM`` of its ``wandb-core`` child, read by the child just before it
  exits (found with psutil); the two are reported separately and summed.
* **Repetitions.** Cases are interleaved (rep 1 of every case, then rep 2, ...) so a change in
  background load spreads over all cases; the tables give median and [min..max]. After one unrecorded
  warm-up scan per client, the N-step cases run ``--reps`` times; on the large run the connector
  runs ``--reps`` times and the SDK ``--sdk-large-reps`` times (default 1: it takes ~20 s and >1 GB).
* **Noise.** For every measurement, the machine's busy CPU seconds (``/proc/stat``) minus the CPU of
  the measured processes and of the emulator gives the CPU used by *other* work, shown as average
  busy cores ("other load"). The load average is recorded at start and end.
* **Where the time goes.** One extra connector streamed scan under cProfile at concurrency 1, so
  the whole scan (HTTP, JSON decode, Arrow build) runs on the profiled main thread; top 8 by tottime.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    LIVE_PAGES,
    RESULTS,
    ROOT,
    ChildResult,
    CpuMeter,
    EmulatorProcess,
    child_env,
    command_line,
    descendants_cpu_s,
    machine_info,
    machine_markdown,
    median,
    peak_rss_report,
    proc_status_kb,
    run_child,
    sdk_env,
    self_cpu_s,
    spread,
    write_result,
)

SCRIPT = Path(__file__).resolve()
DEFAULT_OUTPUT = RESULTS / "scan.md"
SPEC = "bench/{project}:runs=1,steps={steps},keys=20,seed=1"
KEY_ENV = "BENCH_API_KEY"
WARM_STEPS = 1000  # every child first scans one page, untimed
ANCHOR_SDK_LIST_100K = 18_750  # rows/s, performance-anchors.md (idle machine, all-float rows)
MODES = ("conn-stream", "conn-stream-nopd", "conn-arrow", "conn-arrow-procs", "sdk-list", "sdk-stream", "conn-profile")
#: Decoding worker processes of the ``conn-arrow-procs`` mode (``Api(processes=...)``).
PROCESSES = max(2, os.cpu_count() or 2)
LABELS = {
    "conn-stream": "connector `to_batches()` streamed",
    "conn-stream-nopd": "connector `to_batches()` streamed, pandas not importable",
    "conn-arrow": "connector `to_arrow()` (all rows kept)",
    "conn-arrow-procs": "connector `to_arrow()` with `Api(processes=2)` (pages decoded by worker processes)",
    "sdk-list": "SDK `list(scan_history())` (all rows kept)",
    "sdk-stream": "SDK `for row in scan_history()` streamed",
}
MB = 1024.0  # kB per MB (MB = 2**20 bytes)


# == child side ===================================================================================


def _child(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=MODES)
    p.add_argument("--url", required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=0)
    p.add_argument("--keys", default="", help="comma-separated: scan_history(keys=[...])")
    a = p.parse_args(argv)
    keys = [k for k in a.keys.split(",") if k] or None
    key = os.environ[KEY_ENV]
    if a.mode == "conn-stream-nopd":
        sys.meta_path.insert(0, _NoPandas())
    if a.mode.startswith("sdk"):
        out = _child_sdk(a.mode, a.url, key, a.path, keys)
    else:
        out = _child_connector(a.mode, a.url, key, a.path, a.concurrency, keys)
    out["ok"] = out["rows"] == a.expect and out["last_step"] == a.expect - 1
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0 if out["ok"] else 3


class _NoPandas:
    """Import hook: `import pandas` fails, as where pandas is not installed.

    ``pa.array(list)`` imports pandas whenever it is installed (pyarrow's pandas shim), which costs
    a connector process ~50 MB and ~0.3 s even though it never uses pandas.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by bench_scan)")
        return


def _child_connector(
    mode: str, url: str, key: str, path: str, concurrency: int, keys: list[str] | None = None
) -> dict[str, Any]:
    t0 = time.perf_counter()
    from connector.api import Api

    t1 = time.perf_counter()
    processes = PROCESSES if mode == "conn-arrow-procs" else 0  # started by the untimed first scan
    # --concurrency 0: the Api's own default (3 pages in flight; 3 per worker with processes)
    c = 1 if mode == "conn-profile" else (concurrency or None)
    api = Api(api_key=key, base_url=url, concurrency=c, processes=processes)
    t2 = time.perf_counter()
    run = api.run(path)
    t3 = time.perf_counter()
    for _ in run.scan_history(max_step=WARM_STEPS).to_batches():
        pass  # first use: lazy imports (pyarrow imports pandas when installed) stay out of the timing
    t4 = time.perf_counter()
    _reset_counters(url)
    rss_before = proc_status_kb("self", "VmRSS")
    # historyKeys is fetched by the scan, inside the timed region (as in the SDK)
    scan = run.scan_history(keys=keys)
    profile_rows: list[dict[str, Any]] = []
    profile_cum: list[dict[str, Any]] = []
    profile_total = 0.0
    cpu0 = self_cpu_s()
    start = time.perf_counter()
    table = None
    if mode in ("conn-arrow", "conn-arrow-procs"):
        table = scan.to_arrow()
        rows = table.num_rows
        last = table.column("_step")[-1].as_py() if rows else None
    elif mode == "conn-profile":
        import cProfile
        import pstats

        prof = cProfile.Profile()
        rows, last = 0, None
        prof.enable()
        for batch in scan.to_batches():
            rows += batch.num_rows
            last = batch.column(0)[-1].as_py()
        prof.disable()
        stats = pstats.Stats(prof)
        profile_total = stats.total_tt  # type: ignore[attr-defined]  # typeshed's pstats.Stats lacks it
        top = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:8]  # type: ignore[attr-defined]  # typeshed's pstats.Stats lacks it
        for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in top:
            profile_rows.append(
                {"function": _func_label(filename, line, func), "ncalls": ncalls,
                 "tottime": tottime, "cumtime": cumtime}
            )  # fmt: skip
        own = str(ROOT / "connector")
        stages = [kv for kv in stats.stats.items() if kv[0][0].startswith(own)]  # type: ignore[attr-defined]  # typeshed's pstats.Stats lacks it
        for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in sorted(
            stages, key=lambda kv: kv[1][3], reverse=True
        )[:8]:
            profile_cum.append(
                {"function": _func_label(filename, line, func), "ncalls": ncalls,
                 "tottime": tottime, "cumtime": cumtime}
            )  # fmt: skip
    else:
        rows, last = 0, None
        for batch in scan.to_batches():
            rows += batch.num_rows
            last = batch.column(0)[-1].as_py()
    op = time.perf_counter() - start
    cpu = self_cpu_s() - cpu0
    report = peak_rss_report()
    del table
    return {
        "client": "connector",
        "concurrency": 1 if mode == "conn-profile" else c,
        "rows": rows,
        "last_step": last,
        "op_s": op,
        "import_s": t1 - t0,
        "api_s": t2 - t1,
        "run_s": t3 - t2,
        "first_scan_s": t4 - t3,
        "rss_before_kb": rss_before,
        "core_rss_before_kb": None,
        "pandas_loaded": "pandas" in sys.modules,
        "py_cpu_s": cpu,
        "core_cpu_s": 0.0,
        "pages": scan.stats.pages,
        "bytes": scan.stats.bytes,
        "rss": report,
        "profile": profile_rows,
        "profile_cum": profile_cum,
        "profile_total_s": profile_total,
    }


def _child_sdk(
    mode: str, url: str, key: str, path: str, keys: list[str] | None = None
) -> dict[str, Any]:
    t0 = time.perf_counter()
    import wandb

    t1 = time.perf_counter()
    api = wandb.Api(api_key=key, overrides={"base_url": url}, timeout=120)
    t2 = time.perf_counter()
    run = api.run(path)
    t3 = time.perf_counter()
    for _ in run.scan_history(max_step=WARM_STEPS):
        pass  # first use, as for the connector
    t4 = time.perf_counter()
    _reset_counters(url)
    rss_before = proc_status_kb("self", "VmRSS")
    core_before = sum(proc_status_kb(c["pid"], "VmRSS") or 0 for c in peak_rss_report()["children"])
    core0, cpu0 = descendants_cpu_s(), self_cpu_s()
    start = time.perf_counter()
    kept: list[dict[str, Any]] | None = None
    if mode == "sdk-list":
        kept = list(run.scan_history(keys=keys))
        rows = len(kept)
        last = kept[-1]["_step"] if kept else None
    else:
        rows, last = 0, None
        for row in run.scan_history(keys=keys):
            rows += 1
            last = row["_step"]
    op = time.perf_counter() - start
    cpu, core = self_cpu_s() - cpu0, descendants_cpu_s() - core0
    report = peak_rss_report()
    del kept
    return {
        "client": "sdk",
        "concurrency": None,
        "rows": rows,
        "last_step": last,
        "op_s": op,
        "import_s": t1 - t0,
        "api_s": t2 - t1,
        "run_s": t3 - t2,
        "first_scan_s": t4 - t3,
        "rss_before_kb": rss_before,
        "core_rss_before_kb": core_before,
        "py_cpu_s": cpu,
        "core_cpu_s": core,
        "pages": None,
        "bytes": None,
        "rss": report,
        "profile": [],
        "profile_cum": [],
        "profile_total_s": 0.0,
    }


def _reset_counters(url: str) -> None:
    """Zero the emulator's request counters, so they cover the timed scan only."""
    import urllib.request

    req = urllib.request.Request(url + "/_emulator/reset", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


def _func_label(filename: str, line: int, func: str) -> str:
    if filename == "~":
        return func  # a builtin: "<method 'recv_into' of '_socket.socket' objects>"
    for marker in ("site-packages/", "/lib/python3"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    else:
        try:
            filename = str(Path(filename).resolve().relative_to(ROOT))
        except ValueError:
            pass
    return f"{func} ({filename}:{line})"


# == parent side ==================================================================================


@dataclass
class Case:
    key: str  # unique id, e.g. "100k/conn-stream/c3"
    mode: str
    group: str  # "full" or "large"
    steps: int
    path: str
    reps: int
    concurrency: int = 0  # 0 = the connector's default
    keys: tuple[str, ...] = ()  # scan_history(keys=[...]); () = every key


@dataclass
class Measurement:
    case: Case
    rep: int
    report: dict[str, Any]
    child: ChildResult
    server_cpu_s: float
    other_cores: float
    history_requests: int
    history_mb: float
    loadavg1: float

    @property
    def rows_per_s(self) -> float:
        return self.report["rows"] / self.report["op_s"]

    @property
    def py_mb(self) -> float:
        return self.child.maxrss_kb / MB

    @property
    def core_mb(self) -> float:
        return (
            sum(
                (c["vmhwm_kb"] or 0)
                for c in self.report["rss"]["children"]
                if "wandb-core" in c["name"]
            )
            / MB
        )

    @property
    def total_mb(self) -> float:
        return self.py_mb + self.core_mb

    @property
    def before_mb(self) -> float:
        r = self.report
        return ((r["rss_before_kb"] or 0) + (r["core_rss_before_kb"] or 0)) / MB


@dataclass
class Bench:
    args: argparse.Namespace
    emu: EmulatorProcess
    paths: dict[str, str]
    default_c: int
    sdk_folder: str
    results: list[Measurement] = field(default_factory=list)

    def measure(self, case: Case, rep: int, *, record: bool = True) -> Measurement:
        argv = [sys.executable, str(SCRIPT), "--child", case.mode, "--url", self.emu.url,
                "--path", case.path, "--expect", str(case.steps)]  # fmt: skip
        if case.concurrency:
            argv += ["--concurrency", str(case.concurrency)]
        if case.keys:
            argv += ["--keys", ",".join(case.keys)]
        extra = {KEY_ENV: self.emu.api_key}
        env = sdk_env(self.sdk_folder, extra) if case.mode.startswith("sdk") else child_env(extra)
        self.emu.reset()
        load1 = os.getloadavg()[0]
        server0 = self.emu.cpu_seconds()
        meter = CpuMeter().start()
        child = run_child(argv, env=env, timeout=self.args.timeout, cwd=ROOT)
        meter.stop()
        server = self.emu.cpu_seconds() - server0
        child.check()
        report = child.json()
        if not report["ok"]:
            raise RuntimeError(
                f"{case.key}: wrong result {report['rows']} rows, last step {report['last_step']}"
            )
        counters = self.emu.counters()
        hist = counters.get("by_field", {}).get("history", {})
        core_cpu_total = sum(c["cpu_s"] for c in report["rss"]["children"])
        child_cpu = child.user_s + child.system_s
        ours = child_cpu + server
        if child_cpu - report["rss"]["cpu_s"] < 0.5 * core_cpu_total:
            ours += (
                core_cpu_total  # wandb-core was not reaped by the child: its CPU is not in wait4's
            )
        other = max(0.0, meter.busy_s - ours) / meter.wall_s
        m = Measurement(case, rep, report, child, server, other, int(hist.get("requests", 0)),
                        hist.get("bytes", 0) / 1e6, load1)  # fmt: skip
        if record:
            self.results.append(m)
        rss = f"{m.py_mb:,.0f} MB" + (f" + core {m.core_mb:,.0f} MB" if m.core_mb else "")
        print(
            f"  {case.key:<24} rep {rep + 1}: {m.rows_per_s:>10,.0f} rows/s  "
            f"({report['op_s']:6.2f} s)  peak {rss}  other load {other:.2f} cores"
            + ("" if record else "  [warm-up, not recorded]"),
            flush=True,
        )
        return m

    def of(self, key: str) -> list[Measurement]:
        return [m for m in self.results if m.case.key == key]


def _default_concurrency() -> int:
    out = run_child(
        [sys.executable, "-c", "from connector.core.scan import DEFAULT_CONCURRENCY as c; print(c)"],
        cwd=ROOT,
    ).check()
    return int(out.stdout.strip())


def build_cases(args: argparse.Namespace, paths: dict[str, str], default_c: int) -> list[Case]:
    n, big = args.steps, args.large_steps
    tag, big_tag = _k(n), _k(big)
    full = [
        Case(f"{tag}/conn-stream/c{default_c}", "conn-stream", "full", n, paths["p"], args.reps),
        Case(f"{tag}/conn-arrow", "conn-arrow", "full", n, paths["p"], args.reps),
        Case(f"{tag}/sdk-list", "sdk-list", "full", n, paths["p"], args.reps),
        Case(f"{tag}/sdk-stream", "sdk-stream", "full", n, paths["p"], args.reps),
        Case(f"{tag}/conn-stream-nopd", "conn-stream-nopd", "full", n, paths["p"], args.reps),
    ]
    for c in args.concurrencies:
        if c != default_c:
            full.append(
                Case(f"{tag}/conn-stream/c{c}", "conn-stream", "full", n, paths["p"], args.reps, c)
            )
    large = [
        Case(
            f"{big_tag}/conn-stream/c{default_c}",
            "conn-stream",
            "large",
            big,
            paths["big"],
            args.reps,
        ),
        Case(f"{big_tag}/conn-arrow", "conn-arrow", "large", big, paths["big"], args.reps),
        Case(f"{big_tag}/sdk-list", "sdk-list", "large", big, paths["big"], args.sdk_large_reps),
    ]
    return full + large


def _k(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


# -- report --------------------------------------------------------------------------------------


def _case_row(ms: list[Measurement], label: str) -> str:
    r = ms[0].report
    core = [m.core_mb for m in ms]
    return (
        f"| {label} | {len(ms)} | {spread([m.report['op_s'] for m in ms], '{:.2f}')} s"
        f" | **{spread([m.rows_per_s for m in ms])}**"
        f" | {spread([m.py_mb for m in ms])}"
        f" | {spread(core) if r['client'] == 'sdk' else '-'}"
        f" | **{spread([m.total_mb for m in ms])}**"
        f" | {median([m.before_mb for m in ms]):,.0f}"
        f" | {median([m.report['py_cpu_s'] for m in ms]):.2f} / "
        f"{median([m.report['core_cpu_s'] for m in ms]):.2f} / {median([m.server_cpu_s for m in ms]):.2f}"
        f" | {median([m.history_requests for m in ms]):.0f} ({median([m.history_mb for m in ms]):.1f} MB)"
        f" | {spread([m.other_cores for m in ms], '{:.2f}')} |"
    )


TABLE_HEAD = (
    "| case | reps | scan wall | rows/s | Python peak RSS (MB) | wandb-core VmHWM (MB) | total peak (MB)"
    " | RSS before the scan (MB) | CPU s: client / wandb-core / server | `history` requests (body)"
    " | other load (cores) |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def _cpu_per_row(conn: list[Measurement], sdk: list[Measurement]) -> str:
    """Median CPU µs per row of the scan: less sensitive to scheduling noise than wall time."""
    if not conn or not sdk:
        return "-"

    def us(ms: list[Measurement]) -> float:
        return median(
            [1e6 * (m.report["py_cpu_s"] + m.report["core_cpu_s"]) / m.report["rows"] for m in ms]
        )

    return f"{us(conn):.1f} vs {us(sdk):.1f} ({us(conn) / us(sdk):.2f}×)"


def _noise_note(other: list[float], nproc: int) -> str:
    """A warning when other work used a good share of the CPUs during the measurements."""
    if not other or median(other) < 0.25:
        return ""
    return (
        f"**Noisy run.** Other work used {median(other):.2f} cores on average "
        f"[{min(other):.2f}..{max(other):.2f}] of the {nproc} during the measurements. Wall-time figures"
        " (rows/s and their ratios) are slowed and spread out, the SDK's most (its Python process and"
        " wandb-core hand each page to each other, so every hand-off waits for a free core); CPU µs"
        " per row and peak RSS are the more reliable comparisons."
    )


def _ratio(a: list[float], b: list[float]) -> str:
    if not a or not b:
        return "-"
    return f"{median(a) / median(b):.2f}×"


def render(bench: Bench, info: dict[str, Any], profile: Measurement, load_end: tuple[float, ...],
           command: str, started: str, elapsed: float) -> str:  # fmt: skip
    a = bench.args
    c = bench.default_c
    tag, big = _k(a.steps), _k(a.large_steps)
    k = bench.of
    lines: list[str] = []
    add = lines.append
    add("# Scan benchmark: connector vs official SDK (full-row `scan_history`)")
    add("")
    add(
        f"Recorded {started} by `benchmarks/bench_scan.py` in {elapsed / 60:.1f} min. Command (repository root, venv active):"
    )
    add("")
    add(f"```\n{command}\n```")
    add("")
    add("## Machine")
    add("")
    add(machine_markdown(info))
    add(f"- load average at the end: {' / '.join(f'{x:.2f}' for x in load_end)}")
    add(
        f"- emulator: one process for the whole run, `--warm`, startup {bench.emu.startup_s:.1f} s, "
        f"runs `{SPEC.format(project='p', steps=a.steps)}` and `{SPEC.format(project='big', steps=a.large_steps)}`"
    )
    add("")
    add('The emulator and each client process share the same CPUs. "other load" is the CPU used by')
    add("everything *else* on the machine during a measurement, in average busy cores "
        f"(out of {info['nproc']}); anything well above 0 means the figures are noisy.")  # fmt: skip
    add("")
    note = _noise_note([m.other_cores for m in bench.results], info["nproc"])
    if note:
        add(note)
        add("")

    sdk_stream, sdk_list = k(f"{tag}/sdk-stream"), k(f"{tag}/sdk-list")
    conn_stream, conn_arrow = k(f"{tag}/conn-stream/c{c}"), k(f"{tag}/conn-arrow")
    rps = lambda ms: [m.rows_per_s for m in ms]  # noqa: E731
    tot = lambda ms: [m.total_mb for m in ms]  # noqa: E731

    add(f"## 1. Full scan, {a.steps:,} steps × 23 keys (1000-row pages)")
    add("")
    add(TABLE_HEAD)
    for key, label in ((f"{tag}/conn-stream/c{c}", LABELS["conn-stream"] + f" (concurrency {c}, default)"),
                       (f"{tag}/conn-arrow", LABELS["conn-arrow"]),
                       (f"{tag}/sdk-list", LABELS["sdk-list"]),
                       (f"{tag}/sdk-stream", LABELS["sdk-stream"]),
                       (f"{tag}/conn-stream-nopd", LABELS["conn-stream-nopd"] + f" (concurrency {c})")):  # fmt: skip
        if k(key):
            add(_case_row(k(key), label))
    add("")
    add("### Connector streamed, by concurrency (pages in flight)")
    add("")
    add(TABLE_HEAD)
    for conc in sorted(set(a.concurrencies) | {c}):
        ms = k(f"{tag}/conn-stream/c{conc}")
        if ms:
            add(
                _case_row(
                    ms,
                    f"concurrency {conc}" + (" (default; same runs as above)" if conc == c else ""),
                )
            )
    add("")

    add(f"## 2. Peak RSS on a {a.large_steps:,}-step run")
    add("")
    add(TABLE_HEAD)
    for key, label in ((f"{big}/conn-stream/c{c}", LABELS["conn-stream"]),
                       (f"{big}/conn-arrow", LABELS["conn-arrow"]),
                       (f"{big}/sdk-list", LABELS["sdk-list"])):  # fmt: skip
        if k(key):
            add(_case_row(k(key), label))
    big_sdk = k(f"{big}/sdk-list")
    if big_sdk and len(big_sdk) < a.reps:
        add("")
        add(f"The SDK ran {len(big_sdk)} time(s) on this run (`--sdk-large-reps`), because one scan takes "
            f"{median([m.report['op_s'] for m in big_sdk]):.0f} s and over 1 GB.")  # fmt: skip
    add("")

    add("## 3. Ratios (medians; connector ÷ SDK)")
    add("")
    big_arrow, big_stream = k(f"{big}/conn-arrow"), k(f"{big}/conn-stream/c{c}")
    pairs = [
        (f"{tag}, streamed: connector `to_batches()` ÷ SDK streamed", conn_stream, sdk_stream),
        (f"{tag}, all rows kept: connector `to_arrow()` ÷ SDK `list()`", conn_arrow, sdk_list),
        (f"{tag}: connector streamed ÷ SDK `list()`", conn_stream, sdk_list),
        (
            f"{tag}, streamed, pandas not importable: connector ÷ SDK streamed",
            k(f"{tag}/conn-stream-nopd"),
            sdk_stream,
        ),
        (f"{big}: connector `to_arrow()` ÷ SDK `list()`", big_arrow, big_sdk),
        (f"{big}: connector streamed ÷ SDK `list()`", big_stream, big_sdk),
    ]
    add(
        "| comparison | rows/s ratio | peak RSS ratio (total) | CPU µs/row (client + wandb-core): connector vs SDK |"
    )
    add("|---|---|---|---|")
    for label, conn, sdk in pairs:
        add(f"| {label} | **{_ratio(rps(conn), rps(sdk))}** | **{_ratio(tot(conn), tot(sdk))}** | {_cpu_per_row(conn, sdk)} |")  # fmt: skip
    add("")
    add(
        "CPU per row is less sensitive to other load than wall time: it ignores time spent waiting for a core."
    )
    add("")
    if sdk_list and a.steps == 100_000:
        add(f"Sanity check against the anchor: the SDK's `list(scan_history())` at 100k ran at "
            f"{median(rps(sdk_list)):,.0f} rows/s here vs {ANCHOR_SDK_LIST_100K:,} rows/s in "
            "`performance-anchors.md` (idle machine, lighter all-float rows).")  # fmt: skip
        add("")

    add("## 4. Fixed costs per process (not in the rows/s above; medians over the N-step runs)")
    add("")
    add(
        "| client | import | `Api(...)` | `api.run(path)` | first scan of one page (untimed warm-up) |"
    )
    add("|---|---|---|---|---|")
    for client, ms in (
        ("connector", conn_stream + conn_arrow),
        ("SDK (starts wandb-core)", sdk_list + sdk_stream),
    ):
        if ms:
            add(f"| {client} | {median([m.report['import_s'] for m in ms]):.2f} s | "
                f"{median([m.report['api_s'] for m in ms]):.2f} s | {median([m.report['run_s'] for m in ms]):.3f} s | "
                f"{median([m.report['first_scan_s'] for m in ms]):.2f} s |")  # fmt: skip
    add("")

    add("## 5. Where the time goes (cProfile, one connector streamed scan)")
    add("")
    pr = profile.report
    add(f"{a.steps:,} steps at **concurrency 1**, so fetching, decoding and the Arrow build all run on the "
        f"profiled main thread. Scan wall time {pr['op_s']:.2f} s under the profiler "
        f"({profile.rows_per_s:,.0f} rows/s), profiled total {pr['profile_total_s']:.2f} s. Top 8 by tottime:")  # fmt: skip
    add("")
    add("| function | calls | tottime s | % of total | cumtime s |")
    add("|---|---|---|---|---|")
    for f in pr["profile"]:
        share = 100 * f["tottime"] / pr["profile_total_s"] if pr["profile_total_s"] else 0
        add(
            f"| `{f['function']}` | {f['ncalls']:,} | {f['tottime']:.3f} | {share:.0f} % | {f['cumtime']:.3f} |"
        )
    add("")
    if pr.get("profile_cum"):
        add(
            "The same profile by stage: the connector's own functions by cumulative time (callees included):"
        )
        add("")
        add("| function | calls | cumtime s | % of total |")
        add("|---|---|---|---|")
        for f in pr["profile_cum"]:
            share = 100 * f["cumtime"] / pr["profile_total_s"] if pr["profile_total_s"] else 0
            add(f"| `{f['function']}` | {f['ncalls']:,} | {f['cumtime']:.3f} | {share:.0f} % |")
        add("")

    add("## 6. All measurements")
    add("")
    add(
        "| case | rep | rows | scan s | rows/s | py ru_maxrss MB | py VmHWM MB | wandb-core MB | process wall s | load avg 1 min | other load |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    for m in bench.results:
        hwm = m.report["rss"]["vmhwm_kb"]
        add(f"| {m.case.key} | {m.rep + 1} | {m.report['rows']:,} | {m.report['op_s']:.2f} | {m.rows_per_s:,.0f} | "
            f"{m.py_mb:,.0f} | {hwm / MB if hwm else 0:,.0f} | {m.core_mb:,.0f} | {m.child.wall_s:.2f} | {m.loadavg1:.2f} | {m.other_cores:.2f} |")  # fmt: skip
    add("")
    add("## Method")
    add("")
    add(
        "See the module docstring of `benchmarks/bench_scan.py` and `benchmarks/README.md`. In short: one"
    )
    add(
        "emulator process (pre-encoded, `--warm`) for the whole run; one fresh client process per measurement;"
    )
    add(
        "rows/s over the scan only (import, `Api()` and `api.run()` timed apart); every scan checked for the"
    )
    add(
        "row count and last step; peak RSS read with the rows still alive (Python `ru_maxrss` via `os.wait4`,"
    )
    add(
        "wandb-core `VmHWM` read by the SDK process before exit); cases interleaved across repetitions."
    )
    add("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="10k/20k steps, 1 repetition, no file written"
    )
    p.add_argument("--reps", type=int, help="repetitions per case (default 3; 1 with --quick)")
    p.add_argument(
        "--steps", type=int, help="steps of the main run (default 100000; 10000 with --quick)"
    )
    p.add_argument(
        "--large-steps", type=int, help="steps of the RSS run (default 300000; 20000 with --quick)"
    )
    p.add_argument("--sdk-large-reps", type=int, default=1, help="SDK repetitions on the large run")
    p.add_argument("--concurrencies", default="1,2,3,4", help="connector concurrencies to sweep")
    p.add_argument(
        "--output", type=Path, help=f"results file (default {DEFAULT_OUTPUT.relative_to(ROOT)})"
    )
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per child process")
    a = p.parse_args(argv)
    a.reps = a.reps or (1 if a.quick else 3)
    a.steps = a.steps or (10_000 if a.quick else 100_000)
    a.large_steps = a.large_steps or (20_000 if a.quick else 300_000)
    a.sdk_large_reps = min(a.sdk_large_reps, a.reps)
    a.concurrencies = [int(x) for x in str(a.concurrencies).split(",") if x.strip()]
    output = None if a.no_write else (a.output or (None if a.quick else DEFAULT_OUTPUT))
    command = command_line(argv)

    started = time.strftime("%Y-%m-%d %H:%M %Z")
    t_start = time.perf_counter()
    info = machine_info()
    print(f"machine: {info['nproc']} CPUs, {info['cpu_model']}, {info['ram_gib']} GiB; "
          f"load average {info['loadavg']}", flush=True)  # fmt: skip
    specs = [
        SPEC.format(project="p", steps=a.steps),
        SPEC.format(project="big", steps=a.large_steps),
    ]
    default_c = _default_concurrency()
    print(f"starting emulator ({', '.join(specs)}, --warm) ...", flush=True)
    with (
        EmulatorProcess(specs, extra_args=LIVE_PAGES) as emu,
        tempfile.TemporaryDirectory(prefix="bench-scan-sdk-") as folder,
    ):
        served = emu.runs()
        paths = {
            name: next(x for x in served if x.startswith(f"bench/{name}/")) for name in ("p", "big")
        }
        print(
            f"emulator at {emu.url} (startup {emu.startup_s:.1f} s, RSS {emu.rss_kb()[0] or 0:,} kB)",
            flush=True,
        )
        bench = Bench(a, emu, paths, default_c, folder)
        cases = build_cases(a, paths, default_c)
        if not a.quick:  # one scan per client first: page cache, emulator threads and sockets
            print("warm-up (not recorded):", flush=True)
            for mode in ("conn-stream", "sdk-stream"):
                case = Case(f"warm/{mode}", mode, "warm", a.steps, paths["p"], 1)
                bench.measure(case, 0, record=False)
        for group in ("full", "large"):
            group_cases = [c for c in cases if c.group == group]
            print(f"{group} run ({group_cases[0].steps:,} steps):", flush=True)
            for rep in range(max(c.reps for c in group_cases)):
                for case in group_cases:
                    if rep < case.reps:
                        bench.measure(case, rep)
        print("cProfile of one connector streamed scan (concurrency 1):", flush=True)
        profile = bench.measure(
            Case("profile/conn-stream/c1", "conn-profile", "profile", a.steps, paths["p"], 1),
            0,
            record=False,
        )
    load_end = os.getloadavg()
    text = render(bench, info, profile, load_end, command, started, time.perf_counter() - t_start)
    print()
    print(text)
    if output is not None:
        print()
        write_result(output, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
