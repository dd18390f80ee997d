"""Hostile `.wandb` files: the reader never trusts a file (limits, steps, folders, a fuzzer).

The fuzzer starts from files written by the official SDK in offline mode (`tests/wandb_files.py`)
and mutates them: bit flips, truncation at every 32 KiB block boundary (and ±1 byte) and at random
lengths, inserted random records with valid CRCs, inserted history records with deep nesting, huge
keys, many keys, non-integer and huge ``_step`` values. Each case runs in a worker subprocess whose
address space is capped (``RLIMIT_AS``), under a per-case timeout, through
`connector.local.load_runs` (plain and ``skip_damaged=True``) and a full scan to Arrow
(`connector.open_local(...)[i].scan().to_arrow()`). A case passes when every call either succeeds
or raises a `ConnectorError` subclass (nothing else, no hang, no runaway memory) and the rows are
never silently different:

* a truncated file reads as a prefix of the untruncated file's rows (which equal the SDK's own
  protobuf decoding, `test_seed_files_read_as_the_sdk_decodes_them`);
* a bit flip is an error, or (``skip_damaged=True``) a subset of the rows with identical values;
* an inserted history record is read exactly (a new row) or, when it breaks a rule or a limit,
  is an error naming the file and its byte offset, and is skipped with ``skip_damaged=True``.

The seed is fixed for CI (``DEFAULT_SEED``) and printed with every failure; ``--fuzz-seed N``
replays one, ``--fuzz-long`` runs thousands of cases (with a random seed unless one is given).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from wandb_files import Produced, diff_rows, produce, sdk_decode  # noqa: E402

import connector  # noqa: E402
from connector.errors import LocalFileError  # noqa: E402
from connector.local import (  # noqa: E402
    MAX_DEPTH,
    MAX_KEY_BYTES,
    MAX_KEYS,
    MAX_RECORD_BYTES,
    DamagedRecordWarning,
    find_run_files,
    load_runs,
    read_run,
)

pytest.importorskip("wandb", reason="the official SDK produces the seed files")

REPO = Path(__file__).resolve().parents[1]
SEEDS = ("basic", "types", "histogram", "killed")
DEFAULT_SEED = 20260612
CASE_TIMEOUT = 10.0  # seconds for one case (every call of it)
ADDRESS_CAP = 3 << 30  # RLIMIT_AS of the worker
RSS_CAP = 1536 << 20  # peak resident memory of the worker
BLOCK = 32768
HEADER = b":W&B\xe1\xbe\x00"


# ----------------------------------------------------------------------------- writing files


def varint(n: int) -> bytes:
    """A protobuf varint (negative numbers as 64-bit two's complement)."""
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def len_field(number: int, data: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(data)) + data


def history_record(
    items: list[tuple[str | tuple[str, ...], bytes]], *, step_num: int | None = None, with_step: bool = True
) -> bytes:
    """A `Record{history}` payload: items ``(key or nested_key parts, value_json)``."""
    body = bytearray()
    for path, value in items:
        if isinstance(path, str):
            item = len_field(1, path.encode())
        else:
            item = b"".join(len_field(2, part.encode()) for part in path)
        body += len_field(1, item + len_field(16, value))
    if with_step:
        body += len_field(2, b"" if step_num is None else varint(1 << 3) + varint(step_num))
    return len_field(2, bytes(body))


def chunk(kind: int, data: bytes | memoryview) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(bytes([kind])))
    return crc.to_bytes(4, "little") + len(data).to_bytes(2, "little") + bytes([kind]) + data


def frame(payloads: list[bytes]) -> tuple[bytes, list[int]]:
    """A `.wandb` file of `payloads` as the SDK frames it, and each record's byte offset."""
    out = bytearray(HEADER)
    offsets = []
    for payload in payloads:
        data = memoryview(payload)
        first = True
        while True:
            left = BLOCK - len(out) % BLOCK
            if left < 7:
                out += b"\0" * left
                continue
            if first:
                offsets.append(len(out))
            n = min(len(data), left - 7)
            last = n == len(data)
            kind = 1 if first and last else 2 if first else 4 if last else 3
            out += chunk(kind, data[:n])
            data = data[n:]
            first = False
            if last:
                break
    return bytes(out), offsets


def split_payloads(data: bytes) -> list[bytes]:
    """The records of an intact `.wandb` file (written apart from `connector.local.framing`)."""
    pos, pending, out = 7, b"", []
    while True:
        room = BLOCK - pos % BLOCK
        if room < 7:
            pos += room
            continue
        if pos + 7 > len(data):
            return out
        size = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        if kind == 0 and size == 0:
            pos += room
            continue
        body = data[pos + 7 : pos + 7 + size]
        assert zlib.crc32(bytes([kind]) + body) == int.from_bytes(data[pos : pos + 4], "little")
        pos += 7 + size
        if kind == 1:
            out.append(body)
        elif kind == 2:
            pending = body
        elif kind == 3:
            pending += body
        elif kind == 4:
            out.append(pending + body)


