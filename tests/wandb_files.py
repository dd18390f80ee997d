"""Real `.wandb` files written by the official `wandb` SDK (offline mode, in a subprocess).

`produce(name, workdir)` runs one scenario of `PRODUCER` in a fresh Python process with the SDK's
files kept under `workdir` (no network, nothing in the home folder) and returns its run
directory plus what the script logged (`expected.json`: rows per step, config and summary
values). `sdk_decode(file)` is the independent oracle: it decodes the file with the SDK's own
protobuf classes (`wandb.proto.wandb_internal_pb2`) and a framing loop written separately from
`connector.local.framing`, in a subprocess.

>>> produced = produce("basic", tmp_path)  # doctest: +SKIP
>>> produced.expected["rows"][0]  # doctest: +SKIP
{'_step': 0, 'loss': 1.0, ...}
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCENARIOS = (
    "basic",  # implicit steps, floats and ints
    "steps",  # explicit step= with gaps, two logs at one step
    "partial",  # commit=False partial logs
    "types",  # nested dicts, NaN/±inf, strings, bools, lists, None, list with NaN
    "histogram",  # wandb.Histogram (numpy)
    "sparse",  # keys logged at different rates
    "define_metric",  # define_metric with a custom step metric
    "config_summary",  # config and summary updates
    "failed",  # finish(exit_code=1)
    "killed",  # os._exit before finish()
    "resume_a",  # first half of an offline run resumed with the same id
    "resume_b",  # second half (explicit steps overlapping the first half)
)

PRODUCER = r'''
import json, math, os, sys
import wandb

name, outdir = sys.argv[1], sys.argv[2]
rows = {}


def note(step, data):
    row = rows.setdefault(step, {"_step": step})
    for k, v in data.items():
        row[k] = v


def init(**kw):
    kw.setdefault("project", "tests")
    return wandb.init(mode="offline", dir=outdir, **kw)


expected = {"config": {}, "summary": {}}
if name == "basic":
    run = init(config={"lr": 0.01, "layers": 3}, tags=["t1", "t2"], name="basic-run", notes="hello")
    for i in range(50):
        d = {"loss": 1.0 / (i + 1), "acc": i / 50, "epoch": i // 10, "big": 10**12 + i}
        run.log(d)
        note(i, d)
elif name == "steps":
    run = init()
    for s, d in [(0, {"x": 0.5}), (5, {"x": 1.5}), (5, {"y": 2}), (12, {"x": 3.25}), (1000, {"y": -1})]:
        run.log(d, step=s)
        note(s, d)
elif name == "partial":
    run = init()
    for i in range(10):
        run.log({"a": i}, commit=False)
        run.log({"b": i * 2}, commit=False)
        run.log({"c": -i})
        note(i, {"a": i, "b": i * 2, "c": -i})
elif name == "types":
    run = init()
    for i in range(6):
        d = {
            "nested": {"a": i, "b": {"c": i * 0.5, "d": "deep"}},
            "nan": float("nan"),
            "inf": float("inf"),
            "ninf": float("-inf"),
            "s": "hello \"quoted\" \u00e9\u20ac \n line",
            "flag": i % 2 == 0,
            "lst": [1, 2.5, "x", None],
            "lst_nan": [1.0, float("nan"), float("inf")],
            "none": None,
            "empty": {},
            "unicode_κey": i,
        }
        run.log(d)
        note(i, {k: v for k, v in d.items() if k != "empty"})  # W&B drops empty dicts
elif name == "histogram":
    import numpy as np
    run = init()
    rng = np.random.default_rng(0)
    for i in range(5):
        data = rng.normal(size=100) + i
        run.log({"h": wandb.Histogram(data), "v": float(i)})
        counts, edges = np.histogram(data, bins=64)
        note(i, {"h": {"_type": "histogram", "values": counts.tolist(), "bins": edges.tolist()}, "v": float(i)})
elif name == "sparse":
    run = init()
    for i in range(30):
        d = {"every": i}
        if i % 2 == 0:
            d["even"] = i * 1.5
        if i % 3 == 0:
            d["third"] = {"v": i}
        if i == 17:
            d["once"] = "only here"
        run.log(d)
        note(i, d)
elif name == "define_metric":
    run = init()
    run.define_metric("epoch")
    run.define_metric("val/*", step_metric="epoch")
    run.define_metric("train/loss", step_metric="batch", summary="min")
    s = 0
    for epoch in range(3):
        for batch in range(4):
            d = {"train/loss": 1.0 / (s + 1), "batch": s}
            run.log(d)
            note(s, d)
            s += 1
        d = {"val/acc": epoch / 3, "epoch": epoch}
        run.log(d)
        note(s, d)
        s += 1
elif name == "config_summary":
    run = init(config={"lr": 0.1, "opt": {"name": "adam", "beta": 0.9}, "drop": 1})
    run.config.update({"bs": 32, "lr": 0.2}, allow_val_change=True)
    run.config["extra"] = "x"
    for i in range(5):
        run.log({"m": i})
        note(i, {"m": i})
    run.summary["final_note"] = "done"
    run.summary["best"] = {"acc": 0.9, "epoch": 3}
    run.summary["m"] = 100
    expected["config"] = {"lr": 0.2, "opt": {"name": "adam", "beta": 0.9}, "drop": 1, "bs": 32, "extra": "x"}
    expected["summary"] = {"final_note": "done", "best": {"acc": 0.9, "epoch": 3}, "m": 100}
elif name == "failed":
    run = init()
    for i in range(7):
        run.log({"z": i})
        note(i, {"z": i})
elif name == "killed":
    run = init()
    for i in range(3000):  # enough to make wandb-core flush blocks before the kill
        run.log({"k": i, "pad": "x" * 40})
        note(i, {"k": i, "pad": "x" * 40})
elif name in ("resume_a", "resume_b"):
    run = init(id="resumed01", resume="allow")
    steps = range(0, 5) if name == "resume_a" else range(3, 8)
    for s in steps:
        d = {"r": s, "part": name[-1]}
        run.log(d, step=s)
        note(s, d)

expected["rows"] = [rows[s] for s in sorted(rows)]
expected["run_id"] = run.id
with open(os.path.join(outdir, "expected.json"), "w") as f:
    json.dump(expected, f)
if name == "failed":
    run.finish(exit_code=1)
elif name == "killed":
    import time
    time.sleep(3)  # let wandb-core write what it has; then die without finish()
    run.log({"k": -1}, commit=False)  # never committed
    os._exit(0)
else:
    run.finish()
'''

ORACLE = r'''
import json, sys, zlib
from wandb.proto import wandb_internal_pb2 as pb

path = sys.argv[1]
data = open(path, "rb").read()
assert data[:7] == b":W&B\xe1\xbe\x00", data[:7]


def payloads(data):
    """Records of a .wandb file; stops at the first incomplete chunk (a file being written)."""
    pos, pending = 7, b""
    while True:
        room = 32768 - pos % 32768
        if room < 7:
            pos += room
            continue
        if pos + 7 > len(data):
            return
        crc = int.from_bytes(data[pos:pos + 4], "little")
        size = int.from_bytes(data[pos + 4:pos + 6], "little")
        kind = data[pos + 6]
        if crc == 0 and size == 0 and kind == 0:
            pos += room
            continue
        if pos + 7 + size > len(data):
            return
        chunk = data[pos + 7:pos + 7 + size]
        assert zlib.crc32(bytes([kind]) + chunk) == crc, pos
        pos += 7 + size
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk
            pending = b""


def put(tree, path, value, merge):
    node = tree
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    old = node.get(path[-1])
    if merge and isinstance(value, dict) and isinstance(old, dict):
        for k, v in value.items():
            put(old, [k], v, True)
    else:
        node[path[-1]] = value


def drop(tree, path):
    node = tree
    for part in path[:-1]:
        node = node.get(part)
        if not isinstance(node, dict):
            return
    node.pop(path[-1], None)


def apply(tree, record):
    for item in record.update:
        put(tree, list(item.nested_key) or [item.key], json.loads(item.value_json), False)
    for item in record.remove:
        drop(tree, list(item.nested_key) or [item.key])


rows, config, summary = {}, {}, {}
out = {"exit_code": None, "stats": 0, "run": None}
for payload in payloads(data):
    r = pb.Record()
    r.ParseFromString(payload)
    kind = r.WhichOneof("record_type")
    if kind == "history":
        row = {}
        for item in r.history.item:
            put(row, list(item.nested_key) or [item.key], json.loads(item.value_json), True)
        step = row.get("_step", r.history.step.num)
        row["_step"] = step
        rows[step] = row
    elif kind == "summary":
        apply(summary, r.summary)
    elif kind == "config":
        apply(config, r.config)
    elif kind == "run":
        apply(config, r.run.config)
        apply(summary, r.run.summary)
        out["run"] = {
            "run_id": r.run.run_id, "entity": r.run.entity, "project": r.run.project,
            "display_name": r.run.display_name, "tags": list(r.run.tags), "notes": r.run.notes,
            "start_time": r.run.start_time.seconds + r.run.start_time.nanos / 1e9,
        }
    elif kind == "exit":
        out["exit_code"] = r.exit.exit_code
    elif kind == "stats":
        out["stats"] += 1
out["rows"] = [rows[s] for s in sorted(rows)]
out["config"] = config
out["summary"] = summary
json.dump(out, sys.stdout)
'''


@dataclass
class Produced:
    """One scenario's output: its run directory, `.wandb` file and `expected.json` content."""

    name: str
    run_dir: Path
    file: Path
    expected: dict[str, Any]


