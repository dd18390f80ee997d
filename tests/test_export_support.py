"""Helpers shared by the export tests (no tests here): destinations, snapshots, comparisons.

PostgreSQL comes from ``WANDB_HISTORY_TEST_PG`` (tests/postgres.sh provisions it); each test gets a
schema of its own through the URL's ``options=-csearch_path=...``. With ``CI=true`` a missing or
unreachable server fails the PostgreSQL tests instead of skipping them.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pytest

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("duckdb", "parquet", "postgres")
PG_PASSWORD = "pg-Pa55word-" + "x7" * 4


def pg_base_url() -> str:
    url = os.environ.get("WANDB_HISTORY_TEST_PG")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("WANDB_HISTORY_TEST_PG is not set: run the tests with tests/run.sh (CI=true)")
        pytest.skip("WANDB_HISTORY_TEST_PG is not set (tests/run.sh provisions PostgreSQL)")
    try:
        import adbc_driver_postgresql.dbapi as pg

        pg.connect(url).close()
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at WANDB_HISTORY_TEST_PG is unreachable: {type(exc).__name__}")
        pytest.skip(f"PostgreSQL unreachable: {type(exc).__name__}")
    return url


def pg_schema_url(tag: str = "") -> str:
    """A URL (with a password, to check it never leaks) whose search_path is a fresh schema."""
    import adbc_driver_postgresql.dbapi as pg

    base = pg_base_url()
    schema = f"t_{tag}_{uuid.uuid4().hex[:10]}"
    con = pg.connect(base)
    cur = con.cursor()
    cur.execute(f"CREATE SCHEMA {schema}")
    con.commit()
    con.close()
    user_host = base.split("://", 1)[1]
    user, _, host = user_host.partition("@")
    user = user.split(":", 1)[0]
    sep = "&" if "?" in host else "?"
    return f"postgresql://{user}:{PG_PASSWORD}@{host}{sep}options={quote('-csearch_path=' + schema)}"


def make_dest(kind: str, tmp_path: Path, tag: str = "d") -> str:
    if kind == "duckdb":
        return str(tmp_path / f"{tag}.duckdb")
    if kind == "parquet":
        return str(tmp_path / f"{tag}-dataset")
    return pg_schema_url(tag)


def read_history(kind: str, dest: str, table: str = "history") -> pa.Table:
    """The whole table, sorted by run and step (and key for the long layout)."""
    if kind == "parquet":
        from connector.export.sinks.parquet import read_table

        t = read_table(dest, table)
    elif kind == "duckdb":
        import duckdb

        con = duckdb.connect(dest, read_only=True)
        try:
            t = con.sql(f"SELECT * FROM {table}").to_arrow_table()
        finally:
            con.close()
    else:
        import adbc_driver_postgresql.dbapi as pg

        con = pg.connect(dest)
        cur = con.cursor()
        cur.execute(f"SELECT * FROM {table}")
        t = cur.fetch_arrow_table()
        con.close()
    if t.num_rows == 0:
        return t
    order = [("entity", "ascending"), ("project", "ascending"), ("run_id", "ascending")]
    order.append(("_timestamp" if table == "system_metrics" else "_step", "ascending"))
    if "key" in t.column_names:
        order.append(("key", "ascending"))
    return t.sort_by(order)


def read_states(kind: str, dest: str) -> dict[tuple[str, ...], Any]:
    """Watermarks by (entity, project, run_id, stream, key_set)."""
    if kind == "parquet":
        from connector.export.checkpoint import JsonStateStore

        states = JsonStateStore(Path(dest) / "_wandb_export_state.json").load()
        return {
            (k.entity, k.project, k.run_id, k.stream, k.key_set): (s.watermark, s.last_step, s.deleted_at is not None)
            for k, s in states.items()
        }
    t = _raw(kind, dest, "_wandb_export_state")
    return {
        (r["entity"], r["project"], r["run_id"], r["stream"], r["key_set"]): (
            r["watermark"], r["last_step"], r["deleted_at"] is not None
        )
        for r in t.to_pylist()
    }


def _raw(kind: str, dest: str, table: str) -> pa.Table:
    if kind == "duckdb":
        import duckdb

        con = duckdb.connect(dest, read_only=True)
        try:
            return con.sql(f"SELECT * FROM {table}").to_arrow_table()
        finally:
            con.close()
    import adbc_driver_postgresql.dbapi as pg

    con = pg.connect(dest)
    cur = con.cursor()
    cur.execute(f"SELECT * FROM {table}")
    t = cur.fetch_arrow_table()
    con.close()
    return t


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def rows_by_run(table: pa.Table) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in table.to_pylist():
        out.setdefault(f"{row['entity']}/{row['project']}/{row['run_id']}", []).append(row)
    return out


def assert_equals_scans(table: pa.Table, api: Any, paths: list[str], keys: list[str] | None = None) -> None:
    """Every run's rows in the destination equal `Run.scan()` over HTTP (counts, NaN-aware values)."""
    got = rows_by_run(table)
    assert sorted(got) == sorted(paths)
    for path in paths:
        run = api.run(path)
        ref = run.scan(keys).to_arrow() if keys is not None else run.scan().to_arrow()
        mine = got[path]
        assert len(mine) == ref.num_rows, path
        for name in ref.column_names:
            want = ref.column(name).to_pylist()
            have = [r.get(name) for r in mine]
            bad = [i for i, (x, y) in enumerate(zip(have, want, strict=True)) if not same_value(x, y)]
            assert not bad, f"{path} column {name}: first mismatch at row {bad[0]}: {have[bad[0]]!r} != {want[bad[0]]!r}"
        extra = set(table.column_names) - set(ref.column_names) - {"entity", "project", "run_id"}
        for name in extra:  # columns of other runs are NULL here
            assert all(r.get(name) is None for r in mine), f"{path}: column {name} should be NULL"


