"""Bounds on what one `.wandb` file may ask of the reader (a file is never trusted).

Every limit is far above what a real run reaches; a file beyond one is refused with a
`LocalFileError` naming the file and the record's byte offset (or, with ``skip_damaged=True``,
the record is skipped with a `DamagedRecordWarning`), never with a `RecursionError`, a
`MemoryError` or an allocation failure further down (Arrow, Polars, DuckDB).

==================  =============  ==================================================================
limit               default        what it bounds
==================  =============  ==================================================================
`MAX_RECORD_BYTES`  64 MiB         one record (a FIRST..LAST chunk sequence) of the framing
`MAX_DEPTH`         200            nesting of a history row, summary or config value: the parts of
                                   its path (``nested_key``) plus the ``{``/``[`` levels of its JSON
`MAX_KEYS`          100,000        keys of one history row (items, and keys of the objects in its
                                   values), and distinct history keys (columns) of one file
`MAX_KEY_BYTES`     16 KiB         one key: an item's ``key`` or one part of its ``nested_key``
`MAX_STEP`          2**63 - 1      a ``_step``: an integer in ``[0, MAX_STEP]`` (Arrow ``int64``)
==================  =============  ==================================================================

The checks are cheap upper bounds on the raw JSON bytes (counts of ``[``, ``{`` and ``:`` done in
C), with an exact check only for the rare value that the bound does not clear.

>>> check_values([b'{"a": [1, 2]}', b"3"], 1)  # its key count
1
>>> check_values([b"[" * 300 + b"]" * 300], 1)
Traceback (most recent call last):
...
connector.local.limits.LimitError: a value nested more than 200 levels deep (limit MAX_DEPTH)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson

MAX_RECORD_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 200
MAX_KEYS = 100_000
MAX_KEY_BYTES = 16 * 1024
MAX_STEP = 2**63 - 1


class LimitError(ValueError):
    """A record goes beyond one of the reader's limits (the message names the limit)."""


def check_key(raw: bytes | memoryview) -> None:
    """Raise `LimitError` when one key (or one part of a nested key) is longer than `MAX_KEY_BYTES`.

    >>> check_key(b"loss")
    >>> check_key(b"k" * 20000)
    Traceback (most recent call last):
    ...
    connector.local.limits.LimitError: a key of 20000 bytes (limit MAX_KEY_BYTES = 16384)
    """
    if len(raw) > MAX_KEY_BYTES:
        raise LimitError(f"a key of {len(raw)} bytes (limit MAX_KEY_BYTES = {MAX_KEY_BYTES})")


def check_path(parts: int) -> None:
    """Raise `LimitError` when a nested key has more parts than `MAX_DEPTH`.

    >>> check_path(3)
    >>> check_path(990)
    Traceback (most recent call last):
    ...
    connector.local.limits.LimitError: a nested key of 990 parts (limit MAX_DEPTH = 200)
    """
    if parts > MAX_DEPTH:
        raise LimitError(f"a nested key of {parts} parts (limit MAX_DEPTH = {MAX_DEPTH})")


def check_items(count: int, what: str = "a history record") -> None:
    """Raise `LimitError` when one record holds more items than `MAX_KEYS`.

    >>> check_items(10)
    >>> check_items(200_000)
    Traceback (most recent call last):
    ...
    connector.local.limits.LimitError: a history record with 200000 items (limit MAX_KEYS = 100000)
    """
    if count > MAX_KEYS:
        raise LimitError(f"{what} with {count} items (limit MAX_KEYS = {MAX_KEYS})")


def needs_check(joined: bytes, path_depth: int, path_keys: int) -> bool:
    """False when the JSON text `joined` (values joined, at most `path_depth` deep by their paths,
    whose paths hold `path_keys` keys) clearly fits `MAX_DEPTH` and `MAX_KEYS`.

    Every ``[``/``{`` may open one level and every ``:`` may add one key, so this is an upper
    bound; `check_values` decides exactly when it says True.

    >>> needs_check(b'[1,"a",{"b":2}]', 1, 3), needs_check(b"[" * 250, 1, 0)
    (False, True)
    """
    return (
        path_depth + joined.count(b"[") + joined.count(b"{") > MAX_DEPTH
        or path_keys + joined.count(b":") > MAX_KEYS
    )


def check_values(raws: Sequence[bytes], path_depth: int | Sequence[int], path_keys: int = 0) -> int:
    """Check JSON values exactly against `MAX_DEPTH` and `MAX_KEYS`; return their key count.

    `path_depth` is the number of parts of the values' paths (one int for all, or one per value);
    `path_keys` the keys their paths make. Raises `LimitError`. A value that is not JSON (kept as
    text by the reader) has depth 0.

    >>> check_values([b'{"a": {"b": 1}}', b"[[1]]"], [1, 3])
    2
    """
    keys = path_keys
    for i, raw in enumerate(raws):
        base = path_depth if isinstance(path_depth, int) else path_depth[i]
        if raw.count(b"[") + raw.count(b"{") + base <= MAX_DEPTH and raw.count(b":") == 0:
            continue
        depth, count = _shape(_parse(raw), MAX_DEPTH - base)
        if base + depth > MAX_DEPTH:
            raise LimitError(f"a value nested more than {MAX_DEPTH} levels deep (limit MAX_DEPTH)")
        keys += count
        if keys > MAX_KEYS:
            raise LimitError(f"more than {MAX_KEYS} keys in one record (limit MAX_KEYS)")
    return keys


def count_keys(value: Any) -> int:
    """Every key of every dict in `value` (iterative, any depth).

    >>> count_keys({"a": 1, "b": {"c": [{"d": 1}]}})
    4
    """
    return _shape(value, 1 << 30)[1]


def _parse(raw: bytes) -> Any:
    """Parse for checking only: orjson (depth-limited in C), then the standard parser."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except RecursionError:
        raise LimitError(f"a value nested deeper than {MAX_DEPTH} levels (limit MAX_DEPTH)") from None
    except ValueError:
        return None  # not JSON: the reader keeps it as text


def _shape(value: Any, limit: int) -> tuple[int, int]:
    """``(depth, keys)`` of a parsed value without recursion; stops once deeper than `limit`."""
    kind = type(value)
    if kind is not dict and kind is not list:
        return 0, 0
    depth = keys = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if level > depth:
            depth = level
            if depth > limit:
                return depth, keys
        if type(node) is dict:
            keys += len(node)
            children = node.values()
        else:
            children = node
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, level + 1))
    return depth, keys
