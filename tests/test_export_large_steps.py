"""Plans where the rows are: an export's cost follows the rows, never the numeric span of steps.

Stumble: a run of 50 rows whose steps are unix-millisecond timestamps (~1.7e12) died with
MemoryError after 79 s, because export planning made one window per chunk from 0 to the last step.
The export runs in a subprocess under a 4 GiB address-space cap; the emulator's request counter is
the cost measure (no timing assertion), and the rows are compared with the generator's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_export_support import KINDS, ROOT, cli_env, make_dest, read_history, same_value  # noqa: E402

from connector.core.rundata import MemoryRun, RunMeta  # noqa: E402

STEPS = [0, 7, 1_700_000_000_000 + 1000 * 0, *(1_700_000_000_000 + 1000 * i for i in range(1, 46)), 2**62, 2**63 - 2]
CAP = 4 * 2**30  # address space, not RSS: pyarrow and thread stacks reserve much more than they use


def _rows() -> list[dict[str, float | int]]:
    return [{"_step": s, "loss": float(i) / 3, "acc": float(i % 7)} for i, s in enumerate(STEPS)]


def _export_capped(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = (
        f"import resource, sys; resource.setrlimit(resource.RLIMIT_AS, ({CAP}, {CAP})); "
        "from connector.cli import main; sys.exit(main(['export', *sys.argv[1:]]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("kind", KINDS)
def test_timestamp_steps_export_in_rows_time_and_memory(kind, make_emulator, tmp_path):
    # A finished run is read from its Parquet exports, as the service keeps it: the cost follows the
    # rows. (Live pages over a span of timestamps cost span / 10,000 requests on a server that may
    # downsample: only a window no wider than `samples` proves it complete.)
    from connector.emulator.service import ServiceModel

    emu = make_emulator([MemoryRun(RunMeta("e", "p", "ts", state="finished"), rows=_rows())], service=ServiceModel())
    dest = make_dest(kind, tmp_path, "ts")
    emu.reset_counters()
    proc = _export_capped(["e/p", "--to", dest, "--json", "--chunk-steps", "1000"], cli_env(emu))
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    summary = json.loads(proc.stdout)
    assert summary["rows"] == len(STEPS)
    assert emu.counters()["requests"] < 40, emu.counters()["requests"]  # rows, not span, set the cost
    table = read_history(kind, dest)
    assert table.column("_step").to_pylist() == STEPS
    want = _rows()
    for name in ("loss", "acc"):
        got = table.column(name).to_pylist()
        assert all(same_value(a, b[name]) for a, b in zip(got, want, strict=True)), name
    # the watermark is the last step; a re-run fetches nothing
    again = _export_capped(["e/p", "--to", dest, "--json", "--chunk-steps", "1000"], cli_env(emu))
    assert again.returncode == 0 and json.loads(again.stdout)["rows"] == 0
