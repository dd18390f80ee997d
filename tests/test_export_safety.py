"""Export safety: the exporter only replaces what it wrote, changed options merge instead of
blocking the destination, typos and unusable destinations fail up front, odd keys are exported.

Each test reproduces a stumble a user met (named in its docstring) over real HTTP to the emulator,
with real DuckDB, PostgreSQL and Parquet destinations; the truth is a clean export or the
generator's own rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_export_support import (  # noqa: E402
    KINDS,
    cli_env,
    make_dest,
    read_history,
    read_states,
    run_cli,
    same_value,
    snapshot,
)

from connector.api import Api  # noqa: E402
from connector.core.rundata import MemoryRun, RunMeta  # noqa: E402
from connector.emulator import synthetic_runs  # noqa: E402
from connector.emulator.demo_runs import demo_runs  # noqa: E402
from connector.export import export  # noqa: E402


@pytest.fixture
def two_projects(make_emulator):
    """demo/mnist (3 runs) and acme/vision (2 runs) on one emulator."""
    return make_emulator([*demo_runs(), *synthetic_runs("acme/vision:runs=2,steps=400,keys=4,seed=5")])


def _api(emu):
    return Api(api_key=emu.api_key, base_url=emu.base_url)


def _rows(kind, dest, table="history"):
    t = read_history(kind, dest, table)
    return t.to_pylist() if t.num_rows else []


def _by_project(rows):
    out: dict[str, int] = {}
    for r in rows:
        out[f"{r['entity']}/{r['project']}"] = out.get(f"{r['entity']}/{r['project']}", 0) + 1
    return out


# -- 1. ownership ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_full_refresh_replaces_only_its_own_sources(kind, two_projects, tmp_path):
    """Stumble: --full-refresh of one project deleted another project's rows and unrelated files."""
    dest = make_dest(kind, tmp_path, "own")
    api = _api(two_projects)
    assert export("demo/mnist", dest, api=api, chunk_steps=700).ok
    assert export("acme/vision", dest, api=api, chunk_steps=100).ok
    if kind == "parquet":
        (Path(dest) / "notes.txt").write_text("mine")
        (Path(dest) / "other").mkdir()
        (Path(dest) / "other" / "keep.bin").write_bytes(b"\x00\x01")
    before = _by_project(_rows(kind, dest))
    assert before == {"demo/mnist": 9500, "acme/vision": 800}
    states_before = read_states(kind, dest)

    plan = export("acme/vision", dest, api=api, full_refresh=True, dry_run=True)
    assert sorted(plan.replaces) == sorted(p for p in two_projects.paths() if p.startswith("acme/"))
    assert all(item["action"] == "replace" for item in plan.plan)

    summary = export("acme/vision", dest, api=api, chunk_steps=100, full_refresh=True)
    assert summary.ok and summary.rows == 800
    assert _by_project(_rows(kind, dest)) == before
    states_after = read_states(kind, dest)
    assert {k: v for k, v in states_after.items() if k[0] == "demo"} == {
        k: v for k, v in states_before.items() if k[0] == "demo"
    }
    if kind == "parquet":
        assert (Path(dest) / "notes.txt").read_text() == "mine"
        assert (Path(dest) / "other" / "keep.bin").read_bytes() == b"\x00\x01"
        assert not (Path(dest) / "_wandb_refresh").exists()


def test_parquet_folder_with_unknown_files_in_its_layout_is_refused(two_projects, tmp_path):
    """A table folder holding something the exporter did not write is refused before any request."""
    dest = tmp_path / "ds"
    (dest / "history").mkdir(parents=True)
    (dest / "history" / "mine.csv").write_text("a,b\n")
    two_projects.reset_counters()
    proc = run_cli(["demo/mnist", "--to", str(dest), "--quiet"], cli_env(two_projects))
    assert proc.returncode == 2, proc.stderr
    assert "mine.csv" in proc.stderr and "Traceback" not in proc.stderr
    assert two_projects.counters()["requests"] == 0
    assert (dest / "history" / "mine.csv").read_text() == "a,b\n"


# -- 2. options evolve ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_changing_keys_merges_into_one_row_per_step(kind, two_projects, tmp_path):
    """Stumble: --keys loss, then --keys loss,acc or no --keys, failed every run on a primary key
    (DuckDB/PostgreSQL) and duplicated (run, _step) rows in Parquet."""
    api = _api(two_projects)
    ref = make_dest(kind, tmp_path, "ref")
    assert export("demo/mnist", ref, api=api, chunk_steps=700).ok
    dest = make_dest(kind, tmp_path, "keys")
    for keys in (["loss"], ["loss", "acc"], None):
        summary = export("demo/mnist", dest, api=api, chunk_steps=700, keys=keys)
        assert summary.ok, summary.failed
    rows = _rows(kind, dest)
    steps = [(r["run_id"], r["_step"]) for r in rows]
    assert len(steps) == len(set(steps)) == 9500
    assert snapshot(kind, dest)["history"] == snapshot(kind, ref)["history"]
    # and back to a subset: only the running run's lag window is re-read, nothing is lost
    again = export("demo/mnist", dest, api=api, chunk_steps=700, keys=["loss"])
    assert again.ok and again.rows <= 100
    assert snapshot(kind, dest)["history"] == snapshot(kind, ref)["history"]


