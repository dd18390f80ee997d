"""Command-line conventions: `wandb-history` as a subprocess, like duckdb, dlt and aws.

Bare command and ``--version``; ``serve`` describing itself and printing the ``export`` lines and
the projects it serves; ``sql -f FILE`` / ``-`` / piped stdin; output format from ``-o``'s
extension; ``--format json`` keeping nested values nested; ``status DEST`` read-only over DuckDB,
Parquet and PostgreSQL destinations written by the exporter.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from connector import Api
from connector.export import export

ROOT = Path(__file__).resolve().parent.parent


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    full.update(env or {})
    full["PYTHONPATH"] = str(ROOT) + os.pathsep + full.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "connector.cli", *args],
        env=full, cwd=cwd, capture_output=True, text=True, timeout=180,
        input=stdin if stdin is not None else "",
    )  # fmt: skip


def emu_env(emulator: Any) -> dict[str, str]:
    return {"WANDB_BASE_URL": emulator.base_url, "WANDB_API_KEY": emulator.api_key}


def read_lines(proc: subprocess.Popen[str], n: int, timeout: float) -> list[str]:
    """The first `n` lines of `proc`'s stdout, or as many as came within `timeout` seconds."""
    import queue
    import threading

    found: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for _ in range(n):
            line = proc.stdout.readline()  # type: ignore[union-attr]  # stdout=PIPE
            if not line:
                return
            found.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    lines: list[str] = []
    try:
        while len(lines) < n:
            lines.append(found.get(timeout=timeout))
    except queue.Empty:
        pass
    return lines


# -- bare command, --version ----------------------------------------------------------------------


