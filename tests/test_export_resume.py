"""Crash, kill -9, Ctrl-C and faults: a resumed export equals an uninterrupted one.

The export runs as a subprocess (``python -m connector.cli export``) over HTTP to an emulator in this
process. A deterministic crash hook (``WANDB_HISTORY_CRASH_AT=<boundary>:<n>``) exits with 137 at a
named commit boundary; ``kill -9`` lands at seeded moments; SIGINT must roll back and exit 130.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_export_support import (  # noqa: E402
    KINDS,
    PG_PASSWORD,
    ROOT,
    cli_env,
    make_dest,
    run_cli,
    snapshot,
)

from connector.api import Api  # noqa: E402
from connector.emulator import FaultSpec  # noqa: E402
from connector.emulator.demo_runs import demo_runs  # noqa: E402
from connector.export import export  # noqa: E402
from connector.remote.transport import RetryPolicy  # noqa: E402
from tests.conftest import live_pages_service

FAST_RETRY = RetryPolicy(max_attempts=30, deadline=60, initial_wait=0.01, max_wait=0.05)
ARGS = ["demo/mnist", "--chunk-steps", "700", "--quiet", "--concurrency", "2"]
SLOW_ARGS = [*ARGS, "--page-size", "100"]  # ~100 requests: with emulator latency, kills land mid-way


@pytest.fixture
def demo(make_emulator):
    return make_emulator(demo_runs())


@pytest.fixture
def live_demo(make_emulator):
    """The demo runs served as live pages: a kill must land mid-export, and the Parquet path
    finishes these small runs before any kill could."""
    return make_emulator(demo_runs(), service=live_pages_service())


def _reference(kind, emu, tmp_path):
    dest = make_dest(kind, tmp_path, "ref")
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    assert export("demo/mnist", dest, api=api, chunk_steps=700).ok
    return snapshot(kind, dest)


@pytest.mark.parametrize("kind", KINDS)
def test_crash_hook_at_each_boundary_then_resume_is_identical(kind, demo, tmp_path):
    reference = _reference(kind, demo, tmp_path)
    boundaries = ["before-commit:3", "after-commit:5"] + (["after-data:4"] if kind == "parquet" else [])
    for i, crash in enumerate(boundaries):
        dest = make_dest(kind, tmp_path, f"crash{i}")
        proc = run_cli([*ARGS, "--to", dest], cli_env(demo, WANDB_HISTORY_CRASH_AT=crash))
        assert proc.returncode == 137, (crash, proc.stderr[-2000:])
        proc = run_cli([*ARGS, "--to", dest], cli_env(demo))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert snapshot(kind, dest) == reference, crash


@pytest.mark.parametrize("kind", KINDS)
def test_kill_9_at_seeded_points_then_resume_is_identical(kind, live_demo, tmp_path):
    reference = _reference(kind, live_demo, tmp_path)
    live_demo.latency = 0.05  # spread the export (~6 s) over time so the kills land mid-way
    rng = random.Random(f"kill-{kind}")
    dest = make_dest(kind, tmp_path, "kill")
    for _ in range(2):
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector.cli", "export", *SLOW_ARGS, "--to", dest],
            cwd=ROOT, env=cli_env(live_demo), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(rng.uniform(1.5, 4.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    live_demo.latency = 0.0
    proc = run_cli([*ARGS, "--to", dest], cli_env(live_demo))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert snapshot(kind, dest) == reference


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_ctrl_c_rolls_back_exits_non_zero_and_resumes(kind, live_demo, tmp_path):
    reference = _reference(kind, live_demo, tmp_path)
    dest = make_dest(kind, tmp_path, "sigint")
    live_demo.latency = 0.15  # the export takes > 5 s: the SIGINT at 3 s lands mid-way
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "export", *SLOW_ARGS, "--to", dest],
        cwd=ROOT, env=cli_env(live_demo), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(3.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    live_demo.latency = 0.0
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    proc = run_cli([*ARGS, "--to", dest], cli_env(live_demo))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert snapshot(kind, dest) == reference


@pytest.mark.parametrize("kind", KINDS)
def test_export_under_injected_faults_is_identical(kind, make_emulator, tmp_path):
    clean = make_emulator(demo_runs())
    reference = _reference(kind, clean, tmp_path)
    faults = FaultSpec(rate=0.25, kinds=("429", "500", "502", "503", "reset", "truncate"), seed=11, retry_after=0.01)
    emu = make_emulator(demo_runs(), faults=faults, service=live_pages_service())
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    dest = make_dest(kind, tmp_path, "faults")
    summary = export("demo/mnist", dest, api=api, retry=FAST_RETRY, chunk_steps=700, concurrency=4)
    assert summary.ok and summary.retries > 0
    status = emu.counters()["status"]
    assert status.get("429", 0) > 0 and status.get("reset", 0) > 0
    assert summary.limiter["throttles"] > 0 and summary.limiter["peak_in_flight"] <= 4
    assert snapshot(kind, dest) == reference


@pytest.mark.parametrize("kind", ["duckdb", "parquet", "postgres"])
def test_full_refresh_replaces_atomically(kind, demo, tmp_path):
    dest = make_dest(kind, tmp_path, "refresh")
    api = Api(api_key=demo.api_key, base_url=demo.base_url)
    export("demo/mnist", dest, api=api, chunk_steps=700)
    before = snapshot(kind, dest)
    # crash right before the swap: the old data is untouched
    proc = run_cli([*ARGS, "--to", dest, "--full-refresh"], cli_env(demo, WANDB_HISTORY_CRASH_AT="before-swap:1"))
    assert proc.returncode == 137, proc.stderr[-2000:]
    assert snapshot(kind, dest)["history"] == before["history"]
    proc = run_cli([*ARGS, "--to", dest, "--full-refresh"], cli_env(demo))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert snapshot(kind, dest)["history"] == before["history"]


def test_secrets_never_printed_or_stored(demo, tmp_path):
    from test_export_support import pg_schema_url

    key = demo.api_key
    outputs: list[str] = []
    dests = [make_dest("parquet", tmp_path, "s"), make_dest("duckdb", tmp_path, "s")]
    try:
        dests.append(pg_schema_url("secret"))
    except BaseException:  # noqa: BLE001 - PostgreSQL is covered by the other tests; keep checking files
        if os.environ.get("CI") == "true":
            raise
    ckpt = str(tmp_path / "external-checkpoint.json")
    for i, dest in enumerate(dests):
        for extra in (["--json"], ["--dry-run"]) if i else (["--dry-run", "--json"], ["--json"], []):
            proc = run_cli(["demo/mnist", "--to", dest, "--include-system-metrics", *extra], cli_env(demo))
            assert proc.returncode == 0, proc.stderr[-2000:]
            outputs += [proc.stdout, proc.stderr]
    proc = run_cli(["demo/mnist", "--to", dests[-1], "--checkpoint", ckpt, "--json", "--full-refresh"], cli_env(demo))
    assert proc.returncode == 0, proc.stderr[-2000:]
    outputs += [proc.stdout, proc.stderr]
    assert json.loads(outputs[0])["plan"] and json.loads(outputs[2])["rows"] == 9500
    # a bad password/unreachable server: the error names the destination without the password
    bad = f"postgresql://u:{PG_PASSWORD}@127.0.0.1:1/db"
    proc = run_cli(["demo/mnist", "--to", bad], cli_env(demo))
    assert proc.returncode == 2 and "***" in proc.stderr
    outputs += [proc.stdout, proc.stderr]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    blobs = [p.read_bytes() for p in files]
    for secret in (key, PG_PASSWORD):
        assert not any(secret in text for text in outputs), secret[:6]
        assert not any(secret.encode() in blob for blob in blobs), secret[:6]
    # the API key is never an option (argparse rejects it)
    proc = run_cli(["demo/mnist", "--to", dests[0], "--api-key", "x" * 40], cli_env(demo))
    assert proc.returncode == 2 and "unrecognized arguments" in proc.stderr
