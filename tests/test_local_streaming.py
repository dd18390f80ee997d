"""The `.wandb` reader streams: a run keeps an index of its history records, not its rows.

* Reading in windows (`LocalRun.rows(lo, hi)`, `row(i)`, scans with small pages, Arrow batches)
  gives exactly the rows of the whole-file decoding (the SDK's own protobuf classes, the oracle)
  for a resumed run: one run in two files whose steps overlap, and one file holding the same
  ``_step`` twice (the later record wins, as before).
* Memory: scanning a 50k-step file into Arrow batches allocates a small fraction of what holding
  its rows costs (measured with `tracemalloc`; the whole-file reader held ~47 MiB of rows here).
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from wandb_files import diff_rows, produce, sdk_decode, sdk_env  # noqa: E402

from connector.api import Run  # noqa: E402
from connector.local import load_run, load_runs, read_run  # noqa: E402
from connector.local.framing import iter_file_payloads  # noqa: E402
from connector.local.index import Steps  # noqa: E402

pytest.importorskip("wandb", reason="the official SDK produces the test files")

from test_local_reader import writer  # noqa: E402


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """resume_a (steps 0..4) then resume_b (steps 3..7) of one run id, by the SDK; plus one file
    holding both files' records (steps 3 and 4 twice), and the oracle's rows of each."""
    work = tmp_path_factory.mktemp("streaming")
    a, b = produce("resume_a", work), produce("resume_b", work)
    both = tmp_path_factory.mktemp("both") / "run-resumed01.wandb"
    payloads = [bytes(p) for f in (a.file, b.file) for _, p in iter_file_payloads(f)]
    both.write_bytes(writer(payloads))
    oracle = {name: sdk_decode(f, work / "_sdk")["rows"] for name, f in (("a", a.file), ("b", b.file), ("both", both))}
    return {"a": a, "b": b, "both": both, "oracle": oracle, "root": work}


def merged_oracle(resumed: dict[str, Any]) -> list[dict[str, Any]]:
    by_step = {r["_step"]: r for r in resumed["oracle"]["a"]}
    by_step.update({r["_step"]: r for r in resumed["oracle"]["b"]})  # the later file wins
    return [by_step[s] for s in sorted(by_step)]


def windowed(run: Any, size: int) -> list[dict[str, Any]]:
    n = len(run.steps())
    return [row for lo in range(0, n, size) for row in run.rows(lo, lo + size)]


def check_every_way(run: Any, want: list[dict[str, Any]]) -> None:
    assert list(run.steps()) == [r["_step"] for r in want]
    for size in (1, 2, 3, 1000):
        assert diff_rows(windowed(run, size), want) == [], size
    assert diff_rows([run.row(i) for i in range(len(run.steps()))], want) == []
    assert diff_rows([run.row(i) for i in reversed(range(len(run.steps())))][::-1], want) == []
    scan = Run.from_run_data(run).scan_history(page_size=2)
    assert diff_rows(list(scan), want) == []
    batches = list(scan.to_batches())
    assert len(batches) > 1 and diff_rows([r for b in batches for r in b.to_pylist()], want) == []


def test_run_in_two_files_reads_the_same_in_windows(resumed: dict[str, Any]) -> None:
    assert [r.files for r in load_runs(resumed["a"].file)] == [[resumed["a"].file]]
    one = load_run(resumed["root"], recursive=True)  # both files: one run
    assert one.files == [resumed["a"].file, resumed["b"].file]
    want = merged_oracle(resumed)
    assert [r["part"] for r in want] == ["a", "a", "a", "b", "b", "b", "b", "b"]
    check_every_way(one, want)
    assert one.history_keys()["keys"]["part"] == {"typeCounts": [{"type": "string", "count": 8}]}
    assert one.history_keys()["lastStep"] == 7


def test_same_step_twice_in_one_file(resumed: dict[str, Any]) -> None:
    run = read_run(resumed["both"])
    want = resumed["oracle"]["both"]
    assert [r["part"] for r in want] == ["a", "a", "a", "b", "b", "b", "b", "b"]
    check_every_way(run, want)
    assert diff_rows(windowed(run, 3), merged_oracle(resumed)) == []
    # type counts are those of the winning rows only (steps 3 and 4 are counted once)
    assert run.history_keys()["keys"]["r"] == {"typeCounts": [{"type": "number", "count": 8}]}


def test_steps_are_an_index_not_rows(resumed: dict[str, Any]) -> None:
    run = read_run(resumed["both"])
    assert isinstance(run.steps(), Steps) and run.steps() == list(range(8))
    assert run.fresh_rows and run.rows(2, 4) is not run.rows(2, 4)
    run.append([{"_step": 8, "part": "c"}])  # a mutation loads the rows: the emulator's runs
    assert not run.fresh_rows and [r["part"] for r in run.rows(6, 9)] == ["b", "b", "c"]


# ----------------------------------------------------------------------------- memory

STEPS = 50_000
KEYS = 20
WRITE = textwrap.dedent(
    """
    import random, sys
    from wandb.proto import wandb_internal_pb2 as pb
    from connector.local.framing import BLOCK, FIRST, FULL, HEADER, LAST, MIDDLE, encode_chunk

    out, steps, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(7)
    buf = bytearray(HEADER)

    def put(payload):
        data = memoryview(payload)
        first = True
        while True:
            left = BLOCK - len(buf) % BLOCK
            if left < 7:
                buf.extend(b"\\0" * left)
                continue
            n = min(len(data), left - 7)
            last = n == len(data)
            kind = FULL if first and last else FIRST if first else LAST if last else MIDDLE
            buf.extend(encode_chunk(kind, bytes(data[:n])))
            data = data[n:]
            first = False
            if last:
                return

    r = pb.Record(num=1)
    r.run.run_id = "mem01"
    put(r.SerializeToString())
    for s in range(steps):
        r = pb.Record(num=s + 2)
        h = r.history
        h.step.num = s
        for k in range(keys):
            i = h.item.add(); i.nested_key.append(f"metric_{k:02d}"); i.value_json = repr(rng.random() * (s + 1))
        i = h.item.add(); i.nested_key.append("_step"); i.value_json = str(s)
        put(r.SerializeToString())
    open(out, "wb").write(buf)
    """
)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 50k-step x 20-key `.wandb` file, records serialized by the SDK's protobuf classes."""
    work = tmp_path_factory.mktemp("big")
    path = work / "run-mem01.wandb"
    env = sdk_env(work / "_sdk")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    subprocess.run([sys.executable, "-c", WRITE, str(path), str(STEPS), str(KEYS)], check=True, env=env, timeout=300)
    return path


