"""Rebuild a run (history rows, config, summary, system events, state) from one `.wandb` file.

Rules (the facts behind them: reference §5.4):

* **History rows**: one row per `history` record. For each item, ``path = nested_key or [key]``;
  the value is its `value_json` parsed leniently (bare ``NaN``/``Infinity``/``-Infinity``
  accepted; text that is not JSON at all is kept as a string, empty text is None); an object
  value is merged recursively into what the row already holds at that path, anything else is
  set. ``_step`` comes from the ``_step`` item, else from ``HistoryStep.num`` (missing = 0).
  If one file holds the same ``_step`` twice (a resumed run), the later row wins.
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
  are UTC, ``YYYY-MM-DDTHH:MM:SS``.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ..errors import LocalFileError
from ..rundata import MemoryRun, RunMeta
from . import records as rec
from .framing import DamagedRecordWarning, iter_file_payloads
from .wire import WireError

DEFAULT_ENTITY = "local"
DEFAULT_PROJECT = "offline"
RUNNING_GRACE = 300.0

_loads = orjson.loads
_JSONError = orjson.JSONDecodeError


class LocalRun(MemoryRun):
    """A `MemoryRun` read from `.wandb` file(s), with what `RunMeta` has no place for.

    Attributes: `files` (source files, oldest first), `wandb_config` (the config's internal
    ``_wandb`` entry), `exit_code` (None without an exit record), `runtime` (seconds, from the
    exit record), `step_metrics` (``define_metric`` name -> step metric), `producer` (writer
    version).
    """

    files: list[Path]
    wandb_config: dict[str, Any]
    exit_code: int | None
    runtime: int | None
    step_metrics: dict[str, str]
    producer: str


# ----------------------------------------------------------------------------- JSON values


def parse_value(raw: bytes) -> Any:
    """Parse one `value_json` leniently.

    >>> parse_value(b"NaN"), parse_value(b'{"a": -Infinity}'), parse_value(b"not json"), parse_value(b"")
    (nan, {'a': -inf}, 'not json', None)
    """
    try:
        return _loads(raw)
    except _JSONError:
        pass
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


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


def row_from_items(buf: bytes, start: int, end: int, items: rec.Items) -> dict[str, Any]:
    """The history row of one decoded history record (see the module rules)."""
    keys, raws, npaths, nraws, _ = items
    n = len(raws)
    if npaths:
        raws = raws + nraws
    try:
        values = _loads(b"[" + b",".join(raws) + b"]")
    except _JSONError:
        values = parse_values(raws)
    row = dict(zip(keys, values, strict=False))
    if len(row) == n and (not npaths or _place_nested(row, npaths, values[n:])):
        return row
    paths, ordered_raws, _ = rec.decode_items_ordered(buf, start, end)
    return build_row(paths, parse_values(ordered_raws))


class _Tree:
    """A config or summary under construction: leaves stay raw JSON until `to_dict`."""

    def __init__(self) -> None:
        self.root: dict[str, Any] = {}

    def apply(self, buf: bytes, start: int, end: int, items: rec.Items) -> None:
        """Apply one summary/config record (updates in order, then removes)."""
        keys, raws, npaths, nraws, spans = items
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
            node: dict[str, Any] | None = self.root
            for part in parts[:-1]:
                nxt = node.get(part)
                if type(nxt) is bytes:  # removing inside a raw JSON object: parse it now
                    nxt = parse_value(nxt)
                    if type(nxt) is dict:
                        node[part] = nxt
                if type(nxt) is not dict:
                    node = None
                    break
                node = nxt
            if node is not None:
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
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    exit: rec.ExitRecord | None = None
    last_time: float | None = None
    mtime: float = 0.0
    producer: str = ""
    step_metrics: dict[str, str] = field(default_factory=dict)


def _time(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _step_of(row: dict[str, Any], step_num: int) -> int:
    step = row.get("_step")
    if type(step) is not int:
        if isinstance(step, float) and step.is_integer():
            step = int(step)
        else:
            step = step_num
        row["_step"] = step
    return step


def decode_file(path: str | os.PathLike[str], *, skip_damaged: bool = False) -> FileContent:
    """Decode one `.wandb` file into a `FileContent` (the hot loop of the reader)."""
    p = Path(path)
    try:
        mtime = p.stat().st_mtime
    except OSError as exc:
        raise LocalFileError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    out = FileContent(path=p, mtime=mtime)
    rows = out.rows
    config = _Tree()
    summary = _Tree()
    stats: list[rec.StatsRecord] = []
    split = rec.split_record
    decode_items = rec.decode_items
    history_step = rec.history_step
    loads = _loads
    json_error = _JSONError
    row: dict[str, Any] | None = None
    HISTORY, SUMMARY, CONFIG = rec.HISTORY, rec.SUMMARY, rec.CONFIG

    try:
        payloads = iter_file_payloads(p, skip_damaged=skip_damaged)
        for offset, payload in payloads:
            try:
                _, kind, start, end = split(payload)
                if kind == HISTORY:
                    items = decode_items(payload, start, end)
                    keys, raws, npaths, _, spans = items
                    if npaths:
                        row = row_from_items(payload, start, end, items)
                    else:
                        try:
                            values = loads(b"[" + b",".join(raws) + b"]")
                        except json_error:
                            values = parse_values(raws)
                        row = dict(zip(keys, values, strict=False))
                        if len(row) != len(raws):
                            row = row_from_items(payload, start, end, items)
                    step = row.get("_step")
                    if type(step) is not int:
                        step = _step_of(row, history_step(payload, spans))
                    rows[step] = row
                elif kind == SUMMARY:
                    summary.apply(payload, start, end, decode_items(payload, start, end))
                elif kind == CONFIG:
                    config.apply(payload, start, end, decode_items(payload, start, end))
                elif kind == rec.STATS:
                    stats.append(rec.decode_stats(payload, start, end))
                elif kind == rec.RUN:
                    run = rec.decode_run(payload, start, end)
                    out.run = _merge_run_record(out.run, run)
                    config.set([k for k, _ in run.config], [v for _, v in run.config])
                    config.remove(run.config_remove)
                    summary.set([k for k, _ in run.summary], [v for _, v in run.summary])
                    summary.remove(run.summary_remove)
                elif kind == rec.EXIT:
                    out.exit = rec.decode_exit(payload, start, end)
                elif kind == rec.HEADER:
                    out.producer = rec.decode_header(payload, start, end).producer
                elif kind == rec.METRIC:
                    m = rec.decode_metric(payload, start, end)
                    if m.step_metric and (m.name or m.glob_name):
                        out.step_metrics[m.name or m.glob_name] = m.step_metric
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
    if row is not None and (t := _time(row.get("_timestamp"))) is not None:
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

    >>> iso(0)
    '1970-01-01T00:00:00'
    """
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S")


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
        rows = first.rows
        config, summary = first.config, first.summary
        events = first.events
    else:
        rows = {}
        config, summary, events = {}, {}, []
        for c in contents:
            rows.update(c.rows)
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
    run = LocalRun(meta, list(rows.values()), events)
    run.files = [c.path for c in contents]
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
