"""``export --engine processes``: chunks fetched and decoded by worker processes, written here.

Against a real emulator over HTTP and real sinks: the same destination as the single-process
export (NaN-aware, watermarks included), a worker killed mid-task, Ctrl-C and its resume.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_export_support import (  # noqa: E402
    interrupt_midway_then_resume,
    make_dest,
    marked_env,
    snapshot,
)

from connector import Api  # noqa: E402
from connector.emulator.demo_runs import demo_runs  # noqa: E402
from connector.export import export  # noqa: E402
from connector.export.tasks import KILL_ONCE_ENV  # noqa: E402
from tests.conftest import live_pages_service  # noqa: E402


@pytest.mark.parametrize("kind", ["parquet", "duckdb"])
def test_processes_export_equals_the_single_process_export(emulator, api, paths, kind, tmp_path):
    """Same table, chunks and watermarks as ``--engine local``; the workers' shares of the request
    limit add up to --concurrency, never more."""
    local = make_dest(kind, tmp_path, "local")
    dest = make_dest(kind, tmp_path, "processes")
    ref = export("test/synthetic", local, api=api, chunk_steps=700, concurrency=2)
    got = export("test/synthetic", dest, api=api, chunk_steps=700, concurrency=2, engine="processes")
    assert ref.ok and got.ok, got.failed
    assert (got.rows, got.chunks, got.runs_exported) == (ref.rows, ref.chunks, ref.runs_exported)
    assert got.rows > 0 and got.chunks > len(paths)
    assert snapshot(kind, dest) == snapshot(kind, local)  # rows (NaN-aware) and every watermark
    assert got.limiter["max_concurrency"] == 2 and 0 < got.limiter["peak_in_flight"] <= 2, got.limiter
    assert got.requests > 0
    again = export("test/synthetic", dest, api=api, chunk_steps=700, concurrency=2, engine="processes")
    assert again.ok and again.rows == 0 and again.runs_up_to_date == len(paths)


def test_processes_export_survives_a_worker_killed_mid_task(make_emulator, tmp_path, monkeypatch):
    """A task kills its own worker (SIGKILL) once, after fetching: the pool is started again, the
    tasks not yet written are fetched again, and the destination equals a clean export."""
    emu = make_emulator("e/p:runs=3,steps=1500,keys=6,seed=13", service=live_pages_service())
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    flag = tmp_path / "kill-once"
    flag.write_text("1")
    monkeypatch.setenv(KILL_ONCE_ENV, str(flag))
    got = export("e/p", str(tmp_path / "p.duckdb"), api=api, chunk_steps=400, engine="processes", concurrency=2)
    assert not flag.exists()  # a worker did die mid-task
    monkeypatch.delenv(KILL_ONCE_ENV)
    assert got.ok, got.failed
    ref = export("e/p", str(tmp_path / "ref.duckdb"), api=api, chunk_steps=400)
    assert got.rows == ref.rows == 4500
    assert snapshot("duckdb", str(tmp_path / "p.duckdb")) == snapshot("duckdb", str(tmp_path / "ref.duckdb"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker processes through /proc")
@pytest.mark.alone
def test_processes_export_ctrl_c_exits_130_leaves_no_worker_and_resumes(make_emulator, tmp_path):
    """Ctrl-C (SIGINT to the process group, workers included) mid-export: exit 130 with what was
    committed and the command that resumes, whole chunks only, no worker left running; the printed
    command then completes the export, equal to a clean one."""
    emu = make_emulator(demo_runs(), service=live_pages_service())
    ref = str(tmp_path / "ref.duckdb")
    assert export("demo/mnist", ref, api=Api(api_key=emu.api_key, base_url=emu.base_url), chunk_steps=700).ok
    dest = str(tmp_path / "sigint.duckdb")
    args = ["demo/mnist", "--to", dest, "--chunk-steps", "700", "--concurrency", "2", "--page-size", "100",
            "--engine", "processes"]  # fmt: skip
    env, marker = marked_env(emu)
    err = interrupt_midway_then_resume(emu, args, env, marker, ref)
    assert "Traceback" not in err, err[-3000:]  # the workers ignore SIGINT: no stack traces from them


def test_processes_dry_run_starts_no_worker(emulator, api, tmp_path):
    """A plan reads no chunk: ``--dry-run --engine processes`` gives the local plan, and no pool."""
    dest = str(tmp_path / "plan.duckdb")
    ref = export("test/synthetic", dest, api=api, dry_run=True)
    got = export("test/synthetic", dest, api=api, dry_run=True, engine="processes")
    assert got.ok and [p.to_dict() if hasattr(p, "to_dict") else p for p in got.plan] == [
        p.to_dict() if hasattr(p, "to_dict") else p for p in ref.plan
    ]
    assert not (tmp_path / "plan.duckdb").exists()
