"""Decode `wandb_internal.Record` payloads by field number (the fields of wandb_internal.proto that history needs).

Hot messages (history, summary, config) decode to plain lists, not objects (`decode_items`):
``(keys, values, nested_paths, nested_values, field2_spans)``, where a key is the `str` of a
one-part path, a nested path is a `tuple[str, ...]`, and each value is the item's JSON text as
`bytes` (typed `HistoryItem` values, 0.31+, are turned into JSON text too). Parsing JSON is
left to `connector.local.rebuild`, which does it once per row.

Rare messages (run, exit, stats, header, metric) decode to small dataclasses.

>>> payload = bytes.fromhex("0805 120b 0a07 120161 820101 31 1200")  # history: a=1, step {}
>>> num, field, start, end = split_record(payload)
>>> num, field, decode_history(payload, start, end)
(5, 2, (0, (['a'], [b'1'], [], [], [(15, 15)])))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import orjson

from ..core.values import nonfinite_token
from .limits import MAX_DEPTH, LimitError, check_key
from .wire import (
    I64,
    LEN,
    VARINT,
    WireError,
    iter_fields,
    read_double,
    read_varint,
    skip_field,
    to_int64,
    zigzag,
)

# Record oneof field numbers (the ones this reader uses)
HISTORY = 2
SUMMARY = 3
CONFIG = 5
STATS = 7
METRIC = 12
RUN = 17
EXIT = 18
HEADER = 21

Path = str | tuple[str, ...]
_NULL = b"null"
_KEYS: dict[bytes, str] = {}  # interned key strings: rows share one str object per key
_MAX_INTERNED = 256  # longer keys are not interned (the cache must stay small whatever the files)
_HEADS: dict[bytes, str] = {}  # item heads "0A L 12 K key 82 01 V" -> key (see decode_items)
_MAX_HEADS = 200_000
_NHEADS: dict[bytes, tuple[str, ...]] = {}  # the same for nested paths
_NLENS: dict[bytes, tuple[int, ...]] = {}  # first "12 K key" of a nested head -> head lengths


@dataclass(slots=True)
class RunRecord:
    """`RunRecord`: identity and initial config/summary of a run."""

    run_id: str = ""
    entity: str = ""
    project: str = ""
    config: list[tuple[Path, bytes]] = field(default_factory=list)
    config_remove: list[Path] = field(default_factory=list)
    summary: list[tuple[Path, bytes]] = field(default_factory=list)
    summary_remove: list[Path] = field(default_factory=list)
    run_group: str = ""
    job_type: str = ""
    display_name: str = ""
    notes: str = ""
    tags: list[str] = field(default_factory=list)
    host: str = ""
    starting_step: int = 0
    start_time: float | None = None
    resumed: bool = False


@dataclass(slots=True)
class ExitRecord:
    """`RunExitRecord`: the run ended with `exit_code` after `runtime` seconds."""

    exit_code: int = 0
    runtime: int = 0


@dataclass(slots=True)
class StatsRecord:
    """`StatsRecord`: one sample of system metrics (flat keys, JSON values)."""

    stats_type: int = 0
    timestamp: float | None = None
    items: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class HeaderRecord:
    """`HeaderRecord`: the writer's version info."""

    producer: str = ""
    min_consumer: str = ""


@dataclass(slots=True)
class MetricRecord:
    """`MetricRecord` (`define_metric`): the metric name or glob and its step metric."""

    name: str = ""
    glob_name: str = ""
    step_metric: str = ""


def _varint_rest(buf: bytes, pos: int, first: int) -> tuple[int, int]:
    """Finish a varint whose first byte (with the continuation bit set) was already read."""
    value, pos = read_varint(buf, pos)
    return (first & 0x7F) | (value << 7), pos


