"""Chaos: seeded API faults + ``kill -9`` at seeded moments + resume == a clean export; and two
exports of the same destination at once.

1. `test_kill9_under_faults_then_resume_equals_clean_export`: an emulator serves 20 synthetic runs
   (dense, sparse keys, a run starting at step 1000, a run with a 5000-step gap, other key counts,
   NaN and ±inf values, nested and histogram keys). A clean export (faults off) is the reference.
   Then GraphQL faults (429/500/502/503/reset/truncate, seeded) and a per-request latency are
   switched on and ``python -m connector.cli export`` runs as a subprocess that is ``kill -9``-ed at
   a seeded moment, 0.2-1.0 s after the first history page of that start reached the emulator (or,
   one start in four, after its first request of any kind: listing runs, opening the destination),
   then started again (the same command), until `kills` kills landed on a running export. After
   every kill the destination must hold no duplicate, no row that is not upstream, every step up
   to each watermark and (DuckDB/PostgreSQL, where rows and watermark commit together) nothing
   above it. A final resume (latency off, faults on at a lower rate) must exit 0; then every
   (entity, project, run_id, _step) is present exactly once, every value equals the reference
   (NaN-aware) and the watermarks are equal. One summary line per destination goes to the terminal,
   also when the test passes. Should an export complete before enough kills landed (a faster
   exporter), two more runs are added upstream so that there is more to kill, and the reference
   export runs again at the end over what the emulator then serves.

   The CLI has no fast-retry option: each non-429 fault costs its export the transport's first
   backoff (about 1 s), which is why the rates are low and lower still for the final resume.

2. `test_two_exports_at_once_one_waits_or_reports_busy`: two identical exports start at the same
   moment into the same destination. Each must exit 0 (it ran, or waited its turn) or 4 (the
   destination is busy: a one-line message naming another export); a third run then exits 0 and
   the destination equals the reference.

Defaults fit CI (test 1: about 50 s over the three destinations; test 2: about 15 s).
``pytest --chaos-long``: more steps, 30 kills, three seeds (about 8 minutes); ``--chaos-seed N``
runs one seed (every seed is printed in the summary line and in failure messages).
"""

from __future__ import annotations

import json
import math
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_export_support import (  # noqa: E402
    KINDS,
    ROOT,
    cli_env,
    make_dest,
    read_history,
    read_states,
    same_value,
    snapshot,
)

from connector.api import Api  # noqa: E402
from connector.emulator import FaultSpec, synthetic_runs  # noqa: E402
from connector.export import export  # noqa: E402
from tests.conftest import live_pages_service

FAULT_KINDS = ("429", "500", "502", "503", "reset", "truncate")
EXIT_BUSY = 4  # planned exit status of "another export is running on this destination"


@dataclass(frozen=True)
class Profile:
    """How big a chaos round is."""

    steps: int  # rows per run
    kills: int  # kill -9 that must land while an export runs
    latency: float  # seconds per GraphQL request while killing (spreads the export over time)
    fault_rate: float  # while killing
    final_fault_rate: (
        float  # during the final resume (each non-429 fault costs the CLI's 1 s backoff)
    )
    seeds: tuple[int, ...]


CI = Profile(
    steps=400, kills=10, latency=0.015, fault_rate=0.05, final_fault_rate=0.025, seeds=(1,)
)
LONG = Profile(
    steps=1500, kills=30, latency=0.015, fault_rate=0.08, final_fault_rate=0.05, seeds=(1, 2, 3)
)
PROJECT = "chaos/p"
CHUNK_STEPS = 100
CONCURRENCY = 2


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "chaos_seed" in metafunc.fixturenames:
        seed = metafunc.config.getoption("--chaos-seed")
        long = metafunc.config.getoption("--chaos-long")
        seeds = (seed,) if seed is not None else (LONG if long else CI).seeds
        metafunc.parametrize("chaos_seed", seeds, ids=[f"seed{s}" for s in seeds])


@pytest.fixture
def profile(request: pytest.FixtureRequest) -> Profile:
    return LONG if request.config.getoption("--chaos-long") else CI