@pytest.mark.parametrize("kind", KINDS)
def test_layout_change_fills_the_other_table(kind, two_projects, tmp_path):
    """Stumble: --layout wide then --layout long said "up to date" and left history_long empty."""
    api = _api(two_projects)
    dest = make_dest(kind, tmp_path, "layout")
    assert export("acme/vision", dest, api=api).ok
    summary = export("acme/vision", dest, api=api, layout="long")
    assert summary.ok and summary.rows == 800
    long = _rows(kind, dest, "history_long")
    wide = _rows(kind, dest)
    expected = sum(1 for r in wide for k, v in r.items()
                   if k not in ("entity", "project", "run_id", "_step", "_extra") and v is not None)  # fmt: skip
    assert len(long) == expected > 0


@pytest.mark.parametrize("kind", KINDS)
def test_lower_min_step_later_backfills(kind, two_projects, tmp_path):
    """Stumble: --min-step 2000 then --min-step 0 never exported steps 0-1999 and exited 0."""
    api = _api(two_projects)
    ref = make_dest(kind, tmp_path, "ref")
    assert export("demo/mnist", ref, api=api, chunk_steps=700).ok
    dest = make_dest(kind, tmp_path, "minstep")
    assert export("demo/mnist", dest, api=api, chunk_steps=700, min_step=2000, max_step=2600).ok
    assert export("demo/mnist", dest, api=api, chunk_steps=700, min_step=2000).ok
    summary = export("demo/mnist", dest, api=api, chunk_steps=700)
    assert summary.ok and summary.rows > 0
    assert snapshot(kind, dest)["history"] == snapshot(kind, ref)["history"]
    assert export("demo/mnist", dest, api=api, chunk_steps=700).rows <= 100  # up to date but the lag


# -- 3. typos and unusable destinations fail up front -------------------------------------------
def test_typos_are_errors_with_suggestions(two_projects, tmp_path):
    """Stumble: --keys los exported identity-only rows, --run nope and a missing run path exited 0."""
    env = cli_env(two_projects)
    dest = str(tmp_path / "t.duckdb")
    real = next(p for p in two_projects.paths() if p.startswith("acme/"))
    cases = [
        (["demo/mnist", "--keys", "los"], "did you mean 'loss'"),
        (["demo/mnist", "--run", "nope"], "--run 'nope'"),
        (["acme/vision/nope", real], "acme/vision/nope not found"),
        (["acme/nothing"], "acme/nothing"),
        ([str(tmp_path / "wandb" / "run-gone.wandb")], "no such file or folder"),
    ]
    for args, needle in cases:
        proc = run_cli([*args, "--to", dest, "--quiet"], env)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, proc.stderr)
        assert not Path(dest).exists(), "a failed check must not leave a destination behind"
    proc = run_cli(["acme/vision/nope", real, "--to", dest, "--quiet", "--allow-missing"], env)
    assert proc.returncode == 0, proc.stderr
    assert {r["run_id"] for r in _rows("duckdb", dest)} == {real.rsplit("/", 1)[1]}