def sdk_env(base: Path) -> dict[str, str]:
    """Environment for the SDK: offline, silent, every SDK folder under `base`."""
    env = dict(os.environ)
    for var in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_ENTITY", "WANDB_PROJECT", "WANDB_RUN_ID"):
        env.pop(var, None)
    dirs = {
        "HOME": "home",
        "WANDB_CACHE_DIR": "cache",
        "WANDB_CONFIG_DIR": "config",
        "WANDB_DATA_DIR": "data",
        "XDG_CACHE_HOME": "xdg-cache",
        "TMPDIR": "tmp",
    }
    for var, sub in dirs.items():
        d = base / sub
        d.mkdir(parents=True, exist_ok=True)
        env[var] = str(d)
    env.update(
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_DIR=str(base),
        WANDB_ERROR_REPORTING="false",
        WANDB_DISABLE_GIT="true",
        WANDB_DISABLE_CODE="true",
    )
    return env


def _wait_quiet(folder: Path, settle: float = 1.0, limit: float = 20.0) -> None:
    """Wait until no `.wandb` file under `folder` has changed for `settle` seconds.

    After a killed client, the SDK's `wandb-core` process may still be flushing.
    """
    deadline = time.monotonic() + limit
    last: tuple[tuple[str, int, int], ...] = ()
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        now = tuple(
            sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*.wandb"))
        )
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= settle:
            return
        time.sleep(0.2)


