"""The offline-run reader (`connector.local`) against real `.wandb` files from the official SDK.

Every scenario file is written once per session by `wandb` 0.31 in offline mode (subprocess,
see `tests/wandb_files.py`); our rows must equal both the SDK's own protobuf decoding of the same
file (the oracle) and what the script logged. Synthetic files built from records that the SDK's
protobuf classes serialize cover what the SDK no longer writes (legacy `key` + JSON objects,
removes, typed values, multi-block records).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from wandb_files import (  # noqa: E402
    SCENARIOS,
    Produced,
    diff_rows,
    normalize,
    produce,
    same,
    sdk_decode,
    sdk_env,
)

from connector.core.rundata import MemoryRun, RunData  # noqa: E402
from connector.errors import LocalFileError  # noqa: E402
from connector.local import (  # noqa: E402
    DamagedRecordWarning,
    LocalRun,
    find_run_files,
    load_run,
    load_runs,
    read_run,
)
from connector.local.framing import BLOCK, FIRST, FULL, HEADER, LAST, MIDDLE, encode_chunk  # noqa: E402

pytest.importorskip("wandb", reason="the official SDK produces the test files")

TIMES = ("_runtime", "_timestamp")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sdk_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Produced, dict[str, Any]]]:
    """Every scenario, produced by the SDK once, with the oracle's decoding of its file."""
    work = tmp_path_factory.mktemp("sdk-runs")

    def one(names: tuple[str, ...]) -> list[tuple[str, tuple[Produced, dict[str, Any]]]]:
        out = []
        for name in names:  # resume_a must start before resume_b: same task, in order
            produced = produce(name, work)
            out.append((name, (produced, sdk_decode(produced.file, work / "_sdk"))))
        return out

    tasks = [(n,) for n in SCENARIOS if not n.startswith("resume")] + [("resume_a", "resume_b")]
    with ThreadPoolExecutor(3) as pool:
        return dict(pair for chunk in pool.map(one, tasks) for pair in chunk)


def rows_of(run: RunData) -> list[dict[str, Any]]:
    return [run.row(i) for i in range(len(run.steps()))]


def writer(payloads: list[bytes]) -> bytes:
    """A `.wandb` writer for tests: 32 KiB blocks, FULL or FIRST/MIDDLE*/LAST chunks, padding."""
    out = bytearray(HEADER)
    for payload in payloads:
        data = memoryview(payload)
        first = True
        while True:
            left = BLOCK - len(out) % BLOCK
            if left < 7:
                out += b"\0" * left
                continue
            n = min(len(data), left - 7)
            last = n == len(data)
            kind = FULL if first and last else FIRST if first else LAST if last else MIDDLE
            out += encode_chunk(kind, bytes(data[:n]))
            data = data[n:]
            first = False
            if last:
                break
    return bytes(out)


# ----------------------------------------------------------------------------- rows vs SDK


ROW_SCENARIOS = [n for n in SCENARIOS if n not in ("killed", "resume_a", "resume_b")]


@pytest.mark.parametrize("name", ROW_SCENARIOS)
def test_rows_equal_sdk_protobuf_and_logged(sdk_runs, name: str) -> None:
    produced, oracle = sdk_runs[name]
    run = read_run(produced.file)
    ours = rows_of(run)
    assert ours, "no rows read"
    assert diff_rows(ours, oracle["rows"]) == []
    assert diff_rows(ours, produced.expected["rows"], drop=TIMES) == []
    assert all(type(r["_step"]) is int for r in ours)
    assert list(run.steps()) == sorted(run.steps())


def test_nan_and_infinity_stay_floats(sdk_runs) -> None:
    produced, _ = sdk_runs["types"]
    row = read_run(produced.file).row(0)
    assert math.isnan(row["nan"]) and row["inf"] == math.inf and row["ninf"] == -math.inf
    assert math.isnan(row["lst_nan"][1])
    assert row["nested"]["b"]["d"] == "deep" and row["flag"] is True and row["none"] is None
    assert row["s"] == 'hello "quoted" \u00e9\u20ac \n line'


def test_histogram_row(sdk_runs) -> None:
    produced, _ = sdk_runs["histogram"]
    h = read_run(produced.file).row(0)["h"]
    assert h["_type"] == "histogram" and sum(h["values"]) == 100 and len(h["bins"]) == 65


def test_explicit_steps_keep_gaps(sdk_runs) -> None:
    run = read_run(sdk_runs["steps"][0].file)
    assert list(run.steps()) == [0, 5, 12, 1000]
    assert {k: run.row(1)[k] for k in ("x", "y")} == {"x": 1.5, "y": 2}