def _key(raw: bytes) -> str:
    s = _KEYS.get(raw)
    if s is None:
        check_key(raw)
        if len(_KEYS) < 100_000 and len(raw) <= _MAX_INTERNED:
            s = _KEYS[raw] = raw.decode()
        else:
            s = raw.decode()
    return s


def split_record(buf: bytes) -> tuple[int, int, int, int]:
    """Return ``(num, field, start, end)``: the record number and its `record_type` body span.

    `field` is the oneof field number (`HISTORY`, `SUMMARY`, ...) or 0 for a record without a
    body this reader knows how to frame.
    """
    num = 0
    kind = 0
    start = end = 0
    pos = 0
    n = len(buf)
    while pos < n:
        tag = buf[pos]
        pos += 1
        if tag & 0x80:
            tag, pos = _varint_rest(buf, pos, tag)
        fno, wire = tag >> 3, tag & 7
        if wire == LEN:
            size = buf[pos]
            pos += 1
            if size & 0x80:
                size, pos = _varint_rest(buf, pos, size)
            if pos + size > n:
                raise WireError(f"field {fno} runs past the end of the record")
            if fno < 100 and fno != 16 and fno != 19:  # oneof record_type (not control/uuid/_info)
                kind, start, end = fno, pos, pos + size
            pos += size
        elif wire == VARINT and fno == 1:
            num, pos = read_varint(buf, pos)
            num = to_int64(num)
        else:
            pos = skip_field(buf, pos, wire, n)
    return num, kind, start, end


def _typed_json(fno: int, wire: int, value: int | memoryview) -> bytes | None:
    """JSON text for a typed `HistoryItem` value (fields 3..8, 0.31+), or None if not one."""
    if fno == 3 and wire == VARINT:
        return _NULL
    if fno == 4 and wire == VARINT:
        return b"true" if value else b"false"
    if fno == 5 and wire == VARINT:
        return str(zigzag(int(value))).encode()
    if fno == 6 and wire == I64:
        x = read_double(int(value).to_bytes(8, "little"), 0)
        return repr(x).encode() if math.isfinite(x) else nonfinite_token(x).encode()
    if fno == 7 and wire == LEN:
        return orjson.dumps(bytes(value).decode())
    if fno == 8 and wire == LEN:
        return bytes(value)
    return None


def decode_item(buf: bytes, start: int, end: int) -> tuple[Path, bytes]:
    """Decode one `HistoryItem` / `SummaryItem` / `ConfigItem`: ``(path, value_json)``.

    The path is `nested_key` when present (a `str` when it has one part), else `key`.
    """
    key = ""
    nested: list[str] = []
    value: bytes | None = None
    typed: bytes | None = None
    for fno, wire, v in iter_fields(buf, start, end):
        if fno == 1 and wire == LEN:
            key = _key(bytes(v))
        elif fno == 2 and wire == LEN:
            if len(nested) >= MAX_DEPTH:
                raise LimitError(f"a nested key of more than {MAX_DEPTH} parts (limit MAX_DEPTH)")
            nested.append(_key(bytes(v)))
        elif fno == 16 and wire == LEN:
            value = bytes(v)
        else:
            typed = _typed_json(fno, wire, v) or typed
    if value is None:
        value = typed if typed is not None else _NULL
    if len(nested) > 1:
        return tuple(nested), value
    return (nested[0] if nested else key), value


Items = tuple[list[str], list[bytes], list[tuple[str, ...]], list[bytes], list[tuple[int, int]]]