def snapshot(kind: str, dest: str) -> dict[str, Any]:
    """Everything that must be identical between an interrupted+resumed and a clean export."""
    out: dict[str, Any] = {"history": _canon(read_history(kind, dest)), "states": read_states(kind, dest)}
    return out


def _canon(table: pa.Table) -> list[tuple[Any, ...]]:
    cols = sorted(table.column_names)
    rows = []
    for row in table.to_pylist():
        rows.append(tuple("NaN" if isinstance(row[c], float) and math.isnan(row[c]) else row[c] for c in cols))
    return [tuple(cols), *rows]


def run_cli(args: list[str], env: dict[str, str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector.cli", "export", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def cli_env(emu: Any, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("WANDB_HISTORY_CRASH_AT", None)
    env.update({"WANDB_API_KEY": emu.api_key, "WANDB_BASE_URL": emu.base_url, "PYTHONPATH": str(ROOT)})
    env.update(extra)
    return env


# -- processes started by an export, and Ctrl-C -------------------------------------------------

def processes_marked(marker: str) -> list[str]:
    """The live processes whose environment holds `marker` (Linux ``/proc``): the CLI started with
    it in its environment, and every process it started (Ray's, worker processes), which inherit that environment."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() not in (entry / "environ").read_bytes():
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # exited, not yet reaped
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            found.append(f"{entry.name} {command}")
        except OSError:
            continue
    return found


def assert_none_left(marker: str, grace: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + grace
    while (left := processes_marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not left, f"processes left running: {left}"


def marked_env(emu: Any) -> tuple[dict[str, str], str]:
    import uuid

    marker = f"wandb-history-test-{uuid.uuid4().hex}"
    env = cli_env(emu, WANDB_HISTORY_TEST_MARK=marker)
    env.pop("RAY_ADDRESS", None)  # with --engine ray the CLI starts its own local cluster, as a user's does
    return env, marker


def interrupt_cli(args: list[str], env: dict[str, str], when: Any, timeout: float = 120) -> tuple[int, str, str]:
    """Run the CLI in its own process group, send SIGINT to the group (what Ctrl-C in a terminal
    does) once `when()` is true; its exit status, stdout, stderr."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "export", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while proc.poll() is None and not when() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, f"the export ended before the interrupt: {proc.communicate()[1][-2000:]}"
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def interrupt_midway_then_resume(emu: Any, args: list[str], env: dict[str, str], marker: str, ref: str) -> str:
    """Ctrl-C the DuckDB export ``args`` (``--to`` DEST) once 60 history pages were asked for
    (~95 in all for the demo runs at ``--page-size 100``, 50 ms per answer): exit 130; the message
    names the rows committed, which are what DEST holds, whole chunks; it prints the same command to
    resume; nothing marked `marker` is left running. Then run that command: DEST equals `ref`.
    Returns the interrupted export's stderr."""
    import re
    import shlex

    import duckdb

    dest = args[args.index("--to") + 1]
    emu.latency = 0.05
    try:
        code, _, err = interrupt_cli(
            args, env, lambda: emu.counters()["by_field"].get("history", {}).get("requests", 0) >= 60
        )
    finally:
        emu.latency = 0.0
    assert code == 130, err[-2000:]
    m = re.search(r"^interrupted: committed ([\d,]+) rows? in ([\d,]+) chunks? .*; nothing committed was lost$", err, re.M)
    assert m, err[-2000:]
    con = duckdb.connect(dest, read_only=True)
    try:
        rows = con.execute("SELECT count(*) FROM history").fetchall()[0][0]
    finally:
        con.close()
    assert 0 < rows == int(m.group(1).replace(",", "")) < 9_500  # whole chunks, what the message says
    resume = re.search(r"^resume with: (.*)$", err, re.M)
    assert resume and resume.group(1) == "wandb-history export " + shlex.join(args)
    assert_none_left(marker)

    proc = run_cli(shlex.split(resume.group(1))[2:], env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert snapshot("duckdb", dest) == snapshot("duckdb", ref)
    assert_none_left(marker)
    return err