def produce(name: str, workdir: Path, *, timeout: float = 180.0) -> Produced:
    """Run scenario `name` of `PRODUCER` with the SDK in a subprocess; files go to `workdir/name`."""
    out = workdir / name
    out.mkdir(parents=True, exist_ok=True)
    script = workdir / "_producer.py"
    if not script.exists() or script.read_text() != PRODUCER:
        script.write_text(PRODUCER)
    proc = subprocess.run(
        [sys.executable, str(script), name, str(out)],
        env=sdk_env(workdir / "_sdk"),
        cwd=out,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"SDK scenario {name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    _wait_quiet(out)
    files = sorted(p for p in (out / "wandb").rglob("*.wandb") if "latest-run" not in p.parts)
    if len(files) != 1:
        raise RuntimeError(f"scenario {name}: expected one .wandb file, found {files}")
    expected = json.loads((out / "expected.json").read_text())
    return Produced(name, files[0].parent, files[0], expected)


def sdk_decode(file: Path, workdir: Path | None = None) -> dict[str, Any]:
    """Decode `file` with the SDK's protobuf classes in a subprocess (the test oracle).

    Returns ``{"rows", "config", "summary", "exit_code", "stats", "run"}``.
    """
    env = sdk_env(workdir) if workdir is not None else dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-c", ORACLE, str(file)],
        env=env,
        capture_output=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"oracle failed on {file}:\n{proc.stderr.decode()[-3000:]}")
    return json.loads(proc.stdout)


# ----------------------------------------------------------------------------- comparison


def normalize(value: Any) -> Any:
    """A comparable form: dicts flattened to dotted keys (None dropped), ints as floats, NaN kept."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        _flatten("", value, flat)
        return flat
    return _scalar(value)


def _flatten(prefix: str, value: dict[str, Any], out: dict[str, Any]) -> None:
    for k, v in value.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and v and "_type" not in v:
            _flatten(name + ".", v, out)
        elif v is not None:
            out[name] = _scalar(v)


def _scalar(v: Any) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, list | tuple):
        return [_scalar(x) for x in v]
    if isinstance(v, dict):
        return {k: _scalar(x) for k, x in v.items()}
    return v


def same(a: Any, b: Any) -> bool:
    """Deep equality where NaN equals NaN and 1 equals 1.0 (apply `normalize` first)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def diff_rows(ours: list[dict[str, Any]], theirs: list[dict[str, Any]], drop: tuple[str, ...] = ()) -> list[str]:
    """Human-readable differences between two row lists (empty when they are the same)."""
    problems: list[str] = []
    a = {r["_step"]: normalize({k: v for k, v in r.items() if k not in drop}) for r in ours}
    b = {r["_step"]: normalize({k: v for k, v in r.items() if k not in drop}) for r in theirs}
    if a.keys() != b.keys():
        problems.append(f"steps differ: only ours {sorted(a.keys() - b.keys())[:10]}, "
                        f"only theirs {sorted(b.keys() - a.keys())[:10]}")
    for step in sorted(a.keys() & b.keys()):
        if not same(a[step], b[step]):
            problems.append(f"step {step}: ours {a[step]!r} != theirs {b[step]!r}")
        if len(problems) > 10:
            break
    return problems