# -- the runs ----------------------------------------------------------------------------------------
def chaos_runs(seed: int, steps: int) -> list[Any]:
    """20 runs of `steps` rows: 17 with 12 keys (run 0 dense; the others with sparse keys; run 1
    from step 1000; run 2 with a 5000-step gap), 2 with 20 keys (dense / from step 1000), 1 with 3."""
    runs = (
        synthetic_runs(f"{PROJECT}:runs=17,steps={steps},keys=12,seed={seed}")
        + synthetic_runs(f"{PROJECT}:runs=2,steps={steps},keys=20,seed={seed + 100_000}")
        + synthetic_runs(f"{PROJECT}:runs=1,steps={steps},keys=3,seed={seed + 200_000}")
    )
    ids = [r.meta.run_id for r in runs]
    assert len(set(ids)) == len(ids), f"run ids collide for seed {seed}: {ids}"
    return runs


def reserve_runs(seed: int, batch: int, steps: int) -> list[Any]:
    """More runs to add upstream when an export finished before enough kills landed."""
    return synthetic_runs(f"{PROJECT}:runs=2,steps={steps},keys=12,seed={seed + 300_000 + batch}")


# -- the command -------------------------------------------------------------------------------------
def export_args(dest: str) -> list[str]:
    """The export command's arguments (``--timeout``: how long the API may keep failing)."""
    return [
        PROJECT, "--to", dest, "--chunk-steps", str(CHUNK_STEPS), "--concurrency", str(CONCURRENCY),
        "--timeout", "60", "--json", "--page-size", "25",
    ]  # fmt: skip


def failures(stdout: str) -> str:
    """The failed runs of a ``--json`` summary (for failure messages)."""
    try:
        return f"failed runs: {json.loads(stdout)['failed']}"
    except (ValueError, KeyError, TypeError):
        return f"stdout: {stdout[-500:]!r}" if stdout.strip() else ""


def start_export(dest: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "export", *export_args(dest)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def upstream_keys(emu: Any) -> set[tuple[Any, ...]]:
    """Every (entity, project, run_id, _step) the emulator serves: the truth, without the exporter."""
    out = set()
    for path in emu.paths():
        entity, project, run_id = path.split("/")
        out.update(
            (entity, project, run_id, int(s)) for s in emu.run(entity, project, run_id).steps()
        )
    return out


def reference_export(kind: str, emu: Any, tmp_path: Path, tag: str) -> str:
    """A clean export (call with faults off) of everything the emulator serves."""
    dest = make_dest(kind, tmp_path, tag)
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    summary = export(PROJECT, dest, api=api, concurrency=4)  # other chunks than the exports tested
    assert summary.ok, summary.failed
    return dest


# -- comparisons -------------------------------------------------------------------------------------
def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["entity"], row["project"], row["run_id"], int(row["_step"]))


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist() if table.num_rows else []


@dataclass
class HistoryDiff:
    rows: int = 0
    reference_rows: int = 0
    lost: list[tuple[Any, ...]] = field(default_factory=list)
    duplicated: list[tuple[Any, ...]] = field(default_factory=list)
    unexpected: list[tuple[Any, ...]] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected or self.mismatched)

    def describe(self) -> str:
        return (
            f"rows={self.rows}/{self.reference_rows} lost={len(self.lost)} duplicated={len(self.duplicated)} "
            f"unexpected={len(self.unexpected)} mismatched_values={len(self.mismatched)}"
        )

    def details(self) -> str:
        return (
            f"{self.describe()}; first lost {self.lost[:5]}; first duplicated {self.duplicated[:5]}; "
            f"first unexpected {self.unexpected[:5]}; first mismatches {self.mismatched[:5]}"
        )


def history_diff(reference: pa.Table, got: pa.Table) -> HistoryDiff:
    """Row-by-row on (entity, project, run_id, _step): lost, duplicated, unexpected keys, and every
    column of either side compared NaN-aware (`same_value`; a column missing on one side is NULL)."""
    ref_rows, got_rows = _rows(reference), _rows(got)
    ref = {_key(r): r for r in ref_rows}
    assert len(ref) == len(ref_rows), "the reference itself has duplicate keys"
    counts = Counter(_key(r) for r in got_rows)
    diff = HistoryDiff(rows=len(got_rows), reference_rows=len(ref_rows))
    diff.lost = sorted(k for k in ref if k not in counts)
    diff.duplicated = sorted(k for k, n in counts.items() if n > 1)
    diff.unexpected = sorted(k for k in counts if k not in ref)
    columns = sorted(set(reference.column_names) | set(got.column_names))
    for row in got_rows:
        want = ref.get(_key(row))
        if want is None:
            continue
        for c in columns:
            if not same_value(row.get(c), want.get(c)):
                diff.mismatched.append(f"{_key(row)} {c}: {row.get(c)!r} != {want.get(c)!r}")
    return diff


