"""Deterministic synthetic runs: the independent truth the emulator serves and tests compare against.

A spec ``"entity/project:runs=R,steps=N,keys=K[,seed=S]"`` describes R runs of N rows each, with K user
keys per run besides ``_step``, ``_runtime`` and ``_timestamp``. Every value is a pure function of
``(seed, run index, row index)``: rows are generated per window (vectorised with numpy, using only
integer hashing and IEEE ``+ - * /``, so a row computed alone equals the same row computed in a window),
and no run is ever materialised. ``row(i)`` and ``rows(a, b)`` agree exactly.

Run ids: 8 characters ``[a-z0-9]`` hashed from ``(seed, run index)``. Display names ``synthetic-<r+1>``.

Steps (row index ``i``, ``N`` rows):

* run index 1 starts at step 1000: ``step = 1000 + i``;
* run index 2 has a gap of 5000 steps in the middle: ``step = i`` for ``i < N // 2``, else ``i + 5000``;
* every other run: ``step = i``.

User keys, in slot order; a run with K keys has the first K (slots past 20 are ``metric_<slot>``):

====  ===============  ==========================================================================
slot  key              value
====  ===============  ==========================================================================
1     ``loss``         float ``2.5 / (1 + i/1000) + 0.1*u``
2     ``acc``          float in [0, 1); exactly ``1.0`` (an integral float) when ``i % 97 == 3``
3     ``lr``           float ``0.001 / (1 + i // 1000)``
4     ``grad_norm``    float; **NaN** when ``step % 331 == 17``
5     ``epoch``        int ``i // 1000``
6     ``train``        nested dict ``{"loss": float, "acc": float}`` (flattens to ``train.loss``, ``train.acc``)
7     ``val_loss``     float; **-Infinity** when ``step % 1009 == 400``; *sparse*
8     ``hist``         histogram media ``{"_type": "histogram", "values": [8 ints], "bins": [9 floats]}``; *sparse (every 100th)*
9     ``loss_scale``   integral float ``65536.0 / 2**((i // 500) % 4)``; **+Infinity** when ``step % 557 == 5``
10    ``phase``        string: ``"warmup"`` for ``i < 100``, else ``"train"``
11    ``val_acc``      float; *sparse*
12    ``tokens_seen``  int ``i * 4096``
13-20 ``perplexity``, ``top5_acc``, ``weight_norm``, ``throughput``, ``batch_time``, ``data_time``,
      ``gpu_mem_gb``, ``f1``: floats
21+   ``metric_<n>``   float ``u * n``
====  ===============  ==========================================================================

``u`` is a uniform [0, 1) number hashed from ``(seed, run, slot, i)``. *Sparse* keys: in run index 0
every key is logged on every row (so ``keys=20`` gives 23 keys per row, like the benchmark anchor);
in runs with index >= 1, ``val_loss`` and ``val_acc`` are logged only when ``i % 10 == 9`` and
``hist`` only when ``i % 100 == 0``. Specials: ``_runtime = 0.25*i + 0.01*u`` and
``_timestamp = 1700000000 + 86400*r + _runtime``. Row key order: user keys, then ``_runtime``,
``_timestamp``, ``_step``.

Synthetic runs accept `append` (rows after the last step) and `truncate` like `MemoryRun`.

>>> runs = synthetic_runs(SyntheticSpec.parse("e/p:runs=3,steps=10,keys=4,seed=7"))
>>> [r.steps()[0] for r in runs], len(runs[0].meta.run_id)
([0, 1000, 0], 8)
>>> runs[0].row(3) == runs[0].rows(0, 10)[3]
True
"""

from __future__ import annotations

import math
import re
import threading
from array import array
from bisect import bisect_left
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.rundata import RunMeta
from ..core.values import history_keys_from_rows
from ..errors import ConfigurationError

