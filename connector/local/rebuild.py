"""Rebuild a run (history rows, config, summary, system events, state) from one `.wandb` file.

Rules (as the SDK writes and resumes runs):

* **History rows**: one row per `history` record. For each item, ``path = nested_key or [key]``;
  the value is its `value_json` parsed leniently (bare ``NaN``/``Infinity``/``-Infinity``
  accepted; text that is not JSON at all is kept as a string, empty text is None; an integer
  beyond 64 bits becomes a float, as orjson reads it); an object value is merged recursively
  into what the row already holds at that path, anything else is set. If one file holds the
  same ``_step`` twice (a resumed run), the later row wins.
* **Steps**: ``_step`` comes from the ``_step`` item, else from ``HistoryStep.num``. It must be
  an integer in ``[0, 2**63 - 1]`` (`limits.MAX_STEP`): a ``_step`` item that is a string, a
  float, a bool, null, an object or out of range, a negative ``HistoryStep.num``, and a record
  with neither a ``_step`` item nor a ``HistoryStep.num`` in a file whose other history records
  carry ``_step`` items are damaged records (`LocalFileError` naming the file, the record's
  byte offset and the value; skipped with a `DamagedRecordWarning` when ``skip_damaged=True``),
  never step 0. A file without any ``_step`` item (a writer that only sets ``HistoryStep``)
  reads a record without ``num`` as step 0, as protobuf defines it.
* **Limits** (`connector.local.limits`): a record, a value's nesting, a row's keys, the file's
  distinct history keys and a key's length are bounded; a record beyond a bound is damaged.
* **Config**: `RunRecord.config`, then every `config` record's updates and removes, in file
  order (a set replaces the value at its path). The SDK's internal ``_wandb`` entry is kept
  out of `RunMeta.config` and exposed as `LocalRun.wandb_config`.
* **Summary**: `RunRecord.summary`, then every `summary` record's updates and removes, in order.
* **Events** (system metrics): one per `stats` record,
  ``{"_wandb": True, "_timestamp": ts, "_runtime": ts - start, "system.<key>": value}``.
* **State**: an `exit` record with exit code 0 is ``finished``, non-zero ``failed``. Without an
  exit record the run is ``running`` if the file was modified less than `running_grace` seconds
  ago (default `RUNNING_GRACE` = 300 s) and ``crashed`` otherwise.
* **Identity**: entity/project passed by the caller win; else the run record's; else
  `DEFAULT_ENTITY` (``"local"``) / `DEFAULT_PROJECT` (``"offline"``). A file without a run record
  takes its run id from its name (``run-<id>.wandb``).
* **Times**: ``created_at`` = run start time; ``heartbeat_at`` = the latest of the last history
  ``_timestamp``, the last stats timestamp and start + exit runtime, else the file's mtime. Both
  are UTC, ``YYYY-MM-DDTHH:MM:SS``; a non-finite time or one past the calendar (a damaged file)
  is left out.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ..core.rundata import MemoryRun, RunMeta
from ..core.values import flatten_row
from ..errors import LocalFileError
from . import records as rec
from .framing import DamagedRecordWarning, iter_file_payloads, read_payloads_at
from .index import HistoryIndex, RunIndex, merge
from .limits import (
    MAX_DEPTH,
    MAX_KEYS,
    MAX_STEP,
    LimitError,
    check_items,
    check_path,
    check_values,
    count_keys,
    needs_check,
)
from .wire import WireError

DEFAULT_ENTITY = "local"
DEFAULT_PROJECT = "offline"
RUNNING_GRACE = 300.0

_loads = orjson.loads
_JSONError = orjson.JSONDecodeError


class LocalRun(MemoryRun):
    """A run read from `.wandb` file(s): a `MemoryRun` whose rows stay in the files.

    The first pass (`decode_file`) keeps, per row, its step, file and record offset (`index`);
    `row` and `rows` decode the records of the rows asked for again, so memory does not grow
    with the run's length (`rows(lo, hi)` returns fresh dicts; `row(i)` serves a cached window
    of `ROW_WINDOW` rows, shared between calls). `append`/`truncate` (the emulator's mutations)
    first load every row into memory.

    Attributes: `files` (source files, oldest first), `wandb_config` (the config's internal
    ``_wandb`` entry), `exit_code` (None without an exit record), `runtime` (seconds, from the
    exit record), `step_metrics` (``define_metric`` name -> step metric), `producer` (writer
    version).
    """

    ROW_WINDOW = 1024

    files: list[Path]
    wandb_config: dict[str, Any]
    exit_code: int | None
    runtime: int | None
    step_metrics: dict[str, str]
    producer: str

    def __init__(
        self, meta: RunMeta, index: RunIndex, files: list[Path], events: Sequence[dict[str, Any]] = ()
    ) -> None:
        super().__init__(meta, (), events)
        self.index: RunIndex | None = index
        self.files = files
        self._cached: tuple[int, list[dict[str, Any]]] = (0, [])

    @property
    def fresh_rows(self) -> bool:
        """True while `rows(lo, hi)` decodes new dicts on each call (callers need not copy them)."""
        return self.index is not None

    def steps(self) -> Sequence[int]:
        if self.index is None:
            return super().steps()
        return self.index.steps

    def history_keys(self) -> dict[str, Any]:
        if self.index is None:
            return super().history_keys()
        return self.index.history_keys

    def row(self, index: int) -> dict[str, Any]:
        if self.index is None:
            return super().row(index)
        n = len(self.index.steps)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"row {index} out of range for run {self.meta.run_id}")
        with self._lock:
            lo, cached = self._cached
            if not lo <= index < lo + len(cached):
                lo = index - index % self.ROW_WINDOW
                cached = self.rows(lo, lo + self.ROW_WINDOW)
                self._cached = (lo, cached)
            return cached[index - lo]

    def rows(self, start: int, stop: int, keys: Any = None) -> list[dict[str, Any]]:
        """The rows at indices ``start .. stop - 1``, decoded from their records (`keys` is
        accepted for the emulator's batch reads and ignored: rows are returned whole)."""
        if self.index is None:
            return self._rows[max(start, 0) : max(stop, 0)]
        ix = self.index
        start, stop = max(start, 0), min(stop, len(ix.steps))
        if stop <= start:
            return []
        steps = ix.steps.array[start:stop].tolist()
        offsets = ix.offsets[start:stop]
        files = ix.files[start:stop]
        if len(self.files) == 1 or not (files != files[0]).any():
            payloads = self._payloads(int(files[0]), offsets.tolist())
        else:
            payloads = [b""] * (stop - start)
            for f in np.unique(files).tolist():
                where = np.flatnonzero(files == f)
                for i, payload in zip(where.tolist(), self._payloads(f, offsets[where].tolist()), strict=True):
                    payloads[i] = payload
        return [history_row_of(payload, step) for payload, step in zip(payloads, steps, strict=True)]

    def _payloads(self, file: int, offsets: list[int]) -> list[bytes]:
        path = self.files[file]
        try:
            with open(path, "rb") as f:
                return read_payloads_at(f, offsets, name=str(path))
        except OSError as exc:
            raise LocalFileError(f"{path}: cannot read ({exc.strerror or exc})") from exc

    def _load(self) -> None:
        """Hold every row in memory from now on (before a mutation)."""
        if self.index is not None:
            rows = self.rows(0, len(self.index.steps))
            self._rows, self._steps = rows, [r["_step"] for r in rows]
            self._keys = self.index.history_keys
            self.index = None
            self._cached = (0, [])

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        self._load()
        super().append(rows)

    def truncate(self, max_step: int) -> None:
        self._load()
        super().truncate(max_step)


# ----------------------------------------------------------------------------- JSON values


def parse_value(raw: bytes) -> Any:
    """Parse one `value_json` leniently.

    >>> parse_value(b"NaN"), parse_value(b'{"a": -Infinity}'), parse_value(b"not json"), parse_value(b"")
    (nan, {'a': -inf}, 'not json', None)
    >>> parse_value(b"[NaN, " + b"9" * 400 + b"]")  # beyond 64 bits: a float, as orjson reads it
    [nan, inf]
    """
    try:
        return _loads(raw)
    except _JSONError:
        pass
    if not raw.strip():
        return None
    try:
        return json.loads(raw, parse_int=_parse_int)
    except RecursionError:
        raise LimitError("a value nested too deep to parse (limit MAX_DEPTH)") from None
    except ValueError:
        return raw.decode(errors="replace")


def _parse_int(text: str) -> int | float:
    """An integer as orjson reads it: an int within 64 bits, else a float (never a huge int)."""
    if len(text) <= 20:
        value = int(text)
        if -(2**63) <= value < 2**64:
            return value
    return float(text)


def parse_values(raws: Sequence[bytes]) -> list[Any]:
    """Parse many `value_json` texts with one orjson call (falls back value by value)."""
    try:
        out = _loads(b"[" + b",".join(raws) + b"]")
        if len(out) == len(raws):
            return out
    except _JSONError:
        pass
    return [parse_value(r) for r in raws]


# ----------------------------------------------------------------------------- nested paths


def _merge(node: dict[str, Any], key: str, value: Any) -> None:
    """Set ``node[key] = value``, merging recursively when both sides are dicts."""
    old = node.get(key)
    if type(value) is dict and type(old) is dict:
        for k, v in value.items():
            _merge(old, k, v)
    else:
        node[key] = value


def _parent(root: dict[str, Any], parts: Sequence[str]) -> dict[str, Any]:
    """The dict at `parts` below `root`, created (replacing non-dict values) as needed."""
    node = root
    for part in parts:
        nxt = node.get(part)
        if type(nxt) is bytes:  # a lazily parsed leaf (summary/config trees)
            nxt = parse_value(nxt)
        if type(nxt) is not dict:
            nxt = {}
        node[part] = nxt
        node = nxt
    return node


def build_row(paths: Sequence[rec.Path], values: Sequence[Any]) -> dict[str, Any]:
    """Build one history row from item paths and parsed values, in item order.

    >>> build_row([("a", "b"), "a", "s"], [1, {"c": 2}, "x"])
    {'a': {'b': 1, 'c': 2}, 's': 'x'}
    """
    row: dict[str, Any] = {}
    for path, value in zip(paths, values, strict=True):
        _put(row, (path,) if type(path) is str else path, value)
    return row


def _put(row: dict[str, Any], path: Sequence[str], value: Any) -> None:
    """Set `value` at `path` in `row`, creating dicts on the way; an object value is merged."""
    node = row
    for part in path[:-1]:
        nxt = node.get(part)
        if type(nxt) is not dict:
            nxt = node[part] = {}
        node = nxt
    if type(value) is dict:
        _merge(node, path[-1], value)
    else:
        node[path[-1]] = value


def _place_nested(row: dict[str, Any], paths: Sequence[tuple[str, ...]], values: Sequence[Any]) -> bool:
    """Add nested items to a row built from its one-part items; False on a conflict.

    Applying one-part items first and nested ones after equals applying them in item order
    unless a nested path starts at a key a one-part item set; that case returns False (the
    caller then rebuilds the row in item order).
    """
    made: set[str] = set()
    for path, value in zip(paths, values, strict=True):
        head = path[0]
        if head in row:
            if head not in made:
                return False
        else:
            made.add(head)
        _put(row, path, value)
    return True


def _history_row(buf: bytes, start: int, end: int, items: rec.Items) -> tuple[dict[str, Any], int]:
    """The history row of one decoded history record (see the module rules), and the count of
    ``{`` in the record's values (0: no object values).

    Raises `LimitError` when the record goes beyond `MAX_DEPTH` or `MAX_KEYS` (checked before
    any value is parsed).
    """
    keys, raws, npaths, nraws, _ = items
    n = len(raws)
    if npaths:
        raws = raws + nraws
        depth = max(map(len, npaths))
        path_keys = n + sum(map(len, npaths))
    else:
        depth = 1
        path_keys = n
    if len(raws) > MAX_KEYS:
        check_items(len(raws))
    joined = b"[" + b",".join(raws) + b"]"
    objects = joined.count(b"{")
    checked = (
        depth + joined.count(b"[") + objects > MAX_DEPTH + 1  # +1: the "[" added above
        or path_keys + joined.count(b":") > MAX_KEYS
    )
    if checked:
        check_path(depth)
        check_values(raws, [1] * n + [len(p) for p in npaths], path_keys)
    try:
        values = _loads(joined)
    except _JSONError:
        values = parse_values(raws)
    row = dict(zip(keys, values, strict=False))
    if not (len(row) == n and (not npaths or _place_nested(row, npaths, values[n:]))):
        paths, ordered_raws, _ = rec.decode_items_ordered(buf, start, end)
        row = build_row(paths, parse_values(ordered_raws))
    if checked and count_keys(row) > MAX_KEYS:
        raise LimitError(f"a history row with more than {MAX_KEYS} keys (limit MAX_KEYS)")
    return row, objects


def _row_of(buf: bytes, start: int, end: int, items: rec.Items) -> tuple[dict[str, Any], int]:
    """The row of one decoded history record (`_history_row`, with a fast path for records
    without nested keys), and the count of ``{`` in its values."""
    keys, raws, npaths, _, _ = items
    if npaths:
        return _history_row(buf, start, end, items)
    joined = b"[" + b",".join(raws) + b"]"
    objects = joined.count(b"{")
    if (
        joined.count(b"[") + objects > MAX_DEPTH  # the outer "[" stands for the key's own level
        or len(joined) > MAX_KEYS  # else fewer ":" + items than MAX_KEYS
        and joined.count(b":") + len(raws) > MAX_KEYS
    ):
        return _history_row(buf, start, end, items)[0], objects
    try:
        values = _loads(joined)
    except _JSONError:
        values = parse_values(raws)
    row = dict(zip(keys, values, strict=False))
    if len(row) != len(raws):
        row = _history_row(buf, start, end, items)[0]
    return row, objects


def history_row_of(payload: bytes, step: int) -> dict[str, Any]:
    """The history row of a record the first pass indexed at `step` (read again by offset).

    >>> payload = bytes.fromhex("0805 120b 0a07 120161 820101 31 1200")  # history: a=1, step {}
    >>> history_row_of(payload, 0)
    {'a': 1, '_step': 0}
    """
    _, _, start, end = rec.split_record(payload)
    row = _row_of(payload, start, end, rec.decode_items(payload, start, end))[0]
    if "_step" not in row:
        row["_step"] = step  # from HistoryStep.num, or a step-less record of a step-less file
    return row


def _check_tree_items(keys: Sequence[str], raws: Sequence[bytes], npaths: Sequence[tuple[str, ...]],
                      nraws: Sequence[bytes]) -> None:
    """`MAX_DEPTH` (and `MAX_KEYS` items) for the updates of one summary/config record."""
    check_items(len(raws) + len(nraws), "a summary or config record")
    if npaths:
        depth = max(map(len, npaths))
        check_path(depth)
        if needs_check(b"".join(nraws), depth, 0):
            check_values(nraws, [len(p) for p in npaths])
    if raws and needs_check(b"".join(raws), 1, 0):
        check_values(raws, 1)


class _Tree:
    """A config or summary under construction: leaves stay raw JSON until `to_dict`."""

    def __init__(self) -> None:
        self.root: dict[str, Any] = {}

    def apply(self, buf: bytes, start: int, end: int, items: rec.Items) -> None:
        """Apply one summary/config record (updates in order, then removes)."""
        keys, raws, npaths, nraws, spans = items
        _check_tree_items(keys, raws, npaths, nraws)
        root = self.root
        if npaths:
            for path in npaths:
                if path[0] in keys:  # one key set both flat and nested: replay in item order
                    paths, ordered_raws, _ = rec.decode_items_ordered(buf, start, end)
                    self.set(paths, ordered_raws)
                    break
            else:
                root.update(zip(keys, raws, strict=False))
                for path, raw in zip(npaths, nraws, strict=True):
                    _parent(root, path[:-1])[path[-1]] = raw
        else:
            root.update(zip(keys, raws, strict=False))
        if spans:
            self.remove(rec.removed_paths(buf, spans))

    @staticmethod
    def check(paths: Sequence[rec.Path], values: Sequence[bytes], what: str = "a summary or config record") -> None:
        """Raise `LimitError` when updates (paths and raw JSON values) go beyond the limits."""
        check_items(len(values), what)
        depths = [1 if type(p) is str else len(p) for p in paths]
        check_path(max(depths, default=1))
        if needs_check(b"".join(values), max(depths, default=1), 0):
            check_values(values, depths)

    def set(self, paths: Sequence[rec.Path], values: Sequence[bytes]) -> None:
        """Set raw JSON values at paths, in order (a set replaces what was at its path)."""
        for path, value in zip(paths, values, strict=True):
            if type(path) is str:
                self.root[path] = value
            else:
                _parent(self.root, path[:-1])[path[-1]] = value

    def remove(self, paths: Iterable[rec.Path]) -> None:
        """Delete the values at paths (missing paths are ignored)."""
        for path in paths:
            parts = (path,) if type(path) is str else path
            node: dict[str, Any] = self.root
            for part in parts[:-1]:
                nxt = node.get(part)
                if type(nxt) is bytes:  # removing inside a raw JSON object: parse it now
                    nxt = parse_value(nxt)
                    if type(nxt) is dict:
                        node[part] = nxt
                if type(nxt) is not dict:
                    break  # the path runs through a non-object: nothing to remove
                node = nxt
            else:
                node.pop(parts[-1], None)

    def to_dict(self) -> dict[str, Any]:
        """The final tree, with every raw leaf parsed."""
        leaves: list[tuple[dict[str, Any], str, bytes]] = []
        stack = [self.root]
        while stack:
            node = stack.pop()
            for k, v in node.items():
                if type(v) is bytes:
                    leaves.append((node, k, v))
                elif type(v) is dict:
                    stack.append(v)
        for (node, k, _), value in zip(leaves, parse_values([leaf[2] for leaf in leaves]), strict=True):
            node[k] = value
        return self.root


# ----------------------------------------------------------------------------- reading a file


@dataclass
class FileContent:
    """Everything decoded from one `.wandb` file, before it becomes a `LocalRun`."""

    path: Path
    run: rec.RunRecord | None = None
    index: HistoryIndex = field(default_factory=HistoryIndex)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    exit: rec.ExitRecord | None = None
    last_time: float | None = None
    mtime: float = 0.0
    producer: str = ""
    step_metrics: dict[str, str] = field(default_factory=dict)


def _time(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = float(value)
        return value if math.isfinite(value) else None
    return None


class StepError(ValueError):
    """A history record's step is not an integer in ``[0, MAX_STEP]``, or it has none."""


_MISSING: Any = object()
_STEP_RANGE = "an integer step in [0, 2**63 - 1]"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _step_of(row: dict[str, Any], step: Any, buf: bytes, spans: list[tuple[int, int]]) -> int | None:
    """The step of a row whose ``_step`` item is missing or not a valid step (the slow path).

    Returns ``HistoryStep.num`` for a row without a ``_step`` item (and sets it in the row), None
    when the record has no step at all; raises `StepError` for an invalid one.
    """
    if step is not _MISSING:
        raise StepError(f"history record: _step {_shown(step)} is not {_STEP_RANGE}")
    num = rec.history_step_num(buf, spans)
    if num is None:
        return None
    if not 0 <= num <= MAX_STEP:
        raise StepError(f"history record: HistoryStep.num {num} is not {_STEP_RANGE}")
    row["_step"] = num
    return num


class _Implicit:
    """History records with no step at all (no ``_step`` item, no ``HistoryStep.num``).

    They are step 0 only in a file without ``_step`` items; once a ``_step`` item shows up they
    are damaged (see the module rules): their index entries are taken back, so the record that
    held step 0 before them (if any) holds it again.
    """

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.positions: list[int] = []  # their entries in the file's history index

    def add(self, offset: int, row: dict[str, Any], index: HistoryIndex) -> None:
        self.offsets.append(offset)
        self.positions.append(len(index))
        row["_step"] = 0
        index.add(0, offset, index.signature(row))

    def refuse(self, name: Path, index: HistoryIndex, skip_damaged: bool) -> None:
        """A ``_step`` item appeared: every earlier step-less record is damaged."""
        for offset in self.offsets:
            message = (
                f"{name}: record at byte offset {offset}: history record without a _step item "
                "or HistoryStep.num while other history records of the file have a _step"
            )
            if not skip_damaged:
                raise LocalFileError(message)
            warnings.warn(DamagedRecordWarning(f"{message}; skipped"), stacklevel=3)
        for position in self.positions:
            index.drop(position)
        self.offsets.clear()
        self.positions.clear()


def _check_names(names: set[Any], new: Any) -> None:
    """Raise `LimitError` when the file's distinct history keys would go beyond `MAX_KEYS`."""
    if len(names) + len(new) > MAX_KEYS and len(names) + sum(1 for k in new if k not in names) > MAX_KEYS:
        raise LimitError(f"more than {MAX_KEYS} distinct history keys in the file (limit MAX_KEYS)")


def decode_file(path: str | os.PathLike[str], *, skip_damaged: bool = False) -> FileContent:
    """Decode one `.wandb` file into a `FileContent` (the hot loop of the reader)."""
    p = Path(path)
    try:
        mtime = p.stat().st_mtime
    except OSError as exc:
        raise LocalFileError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    out = FileContent(path=p, mtime=mtime)
    index = out.index
    signature = index.signature
    row_of = _row_of
    config = _Tree()
    summary = _Tree()
    stats: list[rec.StatsRecord] = []
    split = rec.split_record
    decode_items = rec.decode_items
    last_row: dict[str, Any] | None = None
    names: set[Any] = set()  # distinct history keys (flat names) of the file
    last_keys: list[str] | None = None  # the item keys last added to `names`
    last_npaths: list[tuple[str, ...]] | None = None
    saw_step_item = False
    implicit = _Implicit()
    HISTORY, SUMMARY, CONFIG = rec.HISTORY, rec.SUMMARY, rec.CONFIG
    max_keys = MAX_KEYS
    max_step = MAX_STEP

    try:
        payloads = iter_file_payloads(p, skip_damaged=skip_damaged)
        for offset, payload in payloads:
            try:
                _, kind, start, end = split(payload)
                if kind == HISTORY:
                    items = decode_items(payload, start, end)
                    keys, _, npaths, _, spans = items
                    row, objects = row_of(payload, start, end, items)
                    if npaths:
                        if objects:
                            flat: Any = flatten_row(row)[0]
                        elif keys == last_keys and npaths == last_npaths:
                            flat = None  # the same keys as the row before (the usual case)
                        else:
                            flat = [*keys, *npaths]
                    else:
                        flat = None if keys == last_keys and not last_npaths else keys
                        if objects:  # a media dict is one key; other objects are flattened
                            for value in row.values():
                                if type(value) is dict and value and "_type" not in value:
                                    flat = flatten_row(row)[0]
                                    break
                    step = row.get("_step", _MISSING)
                    if not (type(step) is int and 0 <= step <= max_step):
                        step = _step_of(row, step, payload, spans)
                        if step is None and saw_step_item:
                            raise StepError(
                                "history record without a _step item or HistoryStep.num "
                                "while other history records of the file have a _step"
                            )
                    elif not saw_step_item:
                        saw_step_item = True
                        implicit.refuse(p, index, skip_damaged)
                    if flat is not None:
                        if len(names) + len(flat) > max_keys:
                            _check_names(names, flat)
                        names.update(flat)
                        last_keys, last_npaths = keys, npaths
                    if step is None:
                        implicit.add(offset, row, index)
                    else:
                        index.add(step, offset, signature(row))
                    last_row = row
                elif kind == SUMMARY:
                    summary.apply(payload, start, end, decode_items(payload, start, end))
                elif kind == CONFIG:
                    config.apply(payload, start, end, decode_items(payload, start, end))
                elif kind == rec.STATS:
                    st = rec.decode_stats(payload, start, end)
                    _Tree.check([k for k, _ in st.items], [v for _, v in st.items], "a stats record")
                    stats.append(st)
                elif kind == rec.RUN:
                    run = rec.decode_run(payload, start, end)
                    config_paths, config_values = [k for k, _ in run.config], [v for _, v in run.config]
                    summary_paths, summary_values = [k for k, _ in run.summary], [v for _, v in run.summary]
                    _Tree.check(config_paths, config_values)
                    _Tree.check(summary_paths, summary_values)
                    out.run = _merge_run_record(out.run, run)
                    config.set(config_paths, config_values)
                    config.remove(run.config_remove)
                    summary.set(summary_paths, summary_values)
                    summary.remove(run.summary_remove)
                elif kind == rec.EXIT:
                    out.exit = rec.decode_exit(payload, start, end)
                elif kind == rec.HEADER:
                    out.producer = rec.decode_header(payload, start, end).producer
                elif kind == rec.METRIC:
                    m = rec.decode_metric(payload, start, end)
                    if m.step_metric and (m.name or m.glob_name):
                        out.step_metrics[m.name or m.glob_name] = m.step_metric
            except (LimitError, StepError) as exc:
                message = f"{p}: record at byte offset {offset}: {exc}"
                if not skip_damaged:
                    raise LocalFileError(message) from exc
                warnings.warn(
                    DamagedRecordWarning(f"{message}; skipped {len(payload)} bytes"), stacklevel=2
                )
            except (WireError, IndexError, UnicodeDecodeError, ValueError) as exc:
                message = f"{p}: undecodable record at byte offset {offset}: {exc}"
                if not skip_damaged:
                    raise LocalFileError(message) from exc
                warnings.warn(
                    DamagedRecordWarning(f"{message}; skipped {len(payload)} bytes"), stacklevel=2
                )
    except OSError as exc:
        raise LocalFileError(f"{p}: cannot read ({exc.strerror or exc})") from exc

    out.config = config.to_dict()
    out.summary = summary.to_dict()
    start_time = out.run.start_time if out.run else None
    times: list[float] = []
    if last_row is not None and (t := _time(last_row.get("_timestamp"))) is not None:
        times.append(t)
    for s in stats:
        ev: dict[str, Any] = {"_wandb": True}
        if s.timestamp is not None:
            ev["_timestamp"] = s.timestamp
            if start_time is not None:
                ev["_runtime"] = s.timestamp - start_time
        for (key, _), value in zip(s.items, parse_values([v for _, v in s.items]), strict=True):
            ev["system." + key] = value
        out.events.append(ev)
    if stats and stats[-1].timestamp is not None:
        times.append(max(s.timestamp or 0.0 for s in stats))
    if out.exit is not None and start_time is not None:
        times.append(start_time + out.exit.runtime)
    out.last_time = max(times) if times else None
    return out


def _merge_run_record(old: rec.RunRecord | None, new: rec.RunRecord) -> rec.RunRecord:
    """A second run record in one file (a resume) updates the identity fields it sets."""
    if old is None:
        return new
    for name in ("run_id", "entity", "project", "run_group", "job_type", "display_name", "notes", "host"):
        if getattr(new, name):
            setattr(old, name, getattr(new, name))
    if new.tags:
        old.tags = list(new.tags)
    if old.start_time is None:
        old.start_time = new.start_time
    old.resumed = old.resumed or new.resumed
    return old


# ----------------------------------------------------------------------------- building runs


def iso(ts: float | None) -> str | None:
    """UTC ``YYYY-MM-DDTHH:MM:SS`` (the form W&B's `createdAt` uses), or None.

    >>> iso(0), iso(1e300)
    ('1970-01-01T00:00:00', None)
    """
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    except (OverflowError, ValueError, OSError):  # a time no clock shows (a damaged file)
        return None


def _run_id(content: FileContent) -> str:
    if content.run and content.run.run_id:
        return content.run.run_id
    stem = content.path.stem
    return stem[4:] if stem.startswith("run-") else stem


def _state(content: FileContent, running_grace: float, now: float) -> str:
    if content.exit is not None:
        return "finished" if content.exit.exit_code == 0 else "failed"
    return "running" if now - content.mtime < running_grace else "crashed"


def _split_config(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    user = dict(config)
    internal = user.pop("_wandb", None)
    return user, internal if isinstance(internal, dict) else {}


def build_run(
    contents: Sequence[FileContent],
    *,
    entity: str | None = None,
    project: str | None = None,
    running_grace: float = RUNNING_GRACE,
    now: float | None = None,
) -> LocalRun:
    """Build one `LocalRun` from the decoded file(s) of one run, oldest first.

    Several files (a resumed offline run): rows are merged by ``_step`` (a later file's row
    replaces an earlier one at the same step), events are concatenated, config and summary are
    merged key by key at the top level (the later file wins), state, exit code and heartbeat come
    from the last file, ``created_at`` from the first.
    """
    if not contents:
        raise ValueError("build_run needs at least one decoded file")
    now = time.time() if now is None else now
    first, last = contents[0], contents[-1]
    if len(contents) == 1:
        config, summary = first.config, first.summary
        events = first.events
    else:
        config, summary, events = {}, {}, []
        for c in contents:
            config.update(c.config)
            summary.update(c.summary)
            events.extend(c.events)
        events.sort(key=lambda e: e.get("_timestamp", 0.0))
    ident = rec.RunRecord()
    for c in contents:
        if c.run is not None:
            ident = _merge_run_record(ident, c.run)
    user_config, wandb_config = _split_config(config)
    start = next((c.run.start_time for c in contents if c.run and c.run.start_time), None)
    heartbeat = last.last_time if last.last_time is not None else last.mtime
    meta = RunMeta(
        entity=entity or ident.entity or DEFAULT_ENTITY,
        project=project or ident.project or DEFAULT_PROJECT,
        run_id=ident.run_id or _run_id(first),
        display_name=ident.display_name or None,
        state=_state(last, running_grace, now),
        config=user_config,
        summary=summary,
        tags=list(ident.tags),
        created_at=iso(start if start is not None else first.mtime) or "",
        heartbeat_at=iso(heartbeat),
        group=ident.run_group or None,
        job_type=ident.job_type or None,
        notes=ident.notes or None,
    )
    run = LocalRun(meta, merge([c.index for c in contents]), [c.path for c in contents], events)
    run.wandb_config = wandb_config
    run.exit_code = last.exit.exit_code if last.exit is not None else None
    run.runtime = last.exit.runtime if last.exit is not None else None
    run.step_metrics = {k: v for c in contents for k, v in c.step_metrics.items()}
    run.producer = last.producer
    return run


def start_time_of(content: FileContent) -> float:
    """Sort key of a file within a resumed run: its run start time, else its mtime."""
    if content.run is not None and content.run.start_time is not None:
        return content.run.start_time
    return content.mtime