def test_define_metric_step_metrics(sdk_runs) -> None:
    run = read_run(sdk_runs["define_metric"][0].file)
    assert run.step_metrics == {"val/*": "epoch", "train/loss": "batch"}


# ----------------------------------------------------------------------------- metadata


@pytest.mark.parametrize("name", ROW_SCENARIOS + ["killed"])
def test_config_summary_equal_sdk(sdk_runs, name: str) -> None:
    produced, oracle = sdk_runs[name]
    run = read_run(produced.file)
    user = {k: v for k, v in oracle["config"].items() if k != "_wandb"}
    assert same(normalize(run.meta.config), normalize(user))
    assert run.wandb_config == oracle["config"].get("_wandb", {})
    assert same(normalize(run.meta.summary), normalize(oracle["summary"]))
    assert len(run.events()) == oracle["stats"]


def test_config_and_summary_updates(sdk_runs) -> None:
    produced, _ = sdk_runs["config_summary"]
    meta = read_run(produced.file).meta
    assert "_wandb" not in meta.config
    assert meta.config == produced.expected["config"]
    for key, value in produced.expected["summary"].items():
        assert meta.summary[key] == value
    assert meta.summary["_step"] == 4


def test_identity_and_times(sdk_runs) -> None:
    produced, oracle = sdk_runs["basic"]
    run = read_run(produced.file)
    meta = run.meta
    assert isinstance(run, MemoryRun) and isinstance(run, LocalRun) and isinstance(run, RunData)
    assert meta.run_id == produced.expected["run_id"] == oracle["run"]["run_id"]
    assert (meta.entity, meta.project) == ("local", "tests")  # offline: no entity in the file
    assert meta.display_name == "basic-run" and meta.tags == ["t1", "t2"] and meta.notes == "hello"
    from datetime import UTC, datetime

    start = datetime.fromtimestamp(oracle["run"]["start_time"], UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert meta.created_at == start
    assert meta.heartbeat_at is not None and meta.heartbeat_at >= meta.created_at
    assert run.files == [produced.file] and run.producer.startswith("0.31")
    other = read_run(produced.file, entity="team", project="proj")
    assert (other.meta.entity, other.meta.project) == ("team", "proj")


def test_system_metric_events(sdk_runs) -> None:
    produced, oracle = sdk_runs["killed"]  # the longest run: at least one stats sample
    events = read_run(produced.file).events()
    assert len(events) == oracle["stats"]
    for ev in events:
        assert ev["_wandb"] is True and ev["_runtime"] >= 0 and ev["_timestamp"] > 1e9
        assert any(k.startswith("system.") for k in ev)


def test_states(sdk_runs) -> None:
    assert read_run(sdk_runs["basic"][0].file).meta.state == "finished"
    failed = read_run(sdk_runs["failed"][0].file)
    assert failed.meta.state == "failed" and failed.exit_code == 1
    killed = sdk_runs["killed"][0].file
    assert read_run(killed).exit_code is None
    assert read_run(killed, running_grace=3600).meta.state == "running"
    assert read_run(killed, running_grace=0).meta.state == "crashed"


def test_killed_run_reads_what_was_written(sdk_runs) -> None:
    produced, oracle = sdk_runs["killed"]
    ours = rows_of(read_run(produced.file))
    assert ours and diff_rows(ours, oracle["rows"]) == []
    steps = [r["_step"] for r in ours]
    assert steps == list(range(len(steps)))  # a prefix of what was logged
    logged = produced.expected["rows"][: len(steps)]
    assert diff_rows(ours, logged, drop=TIMES) == []


@pytest.mark.parametrize("name", ["types", "histogram", "config_summary", "killed"])
def test_fast_item_path_equals_general_decoder(sdk_runs, name: str) -> None:
    """The head-cache fast path of `decode_items` agrees with the plain field-by-field decoder."""
    from connector.local import records
    from connector.local.framing import iter_file_payloads

    checked = 0
    for _, payload in iter_file_payloads(sdk_runs[name][0].file):
        _, kind, start, end = records.split_record(payload)
        if kind not in (records.HISTORY, records.SUMMARY, records.CONFIG):
            continue
        keys, values, npaths, nvalues, spans = records.decode_items(payload, start, end)
        paths, ordered_values, ordered_spans = records.decode_items_ordered(payload, start, end)
        flat = [(p, v) for p, v in zip(paths, ordered_values, strict=True) if type(p) is str]
        nested = [(p, v) for p, v in zip(paths, ordered_values, strict=True) if type(p) is tuple]
        assert list(zip(keys, values, strict=True)) == flat
        assert list(zip(npaths, nvalues, strict=True)) == nested
        assert spans == ordered_spans
        checked += 1
    assert checked > 10


# ----------------------------------------------------------------------------- discovery


def test_load_runs_merges_resumed_run(sdk_runs) -> None:
    a, b = sdk_runs["resume_a"][0], sdk_runs["resume_b"][0]
    root = a.run_dir.parents[1]  # .../resume_a
    top = root.parent
    runs = {r.meta.run_id: r for r in load_runs(top)}
    assert len(runs) == len(SCENARIOS) - 1  # the two resume files are one run
    merged = runs["resumed01"]
    assert merged.files == [a.file, b.file]
    assert list(merged.steps()) == list(range(8))
    parts = [merged.row(i)["part"] for i in range(8)]
    assert parts == ["a", "a", "a", "b", "b", "b", "b", "b"]  # the later file wins steps 3, 4
    assert merged.meta.summary["r"] == 7 and merged.meta.state == "finished"


def test_find_run_files_shapes(sdk_runs, tmp_path: Path) -> None:
    produced = sdk_runs["basic"][0]
    wandb_dir = produced.run_dir.parent
    assert (wandb_dir / "latest-run").is_symlink()
    assert find_run_files(wandb_dir) == [produced.file]  # latest-run is not a duplicate
    assert find_run_files(produced.run_dir) == [produced.file]
    assert find_run_files(produced.file) == [produced.file]
    assert load_run(wandb_dir / "latest-run").meta.run_id == produced.expected["run_id"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_run_files(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LocalFileError, match="empty"):
        find_run_files(tmp_path / "empty")
    with pytest.raises(LocalFileError, match="holds"):
        load_run(wandb_dir.parents[1])


# ----------------------------------------------------------------------------- damage


def copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def test_corrupted_byte_raises_with_offset(sdk_runs, tmp_path: Path) -> None:
    produced, oracle = sdk_runs["killed"]
    bad = copy(produced.file, tmp_path / "run-bad.wandb")
    data = bytearray(bad.read_bytes())
    at = 10 * BLOCK + 5000
    data[at] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(LocalFileError, match=r"run-bad\.wandb.*byte offset (\d+)") as info:
        read_run(bad)
    offset = int(str(info.value).split("byte offset ")[1].split(":")[0])
    assert 10 * BLOCK <= offset <= at

    with pytest.warns(DamagedRecordWarning, match=r"run-bad\.wandb.*offset \d+.*skipped \d+ bytes"):
        run = read_run(bad, skip_damaged=True)
    ours = rows_of(run)
    full = {r["_step"]: r for r in oracle["rows"]}
    assert len(full) - 80 < len(ours) < len(full)  # about one block of rows lost
    assert diff_rows(ours, [full[r["_step"]] for r in ours]) == []


@pytest.mark.parametrize("blocks", [1, 3])
def test_small_read_windows(sdk_runs, monkeypatch: pytest.MonkeyPatch, blocks: int) -> None:
    """Records and chunk sequences that straddle the reader's I/O windows."""
    from connector.local import framing

    produced, oracle = sdk_runs["killed"]
    monkeypatch.setattr(framing, "WINDOW", blocks * BLOCK)
    assert diff_rows(rows_of(read_run(produced.file)), oracle["rows"]) == []


def test_broken_chunk_sequence(tmp_path: Path) -> None:
    rec = bytes.fromhex("0801") + b"\x12\x00"  # Record{num: 1, history: {}}
    data = bytearray(HEADER + encode_chunk(FULL, rec) + encode_chunk(LAST, rec) + encode_chunk(FULL, rec))
    bad = tmp_path / "run-seq.wandb"
    bad.write_bytes(bytes(data))
    with pytest.raises(LocalFileError, match=r"run-seq\.wandb.*byte offset 18.*without a FIRST"):
        read_run(bad)


def test_truncated_file_reads_complete_records(sdk_runs, tmp_path: Path) -> None:
    produced, oracle = sdk_runs["basic"]
    data = produced.file.read_bytes()
    full = oracle["rows"]
    seen = []
    for cut in (len(data) // 3, len(data) // 2 + 11, len(data) - 3, len(data) - 1):
        part = copy(produced.file, tmp_path / f"cut{cut}" / "run-cut.wandb")
        part.write_bytes(data[:cut])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ours = rows_of(read_run(part))
        assert diff_rows(ours, full[: len(ours)]) == []
        seen.append(len(ours))
    assert seen == sorted(seen) and 0 < seen[0] < len(full)


def test_bad_header(tmp_path: Path) -> None:
    bad = tmp_path / "run-hdr.wandb"
    bad.write_bytes(b"LEVELDB" + b"\0" * 100)
    with pytest.raises(LocalFileError, match=r"run-hdr\.wandb.*not a \.wandb file"):
        read_run(bad)
    bad.write_bytes(b":W&B\xe1\xbe\x07")
    with pytest.raises(LocalFileError, match=r"run-hdr\.wandb.*version 7"):
        read_run(bad)
    bad.write_bytes(b":W&")
    with pytest.raises(LocalFileError, match=r"run-hdr\.wandb"):
        read_run(bad)


# ----------------------------------------------------------------------------- synthetic records


SYNTH = r"""
import json, sys
from wandb.proto import wandb_internal_pb2 as pb

recs = []


def add(**kw):
    r = pb.Record(num=len(recs) + 1, **kw)
    r._info.stream_id = "synth01"
    recs.append(r)
    return r


run = pb.RunRecord(run_id="synth01", entity="ent", project="proj", display_name="Synth",
                   run_group="g", job_type="train", notes="n")
run.tags.extend(["x", "y"])
run.start_time.seconds, run.start_time.nanos = 1700000000, 500000000
c = run.config.update.add(); c.key = "a"; c.value_json = '{"x": 1}'
c = run.config.update.add(); c.key = "_wandb"; c.value_json = '{"cli_version": "0.31.0"}'
add(run=run)

h = pb.HistoryRecord()  # legacy form: top-level key + JSON objects, merged with nested_key items
i = h.item.add(); i.key = "train"; i.value_json = '{"loss": 0.5, "sub": {"a": NaN}}'
i = h.item.add(); i.nested_key.extend(["train", "acc"]); i.value_json = "0.9"
i = h.item.add(); i.key = "train"; i.value_json = '{"sub": {"b": -Infinity}}'
i = h.item.add(); i.key = "_step"; i.value_json = "0"
add(history=h)

h = pb.HistoryRecord()  # no _step item: step from HistoryStep; typed values (0.31)
h.step.num = 7
i = h.item.add(); i.nested_key.append("x"); i.value_json = "1"
i = h.item.add(); i.nested_key.append("ti"); i.integer = -3
i = h.item.add(); i.nested_key.append("tn"); i.number = 2.5
i = h.item.add(); i.nested_key.append("tt"); i.text = "hi"
i = h.item.add(); i.nested_key.append("tb"); i.boolean = True
add(history=h)

h = pb.HistoryRecord()  # a record larger than a block: FIRST/MIDDLE/LAST chunks
h.step.num = 3
i = h.item.add(); i.nested_key.append("big"); i.value_json = json.dumps("z" * 100000)
add(history=h)

h = pb.HistoryRecord()  # step 7 again (a resume inside one file): the later row wins
h.step.num = 7
i = h.item.add(); i.nested_key.append("x"); i.value_json = "2"
add(history=h)

s = pb.SummaryRecord()
u = s.update.add(); u.nested_key.extend(["best", "acc"]); u.value_json = "0.9"
u = s.update.add(); u.nested_key.extend(["best", "loss"]); u.value_json = "0.1"
u = s.update.add(); u.key = "m"; u.value_json = "1"
u = s.update.add(); u.key = "gone"; u.value_json = "1"
add(summary=s)
s = pb.SummaryRecord()
r_ = s.remove.add(); r_.key = "gone"
r_ = s.remove.add(); r_.nested_key.extend(["best", "loss"])
add(summary=s)

cfg = pb.ConfigRecord()
u = cfg.update.add(); u.key = "b"; u.value_json = "2"
u = cfg.update.add(); u.nested_key.extend(["a", "y"]); u.value_json = '"deep"'
add(config=cfg)
cfg = pb.ConfigRecord()
r_ = cfg.remove.add(); r_.nested_key.extend(["a", "x"])
add(config=cfg)

st = pb.StatsRecord(stats_type=0)
st.timestamp.seconds = 1700000010
it = st.item.add(); it.key = "cpu"; it.value_json = "12.5"
add(stats=st)
add(exit=pb.RunExitRecord(exit_code=0, runtime=10))
json.dump([r.SerializeToString().hex() for r in recs], sys.stdout)
"""


@pytest.fixture(scope="module")
def synth_payloads(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    work = tmp_path_factory.mktemp("synth")
    proc = subprocess.run(
        [sys.executable, "-c", SYNTH], env=sdk_env(work), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return [bytes.fromhex(h) for h in json.loads(proc.stdout)]


@pytest.fixture()
def synth_file(synth_payloads: list[bytes], tmp_path: Path) -> Path:
    path = tmp_path / "offline-run-20231114_221320-synth01" / "run-synth01.wandb"
    path.parent.mkdir()
    path.write_bytes(writer(synth_payloads))
    return path


def test_synthetic_records(synth_file: Path) -> None:
    run = read_run(synth_file)
    rows = rows_of(run)
    assert [r["_step"] for r in rows] == [0, 3, 7]
    train = rows[0]["train"]
    assert train["loss"] == 0.5 and train["acc"] == 0.9
    assert math.isnan(train["sub"]["a"]) and train["sub"]["b"] == -math.inf
    assert rows[1]["big"] == "z" * 100000
    assert rows[2] == {"x": 2, "_step": 7}  # the later record at step 7 replaced the first
    meta = run.meta
    assert (meta.entity, meta.project, meta.run_id) == ("ent", "proj", "synth01")
    assert (meta.display_name, meta.group, meta.job_type, meta.notes) == ("Synth", "g", "train", "n")
    assert meta.tags == ["x", "y"] and meta.created_at == "2023-11-14T22:13:20"
    assert meta.heartbeat_at == "2023-11-14T22:13:30"
    assert meta.config == {"a": {"y": "deep"}, "b": 2}
    assert run.wandb_config == {"cli_version": "0.31.0"}
    assert meta.summary == {"best": {"acc": 0.9}, "m": 1}
    assert run.events() == [
        {"_wandb": True, "_timestamp": 1700000010.0, "_runtime": 9.5, "system.cpu": 12.5}
    ]
    assert meta.state == "finished"


def test_synthetic_typed_values(synth_payloads: list[bytes], tmp_path: Path) -> None:
    path = tmp_path / "run-typed.wandb"
    path.write_bytes(writer(synth_payloads[:3]))  # up to the first step-7 record
    row = read_run(path).row(1)
    assert row == {"x": 1, "ti": -3, "tn": 2.5, "tt": "hi", "tb": True, "_step": 7}


def test_record_spanning_blocks_and_every_truncation(synth_payloads: list[bytes], tmp_path: Path) -> None:
    data = writer(synth_payloads)
    assert len(data) > 3 * BLOCK
    path = tmp_path / "run-t.wandb"
    full = rows_of(read_run_bytes(path, data))
    counts = []
    for cut in range(7, len(data), 997):
        ours = rows_of(read_run_bytes(path, data[:cut]))
        assert [r["_step"] for r in ours] == sorted(r["_step"] for r in ours)
        counts.append(len(ours))
    assert max(counts) <= len(full)


def read_run_bytes(path: Path, data: bytes) -> LocalRun:
    path.write_bytes(data)
    return read_run(path)


def test_zero_length_first_chunk_and_zeroed_block(tmp_path: Path) -> None:
    def history(step: int) -> bytes:  # Record{num: 1, history: {step: {num: step}}}
        return bytes.fromhex("0801") + b"\x12\x04" + b"\x12\x02\x08" + bytes([step])

    # a first record (field 20, ignored by the reader) sized so that exactly 7 bytes remain in
    # block 0: the writer then emits a zero-length FIRST chunk there
    filler_len = BLOCK - len(HEADER) - 7 - 7
    zeros = filler_len - 7  # 08 02 | A2 01 | 3-byte length | zeros
    length = bytes([0x80 | (zeros & 0x7F), 0x80 | ((zeros >> 7) & 0x7F), zeros >> 14])
    filler = bytes.fromhex("0802a201") + length + b"\0" * zeros
    data = writer([filler, history(5)])
    assert data[BLOCK - 7 : BLOCK][4:] == b"\0\0" + bytes([FIRST])
    # then a zeroed rest of block (an all-zero chunk header), and a record in the next block
    data += b"\0" * (BLOCK - len(data) % BLOCK) + encode_chunk(FULL, history(6))
    path = tmp_path / "run-z.wandb"
    assert read_run_bytes(path, data).steps() == [5, 6]


def test_import_is_light() -> None:
    code = (
        "import sys, connector.local\n"
        "heavy = [m for m in ('wandb', 'google.protobuf', 'polars', 'duckdb', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