def decode_items(buf: bytes, start: int, end: int) -> Items:
    """Decode a message whose field 1 is a repeated item (`HistoryRecord`, `SummaryRecord`,
    `ConfigRecord`): ``(keys, values, nested_paths, nested_values, field2_spans)``.

    Items (`key` = 1, `nested_key` = 2, `value_json` = 16) become a path and JSON text. Items
    with a one-part path go to ``keys``/``values``, the others (tuple paths) to
    ``nested_paths``/``nested_values``; each group keeps item order, the interleaving between the
    groups is lost (`decode_items_ordered` keeps it, for the rare record where it matters). The
    spans of field 2 (`HistoryStep` or a removed item) are returned undecoded.

    This is the reader's hot loop. An item laid out as wandb-core writes it,
    ``0A L 12 K key [12 K key ...] 82 01 V value`` (or ``0A L 0A K key 82 01 V value``) with
    one-byte lengths, is recognised by its
    head (everything but the value) in a cache of heads the general decoder (`decode_item`) has
    already verified; any other field goes through the general decoder.
    """
    keys: list[str] = []
    values: list[bytes] = []
    npaths: list[tuple[str, ...]] = []
    nvalues: list[bytes] = []
    spans: list[tuple[int, int]] = []
    add_key = keys.append
    add_value = values.append
    heads = _HEADS
    nlens = _NLENS
    pos = start
    while pos < end:
        try:
            e = pos + 7 + buf[pos + 3]  # head end if this is "0A L 12 K key 82 01 V"
        except IndexError:
            e = pos
        k = heads.get(buf[pos:e])
        if k is not None:
            add_key(k)
            pos = e + buf[e - 1]
            add_value(buf[e:pos])
            continue
        lens = nlens.get(buf[pos + 2 : e - 3])  # "12 K key", the first part of a nested head
        if lens is not None:
            nheads = _NHEADS
            for h in lens:
                nk = nheads.get(buf[pos : pos + h])
                if nk is not None:
                    npaths.append(nk)
                    e = pos + h
                    pos = e + buf[e - 1]
                    nvalues.append(buf[e:pos])
                    break
            else:
                nk = None
            if nk is not None:
                continue
        # general path: any field, any layout
        tag = pos
        key, pos = read_varint(buf, pos)
        if key == 0x0A or key == 0x12:
            size, pos = read_varint(buf, pos)
            iend = pos + size
            if iend > end:
                raise WireError("field runs past its record")
            if key == 0x12:
                spans.append((pos, iend))
            else:
                path, value = decode_item(buf, pos, iend)
                if type(path) is tuple:
                    npaths.append(path)
                    nvalues.append(value)
                else:
                    add_key(path)  # type: ignore[arg-type]  # type(path) is not tuple: a str
                    add_value(value)
                _remember_head(buf, tag, iend, path)
            pos = iend
        else:
            pos = skip_field(buf, pos, key & 7, end)
    if pos != end:
        raise WireError("record body runs past its length")
    return keys, values, npaths, nvalues, spans


def decode_items_ordered(
    buf: bytes, start: int, end: int
) -> tuple[list[Path], list[bytes], list[tuple[int, int]]]:
    """Like `decode_items`, with the general decoder only and all items in their order:
    ``(paths, values, field2_spans)``."""
    paths: list[Path] = []
    values: list[bytes] = []
    spans: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        tag, pos = read_varint(buf, pos)
        if tag == 0x0A or tag == 0x12:
            size, pos = read_varint(buf, pos)
            if pos + size > end:
                raise WireError("field runs past its record")
            if tag == 0x0A:
                path, value = decode_item(buf, pos, pos + size)
                paths.append(path)
                values.append(value)
            else:
                spans.append((pos, pos + size))
            pos += size
        else:
            pos = skip_field(buf, pos, tag & 7, end)
    return paths, values, spans