# ----------------------------------------------------------------------------- the worker

def digest(row: dict[str, Any]) -> str:
    """A fingerprint of one row: the same values give the same text, whatever the key order."""
    text = json.dumps(row, sort_keys=True, default=repr)
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


WORKER = (
    r'''
import hashlib, json, resource, sys, time, warnings
cap = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
import connector
from connector.errors import ConnectorError
from connector.local import DamagedRecordWarning, load_runs
'''
    + inspect.getsource(digest).replace("row: dict[str, Any]) -> str", "row)")
    + r'''

def rows(path, skip):
    out = []
    for run in load_runs(path, skip_damaged=skip, running_grace=0):
        steps = run.steps()
        out += [[steps[i], digest(run.row(i))] for i in range(len(steps))]
    return out


def arrow(path, skip):
    steps = []
    for run in connector.open_local(path, skip_damaged=skip):
        table = run.scan().to_arrow()
        steps += table.column("_step").to_pylist()
    return steps


CALLS = {
    "plain": lambda p: rows(p, False),
    "skip": lambda p: rows(p, True),
    "arrow": lambda p: arrow(p, False),
    "arrow_skip": lambda p: arrow(p, True),
}

for line in sys.stdin:
    case = json.loads(line)
    out = {"id": case["id"]}
    for mode in case["modes"]:
        start = time.monotonic()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = {"ok": True, "value": CALLS[mode](case["path"])}
            except BaseException as exc:  # everything is reported; the test decides
                result = {"ok": False, "type": type(exc).__name__,
                          "typed": isinstance(exc, ConnectorError), "message": str(exc)[:800]}
        result["damaged_warnings"] = sum(isinstance(w.message, DamagedRecordWarning) for w in caught)
        result["seconds"] = time.monotonic() - start
        out[mode] = result
    out["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(out), flush=True)
'''
)


class WorkerDied(Exception):
    """The worker hung past the case timeout or died (a crash, an abort in C++)."""


class Worker:
    """A subprocess reading cases with this checkout's `connector`, memory capped by RLIMIT_AS."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()

    def _start(self) -> subprocess.Popen[str]:
        env = dict(os.environ, PYTHONPATH=str(REPO), MALLOC_ARENA_MAX="2")
        self.stderr = open(self.folder / "worker-stderr.txt", "a")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(ADDRESS_CAP)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env,
        )  # fmt: skip
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        self.proc, self.lines = proc, lines
        return proc

    def run(self, path: Path, modes: tuple[str, ...], case_id: str) -> dict[str, Any]:
        proc = self.proc if self.proc is not None and self.proc.poll() is None else self._start()
        assert proc.stdin is not None
        proc.stdin.write(json.dumps({"id": case_id, "path": str(path), "modes": list(modes)}) + "\n")
        proc.stdin.flush()
        try:
            line = self.lines.get(timeout=CASE_TIMEOUT)
        except queue.Empty:
            self.stop()
            raise WorkerDied(f"no answer within {CASE_TIMEOUT:.0f} s (a hang)") from None
        if line is None:
            code = proc.wait()
            self.proc = None
            tail = (self.folder / "worker-stderr.txt").read_text()[-1500:]
            raise WorkerDied(f"the worker died (exit {code}): {tail}")
        answer = json.loads(line)
        assert answer["id"] == case_id
        return answer

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


# ----------------------------------------------------------------------------- seeds


@dataclass
class Seed:
    """One SDK-written file, its records, and its rows as the worker reads them."""

    name: str
    produced: Produced
    oracle: dict[str, Any]
    data: bytes
    payloads: list[bytes]
    rows: list[list[Any]] = field(default_factory=list)  # [[step, digest], ...] sorted by step

    @property
    def steps(self) -> list[int]:
        return [s for s, _ in self.rows]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Seed]:
    work = tmp_path_factory.mktemp("sdk-hostile")

    def one(name: str) -> Seed:
        produced = produce(name, work)
        data = produced.file.read_bytes()
        payloads = split_payloads(data)
        assert frame(payloads)[0] == data[: len(frame(payloads)[0])]  # our writer frames as the SDK
        return Seed(name, produced, sdk_decode(produced.file, work / "_sdk"), data, payloads)

    with ThreadPoolExecutor(len(SEEDS)) as pool:
        return {s.name: s for s in pool.map(one, SEEDS)}


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, seeds: dict[str, Seed]) -> Iterator[Worker]:
    folder = tmp_path_factory.mktemp("fuzz-worker")
    w = Worker(folder)
    try:
        for seed in seeds.values():
            answer = w.run(seed.produced.file, ("plain",), f"seed-{seed.name}")
            assert answer["plain"]["ok"], answer
            seed.rows = answer["plain"]["value"]
        yield w
    finally:
        w.stop()


def test_seed_files_read_as_the_sdk_decodes_them(seeds: dict[str, Seed], worker: Worker) -> None:
    """The baseline of every fuzz case: the untruncated files equal the SDK's protobuf decoding."""
    for seed in seeds.values():
        run = read_run(seed.produced.file)
        rows = [run.row(i) for i in range(len(run.steps()))]
        assert diff_rows(rows, seed.oracle["rows"]) == [], seed.name
        assert seed.rows == [[r["_step"], digest(r)] for r in rows], seed.name
        assert len(seed.rows) > 0