def test_scan_memory_does_not_hold_the_rows(big_file: Path) -> None:
    """Held rows of this file cost about 47 MiB (the whole-file reader held them all); reading the
    file and streaming its scan into Arrow batches must stay far below that (the framing reads 8 MiB
    at a time; a scan holds a few pages of 1000 rows)."""
    list(Run.from_run_data(read_run(big_file)).scan_history(max_step=10).to_batches())  # imports
    gc.collect()
    tracemalloc.start()
    try:
        run = read_run(big_file)
        rows = 0
        for batch in Run.from_run_data(run).scan_history().to_batches():
            rows += batch.num_rows
        _, peak = tracemalloc.get_traced_memory()
        one_window = run.rows(0, 1000)
        _, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == STEPS and len(one_window) == 1000
    held = _held_rows_bytes(big_file)
    assert held > 40 * 2**20  # what holding every row costs: the bound below must mean something
    assert peak < held / 2, f"peak {peak / 2**20:.1f} MiB while reading {STEPS} steps (rows held: {held / 2**20:.0f} MiB)"


def _held_rows_bytes(path: Path) -> int:
    """What the rows of `path` cost when all of them are held (as the whole-file reader did)."""
    run = read_run(path)
    gc.collect()
    tracemalloc.start()
    try:
        rows = windowed(run, 5000)
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(rows) == STEPS
    return size