NAMED_KEYS = (
    "loss", "acc", "lr", "grad_norm", "epoch", "train", "val_loss", "hist", "loss_scale", "phase",
    "val_acc", "tokens_seen", "perplexity", "top5_acc", "weight_norm", "throughput", "batch_time",
    "data_time", "gpu_mem_gb", "f1",
)  # fmt: skip
SPARSE_EVERY = {"val_loss": (10, 9), "val_acc": (10, 9), "hist": (100, 0)}
_SIMPLE_FLOATS = {  # slot key -> (scale, offset) of ``offset + scale * u``
    "perplexity": (3.0, 1.0), "top5_acc": (0.5, 0.5), "weight_norm": (10.0, 50.0),
    "throughput": (200.0, 1000.0), "batch_time": (0.05, 0.1), "data_time": (0.01, 0.005),
    "gpu_mem_gb": (4.0, 10.0), "f1": (0.6, 0.3),
}  # fmt: skip
_MASK64 = (1 << 64) - 1
SPEC_FORM = "entity/project:runs=R,steps=N,keys=K[,seed=S], e.g. acme/demo:runs=3,steps=1000,keys=20"
_SPEC = re.compile(r"^(?P<entity>[^/\s:]+)/(?P<project>[^/\s:]+):(?P<opts>.+)$")