def test_bare_command_prints_the_help_and_exits_0(tmp_path: Path) -> None:
    proc = cli(cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: wandb-history") and proc.stderr == ""
    for command in ("serve", "export", "status", "sql", "demo"):
        assert f"\n    {command} " in proc.stdout
    assert "exit status:" in proc.stdout


def test_version(tmp_path: Path) -> None:
    from connector.cli.app import version

    proc = cli("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == f"wandb-history {version()}\n"


# -- serve ----------------------------------------------------------------------------------------


def test_serve_has_a_description(tmp_path: Path) -> None:
    proc = cli("serve", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "emulated W&B API" in proc.stdout and "export WANDB_BASE_URL" in proc.stdout


def test_serve_prints_the_env_lines_and_projects_that_a_client_can_use(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "serve", "--synthetic", "acme/vision:runs=2,steps=20,keys=3",
         "--synthetic", "acme/nlp:runs=1,steps=5,keys=2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        lines = read_lines(proc, 5, timeout=30)
        assert lines[0].startswith("Serving W&B API emulator at http://127.0.0.1:")
        url = lines[0].split(" at ")[1].split()[0]
        assert lines[1] == f"export WANDB_BASE_URL={url}"
        assert lines[2].startswith("export WANDB_API_KEY=")
        assert lines[3:] == ["project acme/vision: 2 runs", "project acme/nlp: 1 run"]
        client = {}
        for line in lines[1:3]:  # what a user pastes into a shell
            name, _, value = line.removeprefix("export ").partition("=")
            client[name] = shlex.split(value)[0]
        query = cli("sql", "SELECT count(*) AS n FROM wandb_runs('acme/vision')", "--format", "csv", cwd=tmp_path, env=client)
        assert query.returncode == 0, query.stderr
        assert query.stdout.splitlines() == ["n", "2"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- sql: where the query comes from ----------------------------------------------------------------


def test_sql_reads_the_query_from_a_file_dash_or_piped_stdin(emulator: Any, paths: list[str], tmp_path: Path) -> None:
    sql = f"SELECT count(*) AS n FROM wandb_history('{paths[0]}', keys := ['loss'], max_step := 7)\n"
    (tmp_path / "q.sql").write_text(sql)
    env = emu_env(emulator)
    for args, stdin in (
        (["-f", "q.sql"], None),
        (["--file", str(tmp_path / "q.sql")], None),
        (["-"], sql),
        (["-f", "-"], sql),
        ([], sql),  # piped stdin, no query argument
    ):
        proc = cli("sql", *args, "--format", "csv", cwd=tmp_path, env=env, stdin=stdin)
        assert proc.returncode == 0, (args, proc.stderr)
        assert proc.stdout.splitlines() == ["n", "7"], args
    both = cli("sql", "SELECT 1", "-f", "q.sql", cwd=tmp_path, env=env)
    assert both.returncode == 2 and "not both" in both.stderr
    missing = cli("sql", "-f", "nope.sql", cwd=tmp_path, env=env)
    assert missing.returncode == 2 and "nope.sql" in missing.stderr
    empty = cli("sql", cwd=tmp_path, env=env, stdin="")
    assert empty.returncode == 2 and "empty" in empty.stderr


def test_sql_runs_several_statements_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "two.sql").write_text("CREATE TEMP TABLE t AS SELECT 41 AS x;\nSELECT x + 1 AS y FROM t;\n")
    proc = cli("sql", "-f", "two.sql", "--format", "csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["y", "42"]


# -- sql: output formats ---------------------------------------------------------------------------


def test_sql_output_format_follows_the_extension(emulator: Any, paths: list[str], tmp_path: Path) -> None:
    query = (
        f"SELECT _step, value_number FROM wandb_history('{paths[0]}', keys := ['loss'], max_step := 3) ORDER BY _step"
    )
    parquet = cli("sql", query, "-o", "out.parquet", cwd=tmp_path, env=emu_env(emulator))
    assert parquet.returncode == 0, parquet.stderr
    table = pq.read_table(tmp_path / "out.parquet")  # a real Parquet file, not a text table
    truth = list(zip(*table.to_pydict().values(), strict=True))
    assert [s for s, _ in truth] == [0, 1, 2]
    csv = cli("sql", query, "-o", "out.csv", cwd=tmp_path, env=emu_env(emulator))
    assert csv.returncode == 0 and (tmp_path / "out.csv").read_text().splitlines()[0] == "_step,value_number"
    for name in ("out.json", "out.jsonl", "out.ndjson"):
        proc = cli("sql", query, "-o", name, cwd=tmp_path, env=emu_env(emulator))
        assert proc.returncode == 0, proc.stderr
        objects = [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]
        assert [(o["_step"], o["value_number"]) for o in objects] == truth
    bad = cli("sql", query, "-o", "out.xlsx", cwd=tmp_path, env=emu_env(emulator))
    assert bad.returncode == 2 and ".parquet" in bad.stderr and "--format" in bad.stderr
    assert not (tmp_path / "out.xlsx").exists()
    forced = cli("sql", query, "-o", "out.txt", "--format", "csv", cwd=tmp_path, env=emu_env(emulator))
    assert forced.returncode == 0 and (tmp_path / "out.txt").read_text().startswith("_step,value_number\n")


def test_sql_json_keeps_nested_values_nested(emulator: Any, tmp_path: Path) -> None:
    query = (
        "SELECT run_id, config, tags, created_at, [1.5, 'nan'::DOUBLE] AS xs, {'a': 1} AS s "
        "FROM wandb_runs('test/synthetic') ORDER BY run_id"
    )
    proc = cli("sql", query, "--format", "json", cwd=tmp_path, env=emu_env(emulator))
    assert proc.returncode == 0, proc.stderr
    objects = [json.loads(line) for line in proc.stdout.splitlines()]
    api = Api(api_key=emulator.api_key, base_url=emulator.base_url)
    expected = {r.id: r.config for r in api.runs("test/synthetic")}
    assert len(objects) == len(expected) == 3
    for obj in objects:
        assert isinstance(obj["config"], dict) and obj["config"] == expected[obj["run_id"]]
        assert isinstance(obj["tags"], list) and obj["xs"] == [1.5, None] and obj["s"] == {"a": 1}
        assert obj["created_at"].startswith("20")


# -- status ---------------------------------------------------------------------------------------


def _snapshot(path: Path) -> dict[str, tuple[int, int]]:
    if path.is_file():
        return {path.name: (path.stat().st_size, path.stat().st_mtime_ns)}
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*"))}


def test_status_of_a_duckdb_file(api: Api, emulator: Any, paths: list[str], tmp_path: Path) -> None:
    dest = tmp_path / "wh.duckdb"
    export("test/synthetic", str(dest), api=api, keys=["loss"], max_step=100)
    export(paths[0], str(dest), api=api, layout="long", max_step=50)
    with duckdb.connect(str(dest), read_only=True) as con:
        (long_rows,) = con.sql("SELECT count(*) FROM history_long").fetchall()[0]
    below = {p: sum(1 for s in emulator.run(*p.split("/")).steps() if s < 100) for p in paths}
    total = sum(below.values())
    before = _snapshot(tmp_path)
    table = cli("status", str(dest), cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "runs         3" in table.stdout and f"history {total} rows" in table.stdout
    run0 = paths[0]
    line = next(x for x in table.stdout.splitlines() if x.startswith(run0 + "  history "))
    assert " loss " in line and " 0..99 " in line
    as_json = cli("status", str(dest), "--json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["kind"] == "duckdb" and doc["runs"] == 3 and doc["last_export"]
    assert doc["tables"]["history"] == total and doc["tables"]["history_long"] == long_rows > 0
    states = {(s["run"], s["table"]): s for s in doc["states"]}
    assert len(states) == 4
    wide = states[(run0, "history")]
    assert (wide["watermark"], wide["keys"], wide["rows"], wide["steps"], wide["deleted_at"]) == (99, ["loss"], 100, 100, None)
    long = states[(run0, "history_long")]
    assert long["watermark"] == 49 and long["steps"] == 50 and long["layout"] == "long" and long["keys"] is None
    assert _snapshot(tmp_path) == before  # read-only: not a byte changed, no WAL left


def test_status_of_a_parquet_dataset_and_deleted_runs(make_emulator: Any, tmp_path: Path) -> None:
    emu = make_emulator("e/p:runs=2,steps=30,keys=3,seed=1")
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    dest = tmp_path / "ds"
    export("e/p", str(dest), api=api)
    gone = emu.paths()[1]
    emu2 = make_emulator([emu.run(*emu.paths()[0].split("/"))])  # the same project without one run
    export("e/p", str(dest), api=Api(api_key=emu2.api_key, base_url=emu2.base_url))
    before = _snapshot(dest)
    proc = cli("status", str(dest), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["kind"] == "parquet" and doc["runs"] == 2 and doc["deleted_runs"] == 1
    assert doc["tables"] == {"history": 60, "runs": 2}
    by_run = {s["run"]: s for s in doc["states"]}
    assert by_run[gone]["deleted_at"] and by_run[emu.paths()[0]]["deleted_at"] is None
    last = {p: emu.run(*p.split("/")).steps()[-1] for p in emu.paths()}
    assert all(s["watermark"] == last[s["run"]] and s["rows"] == s["steps"] == 30 for s in doc["states"])
    text = cli("status", str(dest), cwd=tmp_path)
    assert text.returncode == 0 and "(1 deleted upstream)" in text.stdout
    assert _snapshot(dest) == before
    assert not (dest / ".wandb-export.lock").exists() or ".wandb-export.lock" in before


def test_status_never_creates_and_names_what_is_wrong(tmp_path: Path) -> None:
    for dest in ("missing.duckdb", "missing-folder"):
        proc = cli("status", dest, cwd=tmp_path)
        assert proc.returncode == 2 and "does not exist" in proc.stderr
        assert not (tmp_path / dest).exists()
    con = duckdb.connect(str(tmp_path / "other.duckdb"))
    con.execute("CREATE TABLE t AS SELECT 1 AS x")
    con.close()
    proc = cli("status", "other.duckdb", cwd=tmp_path)
    assert proc.returncode == 2 and "_wandb_export_state" in proc.stderr
    (tmp_path / "plain").mkdir()
    proc = cli("status", "plain", cwd=tmp_path)
    assert proc.returncode == 2 and "not a dataset written by wandb-history export" in proc.stderr


def test_status_while_an_export_writes_is_busy(api: Api, paths: list[str], tmp_path: Path) -> None:
    dest = tmp_path / "busy.duckdb"
    export(paths[0], str(dest), api=api, max_step=10)
    writer = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('open', flush=True); "
         "sys.stdin.read()", str(dest)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert writer.stdout.readline().strip() == "open"  # type: ignore[union-attr]  # stdout=PIPE
        proc = cli("status", str(dest), cwd=tmp_path)
        assert proc.returncode == 4 and "open for writing" in proc.stderr
    finally:
        writer.communicate("", timeout=30)


def test_status_of_postgres(api: Api, paths: list[str], tmp_path: Path) -> None:
    from tests.test_export_support import PG_PASSWORD, pg_schema_url

    url = pg_schema_url("status")
    export([paths[0], paths[2]], url, api=api, max_step=20)  # both dense from step 0
    proc = cli("status", url, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert PG_PASSWORD not in proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["kind"] == "postgres" and doc["runs"] == 2 and doc["tables"]["history"] == 40
    assert "***" in doc["destination"]
    assert all(s["watermark"] == 19 and s["rows"] == 20 and s["updated_at"] for s in doc["states"])
