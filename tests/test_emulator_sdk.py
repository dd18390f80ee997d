"""The official wandb SDK (0.31) reads the emulator, and gets exactly the generator's rows.

The SDK runs in a subprocess (it starts its own wandb-core) with every file under a temp folder.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from typing import Any

import wandb  # noqa: F401  (a test dependency: its absence must fail, not skip)

SCRIPT = r"""
import json, sys
import wandb
base, key, project, *paths = sys.argv[1:]
api = wandb.Api(api_key=key, overrides={"base_url": base}, timeout=30)
out = {"runs": [r.id for r in api.runs(project)], "by_path": {}}
for path in paths:
    run = api.run(path)
    out["by_path"][path] = {
        "id": run.id, "name": run.name, "state": run.state, "config": dict(run.config),
        "scan": list(run.scan_history()),
        "scan_keys": list(run.scan_history(keys=["loss", "grad_norm"])),
        "scan_window": list(run.scan_history(min_step=5, max_step=1500, page_size=100)),
        "history": run.history(pandas=False),
        "history_keys": run.history(keys=["loss"], pandas=False),
    }
sys.stdout.write(json.dumps(out))
"""


def same(a: Any, b: Any, *, number_strings: bool = False) -> bool:
    """NaN-aware, 1 == 1.0, missing == None; with `number_strings`, "NaN"/"Infinity" match floats."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) | set(b)
        return all(same(a.get(k), b.get(k), number_strings=number_strings) for k in keys)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(
            same(x, y, number_strings=number_strings) for x, y in zip(a, b, strict=True)
        )
    if number_strings and isinstance(a, str) and isinstance(b, float) and not math.isfinite(b):
        a = float(a)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _truth(emulator: Any, path: str) -> list[dict]:
    e, p, r = path.split("/")
    run = emulator.run(e, p, r)
    return run.rows(0, len(run.steps()))


def test_official_sdk_reads_the_emulator(emulator: Any, sdk_env: dict[str, str]) -> None:
    paths = emulator.paths()
    project = "/".join(paths[0].split("/")[:2])
    wanted = [paths[0], paths[2]]  # dense run with NaN/inf; sparse run with a 5000-step gap
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, emulator.base_url, emulator.api_key, project, *wanted],
        env=sdk_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert emulator.api_key not in proc.stderr
    out = json.loads(proc.stdout)
    assert out["runs"] == [p.split("/")[2] for p in paths]
    for path in wanted:
        got = out["by_path"][path]
        truth = _truth(emulator, path)
        steps = [r["_step"] for r in truth]
        assert got["id"] == path.split("/")[2] and got["state"] == "finished"
        assert got["config"]["optimizer"] in ("adam", "sgd")
        assert [r["_step"] for r in got["scan"]] == steps
        assert all(same(a, b) for a, b in zip(got["scan"], truth, strict=True))
        keyed = [
            {"_step": r["_step"], "loss": r["loss"], "grad_norm": r["grad_norm"]} for r in truth
        ]
        assert len(got["scan_keys"]) == len(keyed)
        assert all(
            same(a, b, number_strings=True) for a, b in zip(got["scan_keys"], keyed, strict=True)
        )
        assert [r["_step"] for r in got["scan_window"]] == [s for s in steps if 5 <= s < 1500]
        # Run.history() asks history(samples: 500) with no step range: the emulator's own
        # downsampling rule (its ServiceModel) says which rows it keeps.
        kept = emulator.service.sample_positions(len(truth), 500, path, None, None)
        assert 0 < len(got["history"]) == len(kept) <= 500
        assert all(same(a, truth[j]) for a, j in zip(got["history"], kept, strict=True))
        keyed_steps = [r["_step"] for r in got["history_keys"]]
        with_loss = [r["_step"] for r in truth if "loss" in r]
        assert 0 < len(keyed_steps) <= 500 and keyed_steps == sorted(set(keyed_steps))
        assert set(keyed_steps) <= set(with_loss)
        if emulator.service.sampling == "even":
            kept_keys = emulator.service.sample_positions(len(with_loss), 500)
            assert keyed_steps == [with_loss[j] for j in kept_keys]
    assert any(
        isinstance(r["grad_norm"], float) and math.isnan(r["grad_norm"])
        for r in out["by_path"][paths[0]]["scan"]
    )


def test_serve_prints_one_line_and_stops_on_sigterm() -> None:
    env = dict(os.environ, WANDB_EMULATOR_API_KEY="")
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector.emulator", "--synthetic", "e/p:runs=1,steps=10,keys=3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]  # stdout=PIPE
        assert line.startswith("Serving W&B API emulator at http://127.0.0.1:")
        import requests

        url = line.split(" at ")[1].split()[0]
        assert requests.get(url + "/healthz", timeout=5).ok
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == ""  # type: ignore[union-attr]  # stdout=PIPE
    finally:
        if proc.poll() is None:
            proc.kill()