def key_names(k: int) -> list[str]:
    """The user key names of a run with `k` keys.

    >>> key_names(3), key_names(22)[-2:]
    (['loss', 'acc', 'lr'], ['metric_21', 'metric_22'])
    """
    return [NAMED_KEYS[s] if s < len(NAMED_KEYS) else f"metric_{s + 1}" for s in range(k)]


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate: `runs` runs of `steps` rows with `keys` user keys, under `entity/project`."""

    entity: str
    project: str
    runs: int = 1
    steps: int = 1000
    keys: int = 20
    seed: int = 0

    @classmethod
    def parse(cls, text: str) -> SyntheticSpec:
        """Parse ``entity/project:runs=R,steps=N,keys=K[,seed=S]`` (every option has a default).

        A bad spec raises `ConfigurationError` (a `ValueError`) naming the part that is wrong.

        >>> SyntheticSpec.parse("e/p:runs=2,steps=100,keys=5")
        SyntheticSpec(entity='e', project='p', runs=2, steps=100, keys=5, seed=0)
        >>> SyntheticSpec.parse("e/p:runs=two")
        Traceback (most recent call last):
        ...
        connector.errors.ConfigurationError: synthetic spec 'e/p:runs=two': runs='two' is not an integer; expected entity/project:runs=R,steps=N,keys=K[,seed=S], e.g. acme/demo:runs=3,steps=1000,keys=20
        """

        def bad(why: str) -> ConfigurationError:
            return ConfigurationError(f"synthetic spec {text!r}: {why}; expected {SPEC_FORM}")

        m = _SPEC.match(text.strip())
        if not m:
            head, colon, _ = text.strip().partition(":")
            if not colon:
                raise bad("no ':' before the options")
            raise bad(f"{head!r} before ':' is not entity/project")
        opts: dict[str, int] = {}
        for part in m["opts"].split(","):
            name, eq, value = (x.strip() for x in part.partition("="))
            if name not in ("runs", "steps", "keys", "seed"):
                raise bad(f"unknown option {name or part!r} (runs, steps, keys, seed)")
            if not eq or not value.lstrip("-").isdigit():
                raise bad(f"{name}={value!r} is not an integer")
            opts[name] = int(value)
        for name in ("runs", "steps", "keys"):
            if opts.get(name, 0) < 0:
                raise bad(f"{name}={opts[name]} is negative (must be >= 0)")
        return cls(m["entity"], m["project"], **opts)


def _mix(x: int) -> int:
    """splitmix64 finaliser on a Python int."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def run_id_for(seed: int, run_index: int) -> str:
    """The 8-character run id of run `run_index` under `seed` (``[a-z0-9]``)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    h = _mix(_mix(seed & _MASK64) ^ (run_index * 0x632BE59BD9B4E019 & _MASK64))
    out = []
    for _ in range(8):
        h, d = divmod(h, 36)
        out.append(alphabet[d])
    return "".join(out)


def _uniform(seed: int, run_index: int, slot: int, idx: Any) -> Any:
    """Uniform [0, 1) float64 numpy array, a pure function of (seed, run, slot, row index)."""
    import numpy as np

    base = _mix(_mix(_mix(seed & _MASK64) ^ run_index) ^ (slot * 0xD1B54A32D192ED03 & _MASK64))
    with np.errstate(over="ignore"):
        x = idx.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(base)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


class SyntheticRun:
    """A lazily generated `RunData` (see the module docstring for exactly what it holds)."""

    def __init__(self, meta: RunMeta, *, seed: int, run_index: int, steps: int, keys: int) -> None:
        self.meta = meta
        self.seed = seed
        self.run_index = run_index
        self.n_keys = keys
        self.names = key_names(keys)
        self._n_base = steps
        self._full_steps = steps
        self._extra: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._steps_cache: Sequence[int] | None = None
        self._keys_cache: dict[str, Any] | None = None

    # -- steps ---------------------------------------------------------------------------------
    def base_step(self, i: int) -> int:
        """The step of generated row `i`."""
        if self.run_index == 1:
            return 1000 + i
        if self.run_index == 2 and i >= self._full_steps // 2:
            return i + 5000
        return i

    def steps(self) -> Sequence[int]:
        with self._lock:
            if self._steps_cache is None:
                n = self._n_base
                if self.run_index == 1:
                    base: Sequence[int] = range(1000, 1000 + n)
                elif self.run_index == 2 and n > self._full_steps // 2:
                    half = self._full_steps // 2
                    base = array("q", range(half))
                    base.extend(range(half + 5000, n + 5000))
                else:
                    base = range(n)
                if self._extra:
                    base = array("q", base)
                    base.extend(r["_step"] for r in self._extra)
                self._steps_cache = base
            return self._steps_cache

    # -- rows ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n_base + len(self._extra)

    def row(self, index: int) -> dict[str, Any]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} out of range for run {self.meta.run_id}")
        return self.rows(index, index + 1)[0]

    def rows(
        self, start: int, stop: int, keys: Collection[str] | None = None
    ) -> list[dict[str, Any]]:
        """Rows `start` .. `stop - 1` (row indices, not steps), generated in one vectorised pass.

        With `keys` (top-level key names), generated rows hold only those keys: a cheap
        projection for callers that read a few keys (appended rows are returned whole).
        """
        start = max(start, 0)
        stop = min(stop, len(self))
        if stop <= start:
            return []
        n_gen = min(stop, self._n_base)
        out = self._generate(start, n_gen, keys) if start < self._n_base else []
        if stop > self._n_base:
            out.extend(
                dict(r) for r in self._extra[max(start - self._n_base, 0) : stop - self._n_base]
            )
        return out

    def _generate(
        self, start: int, stop: int, keys: Collection[str] | None = None
    ) -> list[dict[str, Any]]:
        import numpy as np

        if stop <= start:
            return []
        want = None if keys is None else frozenset(keys)
        idx = np.arange(start, stop, dtype=np.int64)
        fi = idx.astype(np.float64)
        if self.run_index == 1:
            step = idx + 1000
        elif self.run_index == 2:
            step = np.where(idx >= self._full_steps // 2, idx + 5000, idx)
        else:
            step = idx
        s, r = self.seed, self.run_index

        def u(slot: int) -> Any:
            return _uniform(s, r, slot, idx)

        cols: dict[str, Any] = {}
        loss = 2.5 / (1.0 + fi / 1000.0) + 0.1 * u(1)
        acc = 1.0 - 1.0 / (1.0 + fi / 500.0 + u(2))
        acc = np.where(idx % 97 == 3, 1.0, acc)
        for slot, name in enumerate(self.names, start=1):
            if want is not None and name not in want:
                continue
            if name == "loss":
                cols[name] = loss.tolist()
            elif name == "acc":
                cols[name] = acc.tolist()
            elif name == "lr":
                cols[name] = (0.001 / (1.0 + (idx // 1000).astype(np.float64))).tolist()
            elif name == "grad_norm":
                cols[name] = np.where(step % 331 == 17, np.nan, 1.0 + 2.0 * u(slot)).tolist()
            elif name == "epoch":
                cols[name] = (idx // 1000).tolist()
            elif name == "train":
                tl = (loss * 1.05 + 0.01 * u(slot)).tolist()
                ta = (acc * 0.98).tolist()
                cols[name] = [{"loss": a, "acc": b} for a, b in zip(tl, ta, strict=True)]
            elif name == "val_loss":
                v = np.where(step % 1009 == 400, -np.inf, loss * 1.1 + 0.05 * u(slot))
                cols[name] = v.tolist()
            elif name == "hist":
                cols[name] = self._histograms(idx, slot)
            elif name == "loss_scale":
                v = 65536.0 / (2.0 ** ((idx // 500) % 4).astype(np.float64))
                cols[name] = np.where(step % 557 == 5, np.inf, v).tolist()
            elif name == "phase":
                cols[name] = ["warmup" if i < 100 else "train" for i in range(start, stop)]
            elif name == "val_acc":
                cols[name] = (acc * 0.97 + 0.01 * u(slot)).tolist()
            elif name == "tokens_seen":
                cols[name] = (idx * 4096).tolist()
            elif name in _SIMPLE_FLOATS:
                scale, off = _SIMPLE_FLOATS[name]
                cols[name] = (off + scale * u(slot)).tolist()
            else:
                cols[name] = (u(slot) * float(slot)).tolist()
        runtime = 0.25 * fi + 0.01 * u(0)
        if want is None or "_runtime" in want:
            cols["_runtime"] = runtime.tolist()
        if want is None or "_timestamp" in want:
            cols["_timestamp"] = (1700000000.0 + 86400.0 * r + runtime).tolist()
        if want is None or "_step" in want:
            cols["_step"] = step.tolist()
        names = list(cols)
        sparse = [n for n in names if n in SPARSE_EVERY and self.run_index != 0]
        rows = [dict(zip(names, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]
        for name in sparse:
            m, rem = SPARSE_EVERY[name]
            for j, row in enumerate(rows):
                if (start + j) % m != rem:
                    del row[name]
        return rows

    def _histograms(self, idx: Any, slot: int) -> list[dict[str, Any]]:
        import numpy as np

        counts = np.floor(_uniform(self.seed, self.run_index, slot, idx) * 40.0).astype(np.int64)
        values = ((counts[:, None] * (np.arange(8, dtype=np.int64) + 3)) % 17).tolist()
        lo = -1.0 - idx.astype(np.float64) / 10000.0
        bins = (lo[:, None] + np.arange(9, dtype=np.float64) * 0.25).tolist()
        return [
            {"_type": "histogram", "values": v, "bins": b}
            for v, b in zip(values, bins, strict=True)
        ]

    def events(self) -> list[dict[str, Any]]:
        """System-metric rows: one per 60 rows (at most 1000), ``_wandb``/``_runtime``/``system.*``."""
        n = min(len(self) // 60 + (1 if len(self) else 0), 1000)
        out = []
        for j in range(n):
            rt = 15.0 * j
            out.append(
                {
                    "_wandb": True,
                    "_runtime": rt,
                    "_timestamp": 1700000000.0 + 86400.0 * self.run_index + rt,
                    "system.cpu": float((j * 37 + self.run_index) % 100),
                    "system.memory_percent": 40.0 + (j % 7),
                }
            )
        return out

    # -- historyKeys ---------------------------------------------------------------------------
    def history_keys(self) -> dict[str, Any]:
        with self._lock:
            if self._keys_cache is None:
                self._keys_cache = self._compute_keys()
            return self._keys_cache

    def _count(self, name: str) -> int:
        n = self._n_base
        if self.run_index == 0 or name not in SPARSE_EVERY:
            return n
        m, r = SPARSE_EVERY[name]
        return (n - r + m - 1) // m if n > r else 0

    def _compute_keys(self) -> dict[str, Any]:
        n = self._n_base
        counts: dict[str, dict[str, int]] = {}
        for name in self.names:
            c = self._count(name)
            if c == 0:
                continue
            if name == "train":
                counts["train.loss"] = {"number": c}
                counts["train.acc"] = {"number": c}
            elif name == "hist":
                counts[name] = {"histogram": c}
            elif name == "phase":
                counts[name] = {"string": c}
            else:
                counts[name] = {"number": c}
        if n:
            for name in ("_runtime", "_timestamp", "_step"):
                counts[name] = {"number": n}
        last = self.base_step(n - 1) if n else -1
        if self._extra:
            extra = history_keys_from_rows(self._extra)
            for name, info in extra["keys"].items():
                bucket = counts.setdefault(name, {})
                for tc in info["typeCounts"]:
                    bucket[tc["type"]] = bucket.get(tc["type"], 0) + tc["count"]
            last = max(last, extra["lastStep"])
        keys = {
            name: {"typeCounts": [{"type": t, "count": c} for t, c in sorted(tc.items())]}
            for name, tc in counts.items()
        }
        return {"keys": keys, "lastStep": last}

    # -- mutation ------------------------------------------------------------------------------
    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append rows whose `_step` values are above the last step (ascending)."""
        last = self._last_step()
        with self._lock:
            for row in rows:
                step = row.get("_step")
                if not isinstance(step, int) or isinstance(step, bool):
                    raise ValueError(f"appended row has no integer _step: {row!r}")
                if last is not None and step <= last:
                    raise ValueError(f"step {step} is not after the last step {last}")
                self._extra.append(dict(row))
                last = step
            self._steps_cache = None
            self._keys_cache = None

    def _last_step(self) -> int | None:
        if self._extra:
            return self._extra[-1]["_step"]
        return self.base_step(self._n_base - 1) if self._n_base else None

    def truncate(self, max_step: int) -> None:
        """Drop rows at or above `max_step` (a rewound run)."""
        with self._lock:
            self._extra = [r for r in self._extra if r["_step"] < max_step]
            if not self._extra:
                steps = self._base_steps_list()
                self._n_base = bisect_left(steps, max_step)
            self._steps_cache = None
            self._keys_cache = None

    def _base_steps_list(self) -> Sequence[int]:
        n = self._n_base
        if self.run_index == 1:
            return range(1000, 1000 + n)
        if self.run_index == 2:
            half = self._full_steps // 2
            return [i if i < half else i + 5000 for i in range(n)]
        return range(n)