# ----------------------------------------------------------------------------- cases


@dataclass
class Case:
    """One mutated file and what reading it must give."""

    label: str
    seed: str
    data: bytes
    modes: tuple[str, ...]
    check: Callable[[dict[str, Any], Path], list[str]]


def _problems_common(answer: dict[str, Any], modes: tuple[str, ...]) -> list[str]:
    out = []
    for mode in modes:
        r = answer[mode]
        if not r["ok"] and not r["typed"]:
            out.append(f"{mode}: untyped {r['type']}: {r['message']}")
    if answer["maxrss"] > RSS_CAP:
        out.append(f"peak RSS {answer['maxrss'] >> 20} MiB > {RSS_CAP >> 20} MiB")
    return out


def _arrow_matches(answer: dict[str, Any], rows_mode: str, arrow_mode: str) -> list[str]:
    rows, table = answer.get(rows_mode), answer.get(arrow_mode)
    if not rows or not table or not rows["ok"] or not table["ok"]:
        if rows and table and rows["ok"] != table["ok"]:
            return [f"{rows_mode} ok={rows['ok']} but {arrow_mode} ok={table['ok']}: "
                    f"{rows.get('message') or table.get('message')}"]
        return []
    steps = sorted(s for s, _ in rows["value"])
    if sorted(table["value"]) != steps:
        return [f"{arrow_mode} steps {table['value'][:8]}... != {rows_mode} steps {steps[:8]}..."]
    return []


def prefix_case(seed: Seed, label: str, data: bytes) -> Case:
    """A truncated file: the rows are a prefix of the whole file's rows."""
    modes = ("plain", "arrow")

    def check(answer: dict[str, Any], path: Path) -> list[str]:
        out = _problems_common(answer, modes) + _arrow_matches(answer, "plain", "arrow")
        plain = answer["plain"]
        if not plain["ok"]:
            if len(data) >= 7:
                out.append(f"a truncated file must read, got {plain['type']}: {plain['message']}")
        elif plain["value"] != seed.rows[: len(plain["value"])]:
            out.append(f"not a prefix: {len(plain['value'])} rows, steps {[s for s, _ in plain['value']][:10]}")
        return out

    return Case(label, seed.name, data, modes, check)


def subset_case(seed: Seed, label: str, data: bytes) -> Case:
    """A damaged file: an error, or rows that are a subset of the original rows, values equal."""
    modes = ("plain", "skip", "arrow_skip")
    original = {tuple(r) for r in seed.rows}

    def check(answer: dict[str, Any], path: Path) -> list[str]:
        out = _problems_common(answer, modes) + _arrow_matches(answer, "skip", "arrow_skip")
        for mode in ("plain", "skip"):
            r = answer[mode]
            if r["ok"]:
                extra = [row for row in map(tuple, r["value"]) if row not in original]
                if extra:
                    out.append(f"{mode}: rows not in the original file (or changed): {extra[:5]}")
        return out

    return Case(label, seed.name, data, modes, check)


def anything_typed_case(seed: Seed, label: str, data: bytes) -> Case:
    """Random records inserted: any outcome, as long as errors are typed and the scan agrees."""
    modes = ("plain", "skip", "arrow_skip")

    def check(answer: dict[str, Any], path: Path) -> list[str]:
        return _problems_common(answer, modes) + _arrow_matches(answer, "skip", "arrow_skip")

    return Case(label, seed.name, data, modes, check)


def insert_case(
    seed: Seed, rng: random.Random, label: str, payload: bytes, row: dict[str, Any] | None, *,
    with_arrow: bool = True,
) -> Case:
    """A history record inserted among the seed's records.

    `row` is what it must read as (its step is new to the file), or None when the record must be
    refused: an error naming the file and the record's offset, and with ``skip_damaged=True`` the
    original rows and a `DamagedRecordWarning`.
    """
    payloads = list(seed.payloads)
    at = rng.randrange(1, len(payloads) + 1)
    data, offsets = frame(payloads[:at] + [payload] + payloads[at:])
    offset = offsets[at]
    if row is None:
        modes: tuple[str, ...] = ("plain", "skip", "arrow_skip") if with_arrow else ("plain", "skip")
    else:
        modes = ("plain", "arrow") if with_arrow else ("plain",)

    def check(answer: dict[str, Any], path: Path) -> list[str]:
        out = _problems_common(answer, modes)
        plain = answer["plain"]
        if row is not None:
            out += _arrow_matches(answer, "plain", "arrow")
            want = sorted([*seed.rows, [row["_step"], digest(row)]])
            if not plain["ok"]:
                out.append(f"must read, got {plain['type']}: {plain['message']}")
            elif plain["value"] != want:
                got = {tuple(r) for r in plain["value"]}
                out.append(f"rows differ: missing {[r for r in want if tuple(r) not in got][:3]}")
            return out
        out += _arrow_matches(answer, "skip", "arrow_skip")
        if plain["ok"]:
            out.append("must be refused, but it read")
        elif f"byte offset {offset}" not in plain["message"] or path.name not in plain["message"]:
            out.append(f"the error does not name the file and offset {offset}: {plain['message']}")
        skip = answer["skip"]
        if not skip["ok"] or skip["value"] != seed.rows or skip["damaged_warnings"] < 1:
            out.append(f"skip_damaged must give the original rows with a warning: {skip}"[:600])
        return out

    return Case(label, seed.name, data, modes, check)