def read_keys(kind: str, dest: str) -> list[tuple[Any, ...]]:
    """The (entity, project, run_id, _step) of every `history` row (fast: the key columns only)."""
    sql = "SELECT entity, project, run_id, _step FROM {}"
    if kind == "parquet":
        base = Path(dest) / "history"
        if not any(base.glob("**/*.parquet")):
            return []
        import duckdb

        pattern = str(base / "**" / "*.parquet").replace("'", "''")
        source = (
            f"read_parquet('{pattern}', hive_partitioning = true, union_by_name = true, "
            "hive_types_autocast = false)"
        )
        con = duckdb.connect()
        try:
            return [(e, p, r, int(s)) for e, p, r, s in con.sql(sql.format(source)).fetchall()]
        finally:
            con.close()
    if kind == "duckdb":
        import duckdb

        con = duckdb.connect(dest, read_only=True)
        try:
            return [(e, p, r, int(s)) for e, p, r, s in con.sql(sql.format("history")).fetchall()]
        finally:
            con.close()
    import adbc_driver_postgresql.dbapi as pg

    con = pg.connect(dest)
    try:
        cur = con.cursor()
        cur.execute(sql.format("history"))
        return [(e, p, r, int(s)) for e, p, r, s in cur.fetchall()]
    finally:
        con.close()


def check_resumable(kind: str, dest: str, ref_keys: set[tuple[Any, ...]]) -> list[str]:
    """Problems of a destination after a kill: duplicates, rows that are not the reference's, steps
    at or below a watermark that are missing, and (DuckDB/PostgreSQL, rows and watermark commit
    together) rows above their run's watermark."""
    if kind != "postgres" and not Path(dest).exists():
        return []
    try:
        keys = read_keys(kind, dest)
        states = read_states(kind, dest)
    except Exception as exc:  # noqa: BLE001 - nothing committed yet (no table, no state file)
        text = str(exc).lower()
        if "does not exist" in text or "no such file" in text or "not found" in text:
            return []
        raise
    problems: list[str] = []
    counts = Counter(keys)
    dups = [k for k, n in counts.items() if n > 1]
    if dups:
        problems.append(f"{len(dups)} duplicated keys, e.g. {sorted(dups)[:3]}")
    extra = [k for k in counts if k not in ref_keys]
    if extra:
        problems.append(f"{len(extra)} rows not in the reference, e.g. {sorted(extra)[:3]}")
    marks = {k[:3]: v[0] for k, v in states.items() if k[3] == "history" and v[0] is not None}
    missing = [k for k in ref_keys if k[:3] in marks and k[3] <= marks[k[:3]] and k not in counts]
    if missing:
        problems.append(
            f"{len(missing)} steps at or below their watermark missing, e.g. {sorted(missing)[:3]}"
        )
    if kind != "parquet":
        above = [k for k in counts if k[3] > marks.get(k[:3], -math.inf)]
        if above:
            problems.append(
                f"{len(above)} rows above their run's watermark, e.g. {sorted(above)[:3]}"
            )
    return problems


def fault_counts(emu: Any) -> dict[str, int]:
    status = emu.counters()["status"]
    return {k: status[k] for k in FAULT_KINDS if status.get(k)}


def request_count(emu: Any, field_name: str | None = None) -> int:
    """GraphQL requests so far (`field_name`: answered requests touching that field)."""
    counters = emu.counters()
    if field_name is None:
        return counters["requests"]
    return counters["by_field"].get(field_name, {}).get("requests", 0)