def _meta(spec: SyntheticSpec, r: int, run_id: str) -> RunMeta:
    hours = r
    created = f"2024-01-{1 + hours // 24:02d}T{hours % 24:02d}:00:00"
    end_s = spec.steps // 4
    hb_h = hours + end_s // 3600
    heartbeat = (
        f"2024-01-{1 + hb_h // 24:02d}T{hb_h % 24:02d}:{(end_s // 60) % 60:02d}:{end_s % 60:02d}"
    )
    return RunMeta(
        entity=spec.entity,
        project=spec.project,
        run_id=run_id,
        display_name=f"synthetic-{r + 1}",
        state="finished",
        config={
            "lr": 0.001 * (r + 1),
            "batch_size": 32 * (1 + r % 4),
            "optimizer": "adam" if r % 2 == 0 else "sgd",
            "seed": spec.seed,
            "run_index": r,
            "model": {"layers": 2 + r % 3, "hidden": 128},
        },
        summary={},
        tags=["synthetic", f"group-{r % 2}"],
        created_at=created,
        heartbeat_at=heartbeat,
        group=f"group-{r % 2}",
        job_type="train",
    )


def synthetic_runs(spec: SyntheticSpec | str) -> list[SyntheticRun]:
    """Build the runs of `spec` (lazily: no row is generated until asked).

    >>> [len(r.steps()) for r in synthetic_runs("e/p:runs=2,steps=5,keys=3")]
    [5, 5]
    """
    if isinstance(spec, str):
        spec = SyntheticSpec.parse(spec)
    out: list[SyntheticRun] = []
    seen: set[str] = set()
    for r in range(spec.runs):
        run_id = run_id_for(spec.seed, r)
        salt = 0
        while run_id in seen:  # astronomically unlikely; keeps ids unique and deterministic
            salt += 1
            run_id = run_id_for(spec.seed + salt * 1_000_003, r)
        seen.add(run_id)
        run = SyntheticRun(
            _meta(spec, r, run_id), seed=spec.seed, run_index=r, steps=spec.steps, keys=spec.keys
        )
        if spec.steps:
            last = run.row(spec.steps - 1)
            run.meta.summary = {k: v for k, v in last.items() if not _non_finite(v)}
        out.append(run)
    return out


def _non_finite(v: Any) -> bool:
    return isinstance(v, float) and not math.isfinite(v)