# -- generators: each yields cases from one seed -----------------------------------------------


def gen_bitflips(seed: Seed, rng: random.Random, n: int) -> Iterator[Case]:
    size = len(seed.data)
    for _ in range(n):
        data = bytearray(seed.data)
        where = rng.random()
        if where < 0.1:
            pos = rng.randrange(7)  # the header
        elif where < 0.3:  # a chunk header of the first record after a block boundary
            block = rng.randrange(max(1, size // BLOCK))
            pos = min(size - 1, block * BLOCK + (7 if block == 0 else 0) + rng.randrange(7))
        else:
            pos = rng.randrange(size)
        bit = rng.randrange(8)
        data[pos] ^= 1 << bit
        yield subset_case(seed, f"bit flip at byte {pos} bit {bit}", bytes(data))


def gen_truncations(seed: Seed, rng: random.Random, n: int, every_block: bool) -> Iterator[Case]:
    size = len(seed.data)
    boundaries = list(range(BLOCK, size, BLOCK))
    if not every_block:
        boundaries = sorted(rng.sample(boundaries, min(len(boundaries), 4)))
    for b in boundaries:
        for cut in (b - 1, b, b + 1):
            yield prefix_case(seed, f"truncated at {cut} (block boundary {b})", seed.data[:cut])
    for _ in range(n):
        cut = rng.choice([rng.randrange(size), rng.randrange(min(size, 64)), size - rng.randrange(1, 40)])
        yield prefix_case(seed, f"truncated at {cut}", seed.data[:cut])


def _mutated(record: bytes, rng: random.Random) -> bytes:
    """A copy of a real record with a few bytes changed, inserted, dropped or cut off."""
    data = bytearray(record)
    for _ in range(rng.randint(1, 4)):
        if not data:
            break
        pos = rng.randrange(len(data))
        action = rng.randrange(4)
        if action == 0:
            data[pos] ^= 1 << rng.randrange(8)
        elif action == 1:
            data[pos] = rng.choice([0x00, 0x7F, 0x80, 0xFF, ord("{"), ord("["), ord('"'), rng.randrange(256)])
        elif action == 2:
            data[pos:pos] = rng.randbytes(rng.randint(1, 8))
        else:
            del data[pos:]
    return bytes(data)


def gen_random_records(seed: Seed, rng: random.Random, n: int) -> Iterator[Case]:
    for _ in range(n):
        size = rng.choice([0, 1, 2, rng.randrange(3, 64), rng.randrange(64, 3000), rng.randrange(BLOCK, 3 * BLOCK)])
        body = rng.randbytes(size)
        style = rng.randrange(5)
        if style == 1 and size > 2:  # a Record{history: <random>} with a valid length
            body = len_field(2, body)
        elif style == 2 and size > 2:  # random items inside a history record
            body = len_field(2, len_field(1, body))
        elif style >= 3:  # a real record of the file, mutated (most often a history record)
            body = _mutated(rng.choice(seed.payloads), rng)
        payloads = list(seed.payloads)
        at = rng.randrange(1, len(payloads) + 1)
        data = frame(payloads[:at] + [body] + payloads[at:])[0]
        yield anything_typed_case(seed, f"random record of {len(body)} bytes (style {style}) at #{at}", data)


BAD_STEPS = [b'"7"', b"3.5", b"5.0", b"true", b"false", b"null", b"-1", str(2**63).encode(),
             b"1e20", b'{"a": 1}', b"[1]", b"NaN", b'""', b"Infinity"]  # fmt: skip


def gen_steps(seed: Seed, rng: random.Random, n: int) -> Iterator[Case]:
    last = seed.steps[-1]
    for i in range(n):
        kind = i % 4
        if kind == 0:  # a `_step` item that is not an integer step
            value = rng.choice(BAD_STEPS)
            payload = history_record([("_step", value), ("x", b"1.5")], step_num=rng.choice([None, 3]))
            yield insert_case(seed, rng, f"_step {value!r}", payload, None)
        elif kind == 1:  # no step at all, while the other records have a `_step`
            payload = history_record([("x", b"1.5")], with_step=rng.random() < 0.5)
            yield insert_case(seed, rng, "no _step item and no HistoryStep.num", payload, None)
        elif kind == 2:  # a negative HistoryStep.num without a `_step` item
            payload = history_record([("x", b"1.5")], step_num=-rng.randrange(1, 2**63))
            yield insert_case(seed, rng, "negative HistoryStep.num", payload, None)
        else:  # a huge step, valid: a new row
            step = rng.choice([2**63 - 1, 2**62 + rng.randrange(1000), 1_700_000_000_000 + rng.randrange(10**9),
                               10**15, last + 1 + rng.randrange(10**6)])  # fmt: skip
            payload = history_record([("_step", str(step).encode()), ("x", b"1.5")], step_num=step % 2**63)
            yield insert_case(seed, rng, f"_step {step}", payload, {"_step": step, "x": 1.5})


def _deep(kind: str, depth: int) -> tuple[bytes, Any]:
    """JSON text nested `depth` levels (dicts or lists) and its value (when shallow enough)."""
    if kind == "dict":
        text = b'{"a":' * depth + b"1" + b"}" * depth
    else:
        text = b"[" * depth + b"1" + b"]" * depth
    return text, json.loads(text) if depth <= MAX_DEPTH else None


def gen_depth(seed: Seed, rng: random.Random, n: int) -> Iterator[Case]:
    step = seed.steps[-1] + 1
    totals = [1, 50, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 260, 990, 1000, 1100, 5000]
    for i in range(n):
        total = totals[i % len(totals)] if i < len(totals) else rng.choice(totals)
        parts = rng.choice([1, 1, rng.randint(1, min(total, MAX_DEPTH + 5)), min(total, 990)])
        parts = min(parts, total)
        kind = rng.choice(["dict", "list"])
        text, value = _deep(kind, total - parts)
        path = tuple(f"n{j}" for j in range(parts))
        payload = history_record([("_step", str(step).encode()), (path if parts > 1 else path[0], text)])
        row: dict[str, Any] | None = None
        if total <= MAX_DEPTH:
            node: dict[str, Any] = {"_step": step}
            row = node
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value
        label = f"depth {total} ({parts} nested_key parts + {total - parts} {kind} levels)"
        yield insert_case(seed, rng, label, payload, row)


def gen_keys(seed: Seed, rng: random.Random, n: int, long: bool) -> Iterator[Case]:
    step = seed.steps[-1] + 1
    sizes = [10, 1000, 20_000, MAX_KEYS + 1, 150_000] + ([90_000, 200_000] if long else [])
    for i in range(n):
        count = sizes[i % len(sizes)] if i < len(sizes) else rng.choice(sizes)
        as_object = rng.random() < 0.5
        if as_object:  # one item whose JSON object holds the keys
            text = b"{" + b",".join(b'"k%d":1' % j for j in range(count)) + b"}"
            payload = history_record([("_step", str(step).encode()), ("o", text)])
            ok = count + 2 <= MAX_KEYS - 100  # the file's own keys count too
            row = {"_step": step, "o": {f"k{j}": 1 for j in range(count)}} if ok else None
        else:
            items: list[tuple[str | tuple[str, ...], bytes]] = [("_step", str(step).encode())]
            items += [(f"k{j}", b"1") for j in range(count)]
            payload = history_record(items)
            ok = count + 1 <= MAX_KEYS - 100
            row = {"_step": step, **{f"k{j}": 1 for j in range(count)}} if ok else None
        label = f"{count} keys ({'in one object' if as_object else 'as items'})"
        # a scan of tens of thousands of columns is slow: the scan runs for the smaller rows only
        yield insert_case(seed, rng, label, payload, row, with_arrow=count <= 20_000 or not ok)


def gen_key_lengths(seed: Seed, rng: random.Random, n: int) -> Iterator[Case]:
    step = seed.steps[-1] + 1
    lengths = [100, MAX_KEY_BYTES, MAX_KEY_BYTES + 1, 100_000, 1_000_000]
    for i in range(n):
        length = lengths[i % len(lengths)] if i < len(lengths) else rng.choice(lengths)
        key = "k" * length
        nested = rng.random() < 0.5
        path: str | tuple[str, ...] = ("p", key) if nested else key
        payload = history_record([("_step", str(step).encode()), (path, b"2.5")])
        row = ({"_step": step, "p": {key: 2.5}} if nested else {"_step": step, key: 2.5}) if length <= MAX_KEY_BYTES else None
        yield insert_case(seed, rng, f"a key of {length} bytes{' (nested)' if nested else ''}", payload, row)


def gen_ms_steps(seed: Seed, rng: random.Random, n: int) -> Iterator[Case]:
    """Whole files whose steps are unix-millisecond timestamps (and 2**63 - 1): rows, not span."""
    for _ in range(n):
        count = rng.choice([10, 500, 3000])
        base = 1_700_000_000_000 + rng.randrange(10**6)
        stride = rng.choice([1, 997, 1000])
        steps = [base + i * stride for i in range(count)] + [2**63 - 1]
        records = [history_record([("_step", str(s).encode()), ("x", b"0.5")], step_num=s) for s in steps]
        data = frame(records)[0]
        rows = [[s, digest({"_step": s, "x": 0.5})] for s in steps]
        modes = ("plain", "arrow")

        def check(
            answer: dict[str, Any], path: Path, rows: list[list[Any]] = rows, modes: tuple[str, ...] = modes
        ) -> list[str]:
            out = _problems_common(answer, modes) + _arrow_matches(answer, "plain", "arrow")
            if not answer["plain"]["ok"] or answer["plain"]["value"] != rows:
                out.append(f"rows differ: {str(answer['plain'])[:300]}")
            return out

        yield Case(f"{count} rows at millisecond steps from {base}, and 2**63 - 1", seed.name, data, modes, check)


# ----------------------------------------------------------------------------- running cases


@pytest.fixture(scope="module")
def fuzz_seed(request: pytest.FixtureRequest) -> int:
    """`--fuzz-seed`, else a random seed with `--fuzz-long`, else `DEFAULT_SEED` (one per run)."""
    seed = request.config.getoption("--fuzz-seed")
    if seed is not None:
        return int(seed)
    if request.config.getoption("--fuzz-long"):
        return random.SystemRandom().randrange(2**32)
    return DEFAULT_SEED


def run_cases(cases: Iterator[Case], worker: Worker, folder: Path, seed: int, kind: str) -> int:
    """Run every case; fail with the seed, the case labels and the kept files on any problem."""
    failures: list[str] = []
    count = peak = 0
    started = time.monotonic()
    for case in cases:
        count += 1
        path = folder / f"run-{kind}{count:05d}.wandb"
        path.write_bytes(case.data)
        try:
            answer = worker.run(path, case.modes, f"{kind}-{count}")
            peak = max(peak, answer["maxrss"])
            problems = case.check(answer, path)
        except WorkerDied as exc:
            problems = [str(exc)]
        if problems:
            failures.append(f"[{case.seed}] {case.label} ({path}): " + "; ".join(problems))
            if len(failures) >= 10:
                break
        else:
            path.unlink()
    elapsed = time.monotonic() - started
    print(f"fuzz {kind}: {count} cases in {elapsed:.1f} s, seed {seed}, worker peak RSS {peak >> 20} MiB")
    assert not failures, (
        f"fuzz seed {seed} ({kind}): {len(failures)} failing cases (replay with "
        f"`pytest tests/test_hostile_files.py --fuzz-seed {seed} -k 'fuzzed and {kind}'`; "
        "failing files are kept):\n"
        + "\n".join(failures)
    )
    return count


KINDS = ("bitflip", "truncate", "random_records", "steps", "depth", "keys", "key_lengths", "ms_steps")


@pytest.mark.parametrize("kind", KINDS)
def test_fuzzed_files_fail_typed_or_read_true(
    kind: str,
    seeds: dict[str, Seed],
    worker: Worker,
    fuzz_seed: int,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    long = bool(request.config.getoption("--fuzz-long"))
    seed = fuzz_seed
    scale = 10 if long else 1
    rng = random.Random(f"{seed}-{kind}")

    def cases() -> Iterator[Case]:
        for name, s in seeds.items():
            small = name != "killed"  # the multi-block file is slower to read: fewer cases
            if kind == "bitflip":
                yield from gen_bitflips(s, rng, scale * (25 if small else 8))
            elif kind == "truncate":
                yield from gen_truncations(s, rng, scale * (8 if small else 3), every_block=long or not small)
            elif kind == "random_records":
                yield from gen_random_records(s, rng, scale * (15 if small else 3))
            elif kind == "steps" and small:
                yield from gen_steps(s, rng, scale * 16)
            elif kind == "depth" and small:
                yield from gen_depth(s, rng, scale * 10)
            elif kind == "keys" and name == "basic":
                yield from gen_keys(s, rng, scale * 5, long)
            elif kind == "key_lengths" and small:
                yield from gen_key_lengths(s, rng, scale * 5)
            elif kind == "ms_steps" and name == "basic":
                yield from gen_ms_steps(s, rng, scale * 3)

    assert run_cases(cases(), worker, tmp_path, seed, kind) > 0


# ----------------------------------------------------------------------------- explicit rules


def _with_record(seed: Seed, tmp_path: Path, payload: bytes, name: str = "run-x.wandb") -> tuple[Path, int]:
    """The seed's records with `payload` inserted before the last one; returns (file, its offset)."""
    payloads = list(seed.payloads)
    data, offsets = frame(payloads[:-1] + [payload] + payloads[-1:])
    path = tmp_path / name
    path.write_bytes(data)
    return path, offsets[len(payloads) - 1]


@pytest.mark.parametrize("value", [b'"7"', b"3.5", b"5.0", b"true", b"null", str(2**63).encode()])
def test_a_step_that_is_not_an_integer_is_an_error_never_step_0(
    seeds: dict[str, Seed], tmp_path: Path, value: bytes
) -> None:
    """Stumble: a string or float `_step` silently became step 0 and replaced that row."""
    seed = seeds["basic"]
    path, offset = _with_record(seed, tmp_path, history_record([("_step", value), ("x", b"1")]))
    shown = repr(json.loads(value)) if value != str(2**63).encode() else str(2**63)
    with pytest.raises(LocalFileError) as info:
        load_runs(path)
    message = str(info.value)
    assert str(path) in message and f"byte offset {offset}" in message and shown in message
    with pytest.warns(DamagedRecordWarning, match=f"byte offset {offset}"):
        (run,) = load_runs(path, skip_damaged=True)
    rows = [run.row(i) for i in range(len(run.steps()))]
    assert [[r["_step"], digest(r)] for r in rows] == seed.rows  # step 0 untouched


def test_a_missing_step_is_an_error_when_other_records_have_one(seeds: dict[str, Seed], tmp_path: Path) -> None:
    seed = seeds["basic"]
    path, offset = _with_record(seed, tmp_path, history_record([("x", b"1")]))
    with pytest.raises(LocalFileError, match=f"byte offset {offset}.*without a _step"):
        load_runs(path)
    # the same record before every `_step` item (first history record of the file)
    payloads = list(seed.payloads)
    first = next(i for i, p in enumerate(payloads) if b"_step" in p)
    data, offsets = frame(payloads[:first] + [history_record([("x", b"1")])] + payloads[first:])
    path.write_bytes(data)
    with pytest.raises(LocalFileError, match=f"byte offset {offsets[first]}.*without a _step"):
        load_runs(path)
    with pytest.warns(DamagedRecordWarning):
        (run,) = load_runs(path, skip_damaged=True)
    assert [[run.steps()[i], digest(run.row(i))] for i in range(len(run.steps()))] == seed.rows

    # a writer that only sets HistoryStep (no `_step` items anywhere): no `num` is step 0
    only = [history_record([("x", b"1")]), history_record([("x", b"2")], step_num=2)]
    path.write_bytes(frame(only)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (run,) = load_runs(path, skip_damaged=True)
    assert [run.row(i) for i in range(2)] == [{"x": 1, "_step": 0}, {"x": 2, "_step": 2}]


def test_huge_steps_cost_rows_not_span(seeds: dict[str, Seed], tmp_path: Path) -> None:
    """Steps at unix milliseconds and at 2**63 - 1: reading and scanning are by rows."""
    seed = seeds["basic"]
    steps = [1_700_000_000_000 + 1000 * i for i in range(2000)] + [10**15, 2**63 - 1]
    extra = [history_record([("_step", str(s).encode()), ("x", b"0.5")], step_num=s) for s in steps]
    payloads = list(seed.payloads)
    data = frame(payloads[:-1] + extra + payloads[-1:])[0]
    path = tmp_path / "offline-run-20260101_000000-huge" / "run-huge.wandb"
    path.parent.mkdir()
    path.write_bytes(data)
    started = time.monotonic()
    (run,) = connector.open_local(path)
    table = run.scan().to_arrow()
    assert table.column("_step").to_pylist() == seed.steps + steps
    keyed = run.scan_history(keys=["x"], min_step=10**15).to_arrow()
    assert keyed.column("_step").to_pylist() == [10**15, 2**63 - 1]
    window = run.scan(min_step=steps[10], max_step=steps[20]).to_arrow()
    assert window.num_rows == 10
    assert time.monotonic() - started < 10


def _crafted(seed: Seed, tmp_path: Path, items: list[tuple[str | tuple[str, ...], bytes]]) -> tuple[Path, int]:
    step = str(seed.steps[-1] + 1).encode()
    return _with_record(seed, tmp_path, history_record([("_step", step), *items]))


def test_deep_values_and_paths_are_clear_errors(seeds: dict[str, Seed], tmp_path: Path) -> None:
    """Stumble: a dict 1,000 deep or a nested_key 990 deep raised an uncaught RecursionError."""
    seed = seeds["basic"]
    for items in (
        [("d", b'{"a":' * 1000 + b"1" + b"}" * 1000)],
        [("d", b"[" * 5000 + b"]" * 5000)],
        [(tuple(["n"] * 990), b"1")],
        [(tuple(["n"] * 150), b'{"a":' * 60 + b"1" + b"}" * 60)],
    ):
        path, offset = _crafted(seed, tmp_path, items)  # type: ignore[arg-type]  # list invariance: the items are (path, bytes) pairs
        with pytest.raises(LocalFileError, match=f"byte offset {offset}.*MAX_DEPTH"):
            load_runs(path)
        with pytest.raises(LocalFileError, match="MAX_DEPTH"):
            connector.open_local(path)
    # at the limit: read, scanned and iterated
    path, _ = _crafted(seed, tmp_path, [(tuple(["n"] * 100), b'{"a":' * 100 + b"1" + b"}" * 100)])
    (run,) = connector.open_local(path)
    assert run.scan().to_arrow().num_rows == len(seed.rows) + 1
    assert len(list(run.scan_history())) == len(seed.rows) + 1


def test_many_keys_and_long_keys_are_clear_errors(seeds: dict[str, Seed], tmp_path: Path) -> None:
    """Stumble: one row of 200k keys (a 3.3 MB file) aborted in C++; 50k keys needed 915 MB."""
    seed = seeds["basic"]
    for items in (
        [(f"k{i}", b"1") for i in range(200_000)],
        [("o", b"{" + b",".join(b'"k%d":1' % i for i in range(200_000)) + b"}")],
        [("k" * (MAX_KEY_BYTES + 1), b"1")],
        [(("p", "k" * 1_000_000), b"1")],
    ):
        path, offset = _crafted(seed, tmp_path, items)  # type: ignore[arg-type]  # list invariance: the items are (path, bytes) pairs
        with pytest.raises(LocalFileError, match=f"byte offset {offset}.*(MAX_KEYS|MAX_KEY_BYTES)"):
            load_runs(path)
    # many distinct keys over many rows: the file's history keys are bounded too
    rows = [
        history_record([("_step", str(10_000 + r).encode())] + [(f"r{r}k{i}", b"1") for i in range(30_000)])
        for r in range(4)
    ]
    payloads = list(seed.payloads)
    path = tmp_path / "run-columns.wandb"
    path.write_bytes(frame(payloads + rows)[0])
    with pytest.raises(LocalFileError, match="distinct history keys.*MAX_KEYS"):
        load_runs(path)


def test_a_record_longer_than_the_limit_is_an_error(seeds: dict[str, Seed], tmp_path: Path) -> None:
    seed = seeds["basic"]
    big = history_record([("_step", b"100000"), ("s", b'"' + b"z" * (MAX_RECORD_BYTES + 10) + b'"')])
    path, offset = _with_record(seed, tmp_path, big)
    with pytest.raises(LocalFileError, match=f"record starting at byte offset {offset}.*MAX_RECORD_BYTES"):
        load_runs(path)
    with pytest.warns(DamagedRecordWarning):
        (run,) = load_runs(path, skip_damaged=True)
    assert [[run.steps()[i], digest(run.row(i))] for i in range(len(run.steps()))] == seed.rows


# ----------------------------------------------------------------------------- folders


def _run_dir(parent: Path, seed: Seed) -> Path:
    target = parent / seed.produced.run_dir.name / seed.produced.file.name
    target.parent.mkdir(parents=True)
    target.write_bytes(seed.data)
    return target


def test_folders_that_are_not_wandb_shaped_are_refused(seeds: dict[str, Seed], tmp_path: Path) -> None:
    seed = seeds["basic"]
    shallow = _run_dir(tmp_path / "project" / "wandb", seed)  # project/wandb/<run dir>: 3 levels
    deep = _run_dir(tmp_path / "a" / "b" / "c" / "d", seed)  # 5 levels below tmp_path/a
    assert find_run_files(tmp_path / "project") == [shallow]
    assert find_run_files(tmp_path / "project" / "wandb") == [shallow]
    with pytest.raises(LocalFileError, match="is not a wandb/ folder or run directory.*pass the wandb/ folder itself"):
        find_run_files(tmp_path / "a")
    with pytest.raises(LocalFileError, match="is not a wandb/ folder"):
        load_runs(tmp_path / "a")
    with pytest.raises(LocalFileError, match="is not a wandb/ folder"):
        connector.open_local(tmp_path / "a")
    assert find_run_files(tmp_path / "a", recursive=True) == [deep]
    assert [r.id for r in connector.open_local(tmp_path / "a", recursive=True)] == [seed.produced.expected["run_id"]]
    assert find_run_files(deep.parent) == [deep]  # a run directory, however deep

    # a symlinked file leading out of the folder searched is left out
    outside = tmp_path / "outside.wandb"
    outside.write_bytes(seed.data)
    link_dir = tmp_path / "links" / "offline-run-20260101_000000-link"
    link_dir.mkdir(parents=True)
    (link_dir / "run-link.wandb").symlink_to(outside)
    with pytest.raises(LocalFileError, match="is not a wandb/ folder"):
        find_run_files(tmp_path / "links")


FOLDER_PROBE = r"""
import sys
from connector.errors import LocalFileError
from connector.local import find_run_files
try:
    found = find_run_files(sys.argv[1])
except LocalFileError as exc:
    print("refused:", exc)
else:
    print("found", len(found))
"""


@pytest.mark.parametrize("which", ["root", "home", "above home"])
def test_root_and_home_are_refused(seeds: dict[str, Seed], tmp_path: Path, which: str) -> None:
    """Stumble: a source of `/` walked the whole filesystem."""
    home = tmp_path / "users" / "me"
    _run_dir(home / "wandb", seeds["basic"])  # a wandb/ folder in the home folder: 2 levels down
    target = {"root": "/", "home": str(home), "above home": str(home.parent)}[which]
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", FOLDER_PROBE, target], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("refused:") and "recursive=True" in proc.stdout, proc.stdout
    assert f"{target}:" in proc.stdout
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert find_run_files(home / "wandb") == [home / "wandb" / seeds["basic"].produced.run_dir.name
                                                  / seeds["basic"].produced.file.name]