def _remember_head(buf: bytes, pos: int, iend: int, path: Path) -> None:
    """Cache the head of the item at `pos` if it has the layout `decode_items` recognises."""
    parts = [p.encode() for p in ((path,) if type(path) is str else path)]
    if not parts or any(len(p) > 0x7F for p in parts):
        return
    # one-part paths may come as `key` (0A) or `nested_key` (12); wandb-core uses both
    tag = b"\x0a" if type(path) is str and buf[pos + 2 : pos + 3] == b"\x0a" else b"\x12"
    body = b"".join(tag + bytes([len(p)]) + p for p in parts) + b"\x82\x01"
    size = iend - pos - 2
    h = len(body) + 3  # 0A L body V
    vlen = iend - pos - h
    if not (0 <= vlen < 0x80 and size < 0x80):
        return
    head = b"\x0a" + bytes([size]) + body + bytes([vlen])
    if buf[pos : pos + h] != head:
        return
    if len(_HEADS) + len(_NHEADS) >= _MAX_HEADS:
        _HEADS.clear()
        _NHEADS.clear()
        _NLENS.clear()
    if type(path) is str:
        _HEADS[head] = path
    else:
        _NHEADS[head] = path  # type: ignore[assignment]  # type(path) is not str: a tuple
        first = body[: 2 + len(parts[0])]
        _NLENS[first] = tuple(sorted(set(_NLENS.get(first, ())) | {h}))


def decode_history(buf: bytes, start: int, end: int) -> tuple[int, Items]:
    """Decode a `HistoryRecord` body: ``(step_num, items)`` (items as `decode_items` returns).

    A missing `HistoryStep` or `num` means step 0.
    """
    items = decode_items(buf, start, end)
    return history_step(buf, items[4]), items


def history_step(buf: bytes, spans: list[tuple[int, int]]) -> int:
    """`HistoryStep.num` from the field-2 span(s) of a history record (missing = 0)."""
    step = history_step_num(buf, spans)
    return 0 if step is None else step


def history_step_num(buf: bytes, spans: list[tuple[int, int]]) -> int | None:
    """`HistoryStep.num` as written: None when no `HistoryStep` or no `num` field is present.

    >>> history_step_num(b"\x08\x05", [(0, 2)]), history_step_num(b"", [(0, 0)]), history_step_num(b"", [])
    (5, None, None)
    """
    step = None
    for s, e in spans:
        for fno, wire, v in iter_fields(buf, s, e):
            if fno == 1 and wire == VARINT:
                step = to_int64(v)  # type: ignore[arg-type]  # a VARINT field: v is an int
    return step


def removed_paths(buf: bytes, spans: list[tuple[int, int]]) -> list[Path]:
    """The paths of the `remove` items (field 2) of a summary/config record."""
    return [decode_item(buf, s, e)[0] for s, e in spans]


def _str(v: int | memoryview) -> str:
    return bytes(v).decode()


def _timestamp(buf: memoryview) -> float:
    seconds = nanos = 0
    for fno, wire, v in iter_fields(buf):
        if fno == 1 and wire == VARINT:
            seconds = to_int64(v)  # type: ignore[arg-type]  # a VARINT field: v is an int
        elif fno == 2 and wire == VARINT:
            nanos = to_int64(v)  # type: ignore[arg-type]  # a VARINT field: v is an int
    return seconds + nanos / 1e9


def _changes(v: memoryview) -> tuple[list[tuple[Path, bytes]], list[Path]]:
    raw = bytes(v)
    paths, values, spans = decode_items_ordered(raw, 0, len(raw))
    return list(zip(paths, values, strict=True)), removed_paths(raw, spans)


def decode_run(buf: bytes, start: int, end: int) -> RunRecord:
    """Decode a `RunRecord` body."""
    r = RunRecord()
    for fno, wire, v in iter_fields(buf, start, end):
        if wire == LEN:
            if fno == 1:
                r.run_id = _str(v)
            elif fno == 2:
                r.entity = _str(v)
            elif fno == 3:
                r.project = _str(v)
            elif fno == 4:
                r.config, r.config_remove = _changes(v)  # type: ignore[arg-type]  # a LEN field: v is a memoryview
            elif fno == 5:
                r.summary, r.summary_remove = _changes(v)  # type: ignore[arg-type]  # a LEN field: v is a memoryview
            elif fno == 6:
                r.run_group = _str(v)
            elif fno == 7:
                r.job_type = _str(v)
            elif fno == 8:
                r.display_name = _str(v)
            elif fno == 9:
                r.notes = _str(v)
            elif fno == 10:
                r.tags.append(_str(v))
            elif fno == 13:
                r.host = _str(v)
            elif fno == 17:
                r.start_time = _timestamp(v)  # type: ignore[arg-type]  # a LEN field: v is a memoryview
        elif wire == VARINT:
            if fno == 14:
                r.starting_step = to_int64(v)  # type: ignore[arg-type]  # a VARINT field: v is an int
            elif fno == 18:
                r.resumed = bool(v)
    return r