def test_unusable_destinations_fail_before_any_request(two_projects, tmp_path):
    """Stumble: --to out.csv made a folder named out.csv; a directory or a text file named .duckdb,
    a path below a file and a corrupt state file ended in tracebacks."""
    text = tmp_path / "notes.duckdb"
    text.write_text("not a database")
    folder = tmp_path / "folder.duckdb"
    folder.mkdir()
    blocker = tmp_path / "plain-file"
    blocker.write_text("x")
    corrupt = tmp_path / "corrupt-ds"
    corrupt.mkdir()
    (corrupt / "_wandb_export_state.json").write_text("{not json")
    cases = {
        str(tmp_path / "out.csv"): ".csv file is not a destination",
        str(text): "is not a DuckDB database file",
        str(folder): "is a folder, not a DuckDB database file",
        str(blocker / "sub" / "x.duckdb"): "is a file, not a folder",
        str(blocker / "dataset"): "is a file, not a folder",
        str(corrupt): "not a readable export state file",
    }
    for dest, needle in cases.items():
        two_projects.reset_counters()
        proc = run_cli(["demo/mnist", "--to", dest, "--quiet"], cli_env(two_projects))
        assert proc.returncode == 2, (dest, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (dest, proc.stderr)
        assert two_projects.counters()["requests"] == 0, dest
    assert not (tmp_path / "out.csv").exists()
    assert text.read_text() == "not a database"


def test_locked_duckdb_file_is_reported_as_busy(two_projects, tmp_path):
    """Stumble: a DuckDB file held by another process gave a raw traceback and exit 1."""
    dest = tmp_path / "busy.duckdb"
    assert export("acme/vision", str(dest), api=_api(two_projects)).ok
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb,sys,time; c=duckdb.connect({str(dest)!r}); print('ok', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        proc = run_cli(["acme/vision", "--to", str(dest), "--quiet"], cli_env(two_projects))
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 4, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "another export (or program) holds" in lines[0]


def test_database_errors_report_their_root_cause(two_projects, tmp_path):
    """Stumble: every failed DuckDB insert was reported as "Current transaction is aborted"."""
    import duckdb

    dest = tmp_path / "foreign.duckdb"
    con = duckdb.connect(str(dest))
    con.execute("CREATE TABLE runs (entity VARCHAR, project VARCHAR, run_id VARCHAR)")  # no primary key
    con.close()
    summary = export("acme/vision", str(dest), api=_api(two_projects))
    assert not summary.ok and len(summary.failed) == 2
    for error in summary.failed.values():
        assert "transaction is aborted" not in error.lower()
        assert "\n" not in error
        assert "primary key" in error.lower() or "unique" in error.lower() or "conflict" in error.lower(), error


# -- 4. odd keys are data, not errors --------------------------------------------------------------
ODD_KEYS = ("entity", "project", "run_id", "", "a\x00b", "_STEP", "Loss~0badf00d")


@pytest.mark.parametrize("kind", KINDS)
def test_reserved_empty_and_nul_keys_are_exported(kind, make_emulator, tmp_path):
    """Stumble: keys named entity/project/run_id, an empty key, NUL in a key or a value failed runs."""
    rows = [{"_step": i, "loss": i / 2, "text": f"v{i}\x00z", **{k: float(i + j) for j, k in enumerate(ODD_KEYS)}}
            for i in range(5)]  # fmt: skip
    emu = make_emulator([MemoryRun(RunMeta("e", "p", "odd", state="finished"), rows=rows)])
    dest = make_dest(kind, tmp_path, "odd")
    summary = export("e/p", dest, api=_api(emu))
    assert summary.ok, summary.failed
    from connector.export.tables import column_for_key

    table = read_history(kind, dest)
    assert [r["entity"] for r in table.to_pylist()] == ["e"] * 5  # the identity column is intact
    for j, key in enumerate(ODD_KEYS):
        column = column_for_key(key, 63 if kind == "postgres" else None)
        assert column != key and column in table.column_names, key
        assert table.column(column).to_pylist() == [float(i + j) for i in range(5)], key
    texts = table.column("text").to_pylist()
    extras = table.column("_extra").to_pylist()
    for i in range(5):
        got = texts[i] if texts[i] is not None else json.loads(extras[i])["text"]
        assert got == f"v{i}\x00z"
    assert same_value(table.column("loss").to_pylist()[3], 1.5)


def test_one_damaged_file_does_not_stop_the_good_runs(tmp_path):
    """Stumble: one damaged .wandb file in a folder stopped the export of every good run in it."""
    pytest.importorskip("wandb", reason="the official SDK writes the .wandb files")
    from wandb_files import produce

    produced = produce("basic", tmp_path / "sdk")
    folder = tmp_path / "wandb"
    good = folder / produced.run_dir.name
    good.mkdir(parents=True)
    (good / produced.file.name).write_bytes(produced.file.read_bytes())
    bad = folder / "offline-run-20260101_000000-broken"
    bad.mkdir()
    (bad / "run-broken.wandb").write_bytes(b"")
    env = {**cli_env(type("NoServer", (), {"api_key": "x" * 40, "base_url": "http://127.0.0.1:9"})())}
    steps = len(produced.expected["rows"]) if "rows" in produced.expected else None

    dest = tmp_path / "plain.duckdb"
    proc = run_cli([str(folder), "--to", str(dest), "--json"], env)
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout)
    assert list(summary["failed"]) == [str(bad / "run-broken.wandb")]
    exported = [r for r in summary["results"] if r["status"] == "exported"]
    assert len(exported) == 1 and exported[0]["rows"] > 0
    if steps is not None:
        assert exported[0]["rows"] == steps

    dest = tmp_path / "skip.duckdb"
    proc = run_cli([str(folder), "--to", str(dest), "--json", "--skip-damaged"], env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert list(summary["skipped"]) == [str(bad / "run-broken.wandb")] and not summary["failed"]
    assert summary["rows"] == exported[0]["rows"]


@pytest.mark.parametrize("kind", KINDS)
def test_keys_differing_only_in_case_keep_their_own_columns(kind, make_emulator, tmp_path):
    """Stumble: run A logs `Loss`, run B `loss`: DuckDB put B's values into `Loss` (exit 0), a run
    with both failed, and reading a Parquet dataset back merged `loss` into `Loss`."""
    from connector.export.tables import column_for_key

    runs = [
        MemoryRun(RunMeta("e", "p", "a", state="finished"), rows=[{"_step": i, "Loss": 1.0 + i} for i in range(4)]),
        MemoryRun(RunMeta("e", "p", "b", state="finished"), rows=[{"_step": i, "loss": 10.0 + i} for i in range(4)]),
        MemoryRun(RunMeta("e", "p", "c", state="finished"),
                  rows=[{"_step": i, "Loss": 100.0 + i, "loss": 200.0 + i} for i in range(4)]),
    ]  # fmt: skip
    emu = make_emulator(runs)
    dest = make_dest(kind, tmp_path, "case")
    api = _api(emu)
    for run_id in ("a", "b", "c"):  # one export per run: the order in which columns appear is fixed
        summary = export(f"e/p/{run_id}", dest, api=api)
        assert summary.ok, summary.failed
    table = read_history(kind, dest)
    names = table.column_names
    loss_column = "loss" if kind == "postgres" else column_for_key("loss", force=True)
    assert "Loss" in names and loss_column in names, names
    by_run = {}
    for row in table.to_pylist():
        by_run.setdefault(row["run_id"], []).append((row["Loss"], row[loss_column]))
    assert by_run["a"] == [(1.0 + i, None) for i in range(4)]
    assert by_run["b"] == [(None, 10.0 + i) for i in range(4)]
    assert by_run["c"] == [(100.0 + i, 200.0 + i) for i in range(4)]
    if kind == "duckdb":
        import duckdb

        con = duckdb.connect(dest, read_only=True)
        mapped = con.sql("SELECT key, column_name FROM _wandb_column_map WHERE table_name = 'history'").fetchall()
        con.close()
        assert mapped == [("loss", loss_column)]
    if kind == "parquet":
        state = json.loads((Path(dest) / "_wandb_export_state.json").read_text())
        assert state["meta"]["column_map"]["history"] == {loss_column: "loss"}


def test_parquet_dataset_reads_as_one_table_in_duckdb_and_polars(make_emulator, tmp_path):
    """Stumble: each file has its run's own columns, so DuckDB read_parquet took the first file's
    schema and Polars could not read the dataset at all without dropping columns."""
    from connector.export.sinks.parquet import read_table, scan_dataset

    runs = [
        MemoryRun(RunMeta("e", "p", "a", state="finished"), rows=[{"_step": i, "loss": 1.0 + i} for i in range(3)]),
        MemoryRun(RunMeta("e", "p", "b", state="finished"),
                  rows=[{"_step": i, "acc": 0.5, "ok": i % 2 == 0, "note": f"n{i}"} for i in range(3)]),
    ]  # fmt: skip
    emu = make_emulator(runs)
    dest = tmp_path / "ds"
    assert export("e/p", str(dest), api=_api(emu), chunk_steps=2).ok
    want = {("a", i): {"loss": 1.0 + i, "acc": None, "ok": None, "note": None} for i in range(3)}
    want |= {("b", i): {"loss": None, "acc": 0.5, "ok": i % 2 == 0, "note": f"n{i}"} for i in range(3)}
    duck = read_table(dest).to_pylist()
    polars_rows = scan_dataset(dest).collect().to_dicts()
    for rows in (duck, polars_rows):
        assert len(rows) == 6
        got = {(r["run_id"], r["_step"]): {k: r[k] for k in ("loss", "acc", "ok", "note")} for r in rows}
        assert got == want
        assert {r["entity"] for r in rows} == {"e"}


def test_postgres_literal_key_equal_to_a_mapped_name_gets_its_own_column(make_emulator, tmp_path):
    """Stumble: a literal 63-byte key equal to the hashed column name of an 80-byte key shared it."""
    from connector.export.tables import column_for_key

    long_key = "x" * 80
    literal = column_for_key(long_key, 63)  # what the 80-byte key's column is called
    rows = [{"_step": i, long_key: float(i), literal: 100.0 + i} for i in range(3)]
    emu = make_emulator([MemoryRun(RunMeta("e", "p", "r", state="finished"), rows=rows)])
    dest = make_dest("postgres", tmp_path, "hash")
    summary = export("e/p", dest, api=_api(emu))
    assert summary.ok, summary.failed
    table = read_history("postgres", dest)
    other = column_for_key(literal, 63)
    assert other != literal and len(other.encode()) <= 63
    assert table.column(literal).to_pylist() == [0.0, 1.0, 2.0]
    assert table.column(other).to_pylist() == [100.0, 101.0, 102.0]