def wait_for_request(
    emu: Any, proc: subprocess.Popen[str], field_name: str | None, before: int, timeout: float = 60
) -> bool:
    """Wait until `request_count(emu, field_name)` passes `before` (False if `proc` ended first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if request_count(emu, field_name) > before:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    raise AssertionError(f"no {field_name or 'GraphQL'} request from the export within {timeout}s")


# -- 1. faults + kill -9 + resume --------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_kill9_under_faults_then_resume_equals_clean_export(
    kind: str, chaos_seed: int, profile: Profile, make_emulator: Any, tmp_path: Path, capsys: Any
) -> None:
    started = time.monotonic()
    kind_no = KINDS.index(kind)
    fault_seed = chaos_seed * 1000 + kind_no
    final_fault_seed = fault_seed + 500
    kill_seed = f"chaos-kill-{kind}-{chaos_seed}"
    seeds = f"kind={kind} seed={chaos_seed} data_seed={chaos_seed} fault_seed={fault_seed} final_fault_seed={final_fault_seed} kill_seed={kill_seed!r}"
    print(f"CHAOS {seeds} steps={profile.steps} kills={profile.kills}")  # shown on failure

    emu = make_emulator(chaos_runs(chaos_seed, profile.steps), service=live_pages_service())
    ref_dest = reference_export(kind, emu, tmp_path, "ref")
    reference = read_history(kind, ref_dest)
    ref_keys = upstream_keys(emu)
    assert Counter(read_keys(kind, ref_dest)) == Counter(ref_keys), (
        "the clean export is not one row per step"
    )
    phases = {"reference": time.monotonic() - started}

    dest = make_dest(kind, tmp_path, "chaos")
    env = cli_env(emu)
    emu.reset_counters()
    emu.set_faults(
        FaultSpec(rate=profile.fault_rate, kinds=FAULT_KINDS, seed=fault_seed, retry_after=0.01)
    )
    emu.latency = profile.latency
    rng = random.Random(kill_seed)
    kills = starts = busy = finished = 0
    reserve = 0
    starts_log: list[str] = []  # what each start did, for failure messages
    checking = 0.0
    mark = time.monotonic()
    while kills < profile.kills:
        assert starts < 3 * profile.kills + 10, (
            f"{seeds}: too many starts without kills landing: {starts_log[-10:]}"
        )
        # the kill lands 0.2-1.0 s after the first request of this start (1 in 4, so that some land
        # while listing runs and opening the destination) or after its first history page
        anchor = "history" if rng.random() < 0.75 else None
        delay = rng.uniform(0.2, 1.0)
        before = request_count(emu, anchor)
        proc = start_export(dest, env)
        starts += 1
        if wait_for_request(emu, proc, anchor, before):
            time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
        rc = proc.returncode
        starts_log.append(
            f"start {starts}: {delay:.2f}s after the first {anchor or 'GraphQL'} request: rc {rc}"
        )
        if rc == -signal.SIGKILL:
            kills += 1
            t0 = time.monotonic()
            problems = check_resumable(kind, dest, ref_keys)
            checking += time.monotonic() - t0
            assert not problems, f"{seeds}: after kill {kills} ({starts_log[-1]}): {problems}"
        elif rc == EXIT_BUSY:  # the killed export's lock may take a moment to go away
            busy += 1
            starts_log[-1] += f" busy: {err.strip()[:200]}"
        elif rc == 0:  # finished before the kill: give it more to do
            finished += 1
            assert reserve < 5, (
                f"{seeds}: the export keeps finishing before the kill: {starts_log[-10:]}"
            )
            for run in reserve_runs(chaos_seed, reserve, profile.steps):
                emu.add_run(run)
            ref_keys = upstream_keys(emu)
            reserve += 1
        else:
            pytest.fail(
                f"{seeds}: start {starts} exited {rc} (not killed): {err[-3000:]} {failures(out)}"
            )

    phases["kills"] = time.monotonic() - mark - checking
    phases["checks"] = checking
    mark = time.monotonic()
    emu.latency = 0.0
    emu.set_faults(
        FaultSpec(
            rate=profile.final_fault_rate,
            kinds=FAULT_KINDS,
            seed=final_fault_seed,
            retry_after=0.01,
        )
    )
    before_final = (emu.counters()["requests"], sum(fault_counts(emu).values()))
    final = start_export(dest, env)
    out, err = final.communicate(timeout=600)
    phases["final"] = time.monotonic() - mark
    assert final.returncode == 0, (
        f"{seeds}: the final resume exited {final.returncode}: {err[-3000:]} {failures(out)}"
    )
    faults = fault_counts(emu)
    requests = emu.counters()["requests"]
    final_work = f"final: {requests - before_final[0]} requests, {sum(faults.values()) - before_final[1]} faults"
    emu.set_faults(None)

    if reserve:  # runs were added upstream: the reference covers them too
        ref_dest = reference_export(kind, emu, tmp_path, "ref2")
        reference = read_history(kind, ref_dest)
    got = read_history(kind, dest)
    diff = history_diff(reference, got)
    ref_states, got_states = read_states(kind, ref_dest), read_states(kind, dest)
    wrong_marks = sorted(
        k for k in set(ref_states) | set(got_states) if ref_states.get(k) != got_states.get(k)
    )
    line = (
        f"CHAOS {kind}: kills={kills} starts={starts} busy={busy} finished_early={finished} "
        f"faults={sum(faults.values())} {faults} requests={requests} runs={len(emu.paths())} "
        f"({final_work}) {diff.describe()} watermarks={len(got_states) - len(wrong_marks)}/{len(ref_states)} equal "
        f"elapsed={time.monotonic() - started:.1f}s ("
        + " ".join(f"{k}={v:.1f}s" for k, v in phases.items())
        + f") [{seeds} fault_rate={profile.fault_rate}/{profile.final_fault_rate} "
        f"latency={profile.latency} steps={profile.steps}]"
    )
    with capsys.disabled():
        print("\n" + line)
    assert diff.ok, f"{seeds}: {diff.details()}"
    assert not wrong_marks, f"{seeds}: watermarks differ: " + "; ".join(
        f"{k}: {got_states.get(k)} != {ref_states.get(k)}" for k in wrong_marks[:5]
    )
    assert snapshot(kind, dest) == snapshot(kind, ref_dest), f"{seeds}: snapshots differ (columns?)"
    assert kills >= profile.kills and sum(faults.values()) > 0, line


# -- 2. two exports at once --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_two_exports_at_once_one_waits_or_reports_busy(
    kind: str, profile: Profile, make_emulator: Any, tmp_path: Path, capsys: Any
) -> None:
    rounds = 3 if profile is LONG else 1
    emu = make_emulator(chaos_runs(7, 300))
    ref_dest = reference_export(kind, emu, tmp_path, "ref")
    want = snapshot(kind, ref_dest)
    env = cli_env(emu)
    for i in range(rounds):
        dest = make_dest(kind, tmp_path, f"twice{i}")
        emu.latency = 0.01  # each export takes a few seconds: the two overlap
        procs = [start_export(dest, env) for _ in range(2)]
        results = []
        for p in procs:
            out, err = p.communicate(timeout=300)
            results.append((p.returncode, out, err))
        emu.latency = 0.0
        codes = [rc for rc, _, _ in results]
        for rc, out, err in results:
            assert rc in (0, EXIT_BUSY), (
                f"round {i}: exit {rc} (want 0, or {EXIT_BUSY} when busy): {err[-3000:]} {failures(out)}"
            )
            if rc == EXIT_BUSY:
                lines = err.strip().splitlines()
                assert len(lines) == 1, (
                    f"round {i}: the busy message is not one line: {err[-2000:]}"
                )
                assert "another export" in lines[0].lower(), (
                    f"round {i}: busy message: {lines[0]!r}"
                )
        busy = [e.strip() for rc, _, e in results if rc == EXIT_BUSY]
        with capsys.disabled():
            print(
                f"\nTWO EXPORTS {kind} round {i}: exit codes {codes}"
                + (f"; busy: {busy[0]!r}" if busy else "")
            )
        assert 0 in codes, (
            f"round {i}: both exports reported busy: {[e.strip() for _, _, e in results]}"
        )
        third = subprocess.run(
            [sys.executable, "-m", "connector.cli", "export", *export_args(dest)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert third.returncode == 0, (
            f"round {i} (first two: {codes}): third run exited {third.returncode}: {third.stderr[-3000:]} {failures(third.stdout)}"
        )
        got = snapshot(kind, dest)
        diff = history_diff(read_history(kind, ref_dest), read_history(kind, dest))
        assert diff.ok, f"round {i} (exit codes {codes}): {diff.details()}"
        assert got == want, (
            f"round {i} (exit codes {codes}): watermarks or columns differ from the reference"
        )