def decode_exit(buf: bytes, start: int, end: int) -> ExitRecord:
    """Decode a `RunExitRecord` body (an empty body is exit code 0, runtime 0)."""
    r = ExitRecord()
    for fno, wire, v in iter_fields(buf, start, end):
        if wire == VARINT and fno == 1:
            r.exit_code = to_int64(v)  # type: ignore[arg-type]  # a VARINT field: v is an int
        elif wire == VARINT and fno == 2:
            r.runtime = to_int64(v)  # type: ignore[arg-type]  # a VARINT field: v is an int
    return r


def decode_stats(buf: bytes, start: int, end: int) -> StatsRecord:
    """Decode a `StatsRecord` body (`StatsItem` = key 1, value_json 16)."""
    r = StatsRecord()
    for fno, wire, v in iter_fields(buf, start, end):
        if fno == 1 and wire == VARINT:
            r.stats_type = int(v)
        elif fno == 2 and wire == LEN:
            r.timestamp = _timestamp(v)  # type: ignore[arg-type]  # a LEN field: v is a memoryview
        elif fno == 3 and wire == LEN:
            key = ""
            value = _NULL
            for f2, w2, v2 in iter_fields(v):  # type: ignore[arg-type]  # a LEN field: v is a memoryview
                if f2 == 1 and w2 == LEN:
                    check_key(v2)  # type: ignore[arg-type]  # a LEN field: v2 is a memoryview
                    key = _str(v2)
                elif f2 == 16 and w2 == LEN:
                    value = bytes(v2)
            r.items.append((key, value))
    return r


def decode_header(buf: bytes, start: int, end: int) -> HeaderRecord:
    """Decode a `HeaderRecord` body (`version_info` = 1: producer 1, min_consumer 2)."""
    r = HeaderRecord()
    for fno, wire, v in iter_fields(buf, start, end):
        if fno == 1 and wire == LEN:
            for f2, w2, v2 in iter_fields(v):  # type: ignore[arg-type]  # a LEN field: v is a memoryview
                if f2 == 1 and w2 == LEN:
                    r.producer = _str(v2)
                elif f2 == 2 and w2 == LEN:
                    r.min_consumer = _str(v2)
    return r


def decode_metric(buf: bytes, start: int, end: int) -> MetricRecord:
    """Decode a `MetricRecord` body (name 1, glob_name 2, step_metric 4)."""
    r = MetricRecord()
    for fno, wire, v in iter_fields(buf, start, end):
        if wire == LEN and fno == 1:
            r.name = _str(v)
        elif wire == LEN and fno == 2:
            r.glob_name = _str(v)
        elif wire == LEN and fno == 4:
            r.step_metric = _str(v)
    return r


__all__ = [
    "CONFIG",
    "EXIT",
    "HEADER",
    "HISTORY",
    "METRIC",
    "RUN",
    "STATS",
    "SUMMARY",
    "ExitRecord",
    "HeaderRecord",
    "MetricRecord",
    "RunRecord",
    "StatsRecord",
    "decode_items",
    "decode_items_ordered",
    "decode_exit",
    "decode_header",
    "decode_history",
    "decode_item",
    "decode_metric",
    "decode_run",
    "decode_stats",
    "history_step",
    "history_step_num",
    "removed_paths",
    "split_record",
]
