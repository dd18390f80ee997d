"""The value model shared by every source: W&B value types, nested-key flattening, `historyKeys`.

A history row is a dict as the SDK returns it: nested dicts for nested keys, media objects as dicts
tagged `_type`, lists as lists, numbers as int or float (NaN and ±inf included), `_step` an int.

Flattening (the column view) joins nested plain-dict keys with ``.``, as W&B's own parquet exports do.
Media dicts (tagged `_type`), lists and empty dicts are leaves. When a literal dotted key (``"a.b"``)
and a nested path (``{"a": {"b": ...}}``) flatten to the same name in one row, the literal key wins and
the nested value is reported as a collision, so the caller can keep it (see `connector.core.arrow`).

>>> flatten_row({"_step": 1, "train": {"loss": 0.5, "h": {"_type": "histogram", "bins": [0, 1]}}})
({'_step': 1, 'train.loss': 0.5, 'train.h': {'_type': 'histogram', 'bins': [0, 1]}}, {})
>>> value_type(float("nan")), value_type(True), value_type({"_type": "image-file"}), value_type([1])
('number', 'bool', 'image-file', 'list')

Limits (no real run comes near them; they keep a hostile or broken server from exhausting the stack
or the memory): a row nests at most `MAX_DEPTH` (500) containers deep, the row object itself
counting as one, and holds at most `MAX_KEYS_PER_ROW` (100,000) keys, nested keys included.
`parse_row` and `check_row` enforce both, `flatten_row` the ones it can see while it walks (dict
nesting, leaves); a row past them raises `RowError` instead of a `RecursionError` deep inside
Arrow or JSON code, or a multi-gigabyte allocation. Why 500: the code that handles a row recurses
once per level (the Arrow conversion per nested dict, the JSON encoder per container), within
Python's limit of 1000 frames; orjson itself stops at 1024. And a row shorter than 1000 characters
cannot nest 500 deep, so the usual row is parsed without any extra pass over its text.

**Non-finite floats** have one spelling everywhere: `NONFINITE` maps W&B's tokens ``NaN``,
``Infinity``, ``-Infinity`` to the floats, `nonfinite_token` maps a float back. W&B's own JSON text
holds them as bare tokens (`parse_row` reads them); *strict* JSON (a JSON/JSONB column, the
GraphQL envelope) cannot, so there they are the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``
(`strict_json_value`).

>>> strict_json_value({"a": [float("nan"), float("-inf")], "b": 1.0})
{'a': ['NaN', '-Infinity'], 'b': 1.0}
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from ..errors import RowError

#: The deepest nesting of containers (dicts and lists) a row may have, the row itself counting as 1.
MAX_DEPTH = 500
#: The most keys a row may hold, the keys of nested dicts included.
MAX_KEYS_PER_ROW = 100_000
#: The Python types of JSON scalars (what `check_row` never needs to walk).
SCALAR_TYPES = frozenset({type(None), bool, int, float, str})
#: W&B's tokens for the non-finite floats (bare in its JSON text, strings in strict JSON).
NONFINITE: Mapping[str, float] = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def nonfinite_token(value: float) -> str:
    """The token of a non-finite float: ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``.

    >>> nonfinite_token(float("nan")), nonfinite_token(float("inf")), nonfinite_token(-float("inf"))
    ('NaN', 'Infinity', '-Infinity')
    """
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    raise ValueError(f"{value!r} is finite")


def strict_json_value(value: Any) -> Any:
    """`value` with every non-finite float (also inside dicts, lists and tuples) as its token string
    (`nonfinite_token`), so that it serialises as strict JSON (``json.dumps(..., allow_nan=False)``).

    >>> strict_json_value({"a": [float("inf"), 1.0], "t": (float("nan"),), "s": "NaN"})
    {'a': ['Infinity', 1.0], 't': ['NaN'], 's': 'NaN'}
    """
    if value.__class__ is float:
        return value if math.isfinite(value) else nonfinite_token(value)
    if isinstance(value, dict):
        return {k: strict_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json_value(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):  # a float subclass
        return nonfinite_token(value)
    return value


def _preview(text: Any, limit: int = 80) -> str:
    shown = repr(text[:limit]) if isinstance(text, str | bytes) else repr(text)[:limit]
    return shown + ("..." if isinstance(text, str | bytes) and len(text) > limit else "")


def _count(text: str | bytes, char: str) -> int:
    """How often the ASCII `char` occurs in `text`."""
    return text.count(char) if isinstance(text, str) else text.count(char.encode())


def parse_row(text: str | bytes) -> dict[str, Any]:
    """Parse one row's JSON text; bare NaN/Infinity/-Infinity (as W&B writes them) become floats.

    Raises `RowError` when the text is not JSON, not a JSON object, or past the limits
    (`MAX_DEPTH`, `MAX_KEYS_PER_ROW`).

    >>> parse_row('{"_step": 1, "loss": NaN, "acc": -Infinity}')
    {'_step': 1, 'loss': nan, 'acc': -inf}
    >>> parse_row("[1, 2]")
    Traceback (most recent call last):
    ...
    connector.errors.RowError: a row is not a JSON object: '[1, 2]'
    """
    if not isinstance(text, str | bytes):
        raise RowError(f"a row is not JSON text but {type(text).__name__} {_preview(text)}")
    try:
        row = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise RowError(f"a row nests deeper than {MAX_DEPTH} levels") from exc
        try:
            row = json.loads(text)  # bare NaN/Infinity tokens: the standard parser accepts them
        except RecursionError as deep:
            raise RowError(f"a row nests deeper than {MAX_DEPTH} levels") from deep
        except ValueError as bad:
            raise RowError(f"a row is not JSON ({bad}): {_preview(text)}") from bad
    if row.__class__ is not dict:
        raise RowError(f"a row is not a JSON object: {_preview(text)}")
    # Cheap bounds first: a row cannot nest deeper than its text has opening brackets (nor than
    # half its length), nor hold more keys than it has colons (nor than a quarter of its length).
    # Only a row past one of them is walked.
    n = len(text)
    if n > 2 * MAX_DEPTH and (_count(text, "{") + _count(text, "[") > MAX_DEPTH or (
        n > 4 * MAX_KEYS_PER_ROW and _count(text, ":") > MAX_KEYS_PER_ROW
    )):
        check_row(row)
    return row


def check_row(row: Mapping[str, Any]) -> None:
    """Raise `RowError` when a parsed row nests deeper than `MAX_DEPTH` or holds more than
    `MAX_KEYS_PER_ROW` keys (iterative: never recurses, whatever the row).

    >>> check_row({"_step": 1, "h": {"values": [1, 2], "bins": [0, 1, 2]}})
    >>> deep: dict = {}
    >>> node = deep
    >>> for _ in range(600):
    ...     node["a"] = node = {}
    >>> check_row(deep)
    Traceback (most recent call last):
    ...
    connector.errors.RowError: a row nests deeper than 500 levels
    """
    if row.__class__ is dict and len(row) <= MAX_KEYS_PER_ROW and SCALAR_TYPES.issuperset(map(type, row.values())):
        return  # a flat row (the usual projection): nothing to walk
    keys = 0
    stack: list[tuple[Any, int]] = [(row, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise RowError(f"a row nests deeper than {MAX_DEPTH} levels")
        if value.__class__ is dict or isinstance(value, Mapping):
            keys += len(value)
            if keys > MAX_KEYS_PER_ROW:
                raise RowError(f"a row holds more than {MAX_KEYS_PER_ROW} keys")
            children: Iterable[Any] = value.values()
        else:
            children = value
        if not SCALAR_TYPES.issuperset(map(type, children)):  # in C: lists of numbers cost little
            stack += [(c, depth + 1) for c in children if isinstance(c, dict | list | Mapping)]


def value_type(value: Any) -> str:
    """The W&B type name of one value, as `historyKeys` type counts spell it."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict | Mapping):
        tag = value.get("_type")
        return tag if isinstance(tag, str) else "map"
    return type(value).__name__


def is_leaf(value: Any) -> bool:
    """True when `value` is stored whole in one column (everything but a non-empty plain dict)."""
    return not (isinstance(value, dict) and value and "_type" not in value)


def flatten_row(row: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Flatten nested plain dicts to dotted names.

    Returns ``(flat, collisions)``: `collisions` maps a flattened name to a nested value that lost
    to a literal key of the same name (empty in almost every row). Raises `RowError` when the dicts
    nest deeper than `MAX_DEPTH` or the row has more than `MAX_KEYS_PER_ROW` leaves.
    """
    flat: dict[str, Any] = {}
    nested: list[tuple[str, Any]] = []
    for key, value in row.items():
        if is_leaf(value):
            flat[key] = value
        else:
            nested.append((key, value))
    collisions: dict[str, Any] = {}
    if nested:
        flatten_into(flat, nested, collisions)
    if len(flat) > MAX_KEYS_PER_ROW:
        raise RowError(f"a row holds more than {MAX_KEYS_PER_ROW} keys")
    return flat, collisions


def flatten_into(
    flat: dict[str, Any], nested: list[tuple[str, Any]], collisions: dict[str, Any]
) -> None:
    """Add the leaves of `(prefix, dict)` pairs to `flat`; a name already there is a collision.

    The pairs are one level below the row; `RowError` past `MAX_DEPTH` levels of dicts.
    """
    stack = [(prefix, value, 2) for prefix, value in nested]
    nested.clear()
    while stack:
        prefix, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise RowError(f"a row nests deeper than {MAX_DEPTH} levels")
        for key, inner in value.items():
            name = f"{prefix}.{key}"
            if not is_leaf(inner):
                stack.append((name, inner, depth + 1))
            elif name in flat:
                collisions[name] = inner
            else:
                flat[name] = inner


def unflatten_row(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of `flatten_row` for rows without literal dotted keys.

    >>> unflatten_row({"_step": 1, "train.loss": 0.5})
    {'_step': 1, 'train': {'loss': 0.5}}
    """
    out: dict[str, Any] = {}
    for name, value in flat.items():
        parts = name.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


_TYPE_NAMES = {
    type(None): "nil", bool: "bool", int: "number", float: "number", str: "string",
    list: "list", tuple: "list",
}  # fmt: skip
_CHUNK = 8192


def history_keys_from_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Build a `historyKeys` object (``{"keys": {flat: {"typeCounts": [...]}}, "lastStep": N}``).

    Counted column by column over chunks of rows (type counting runs in C), so a million rows
    cost seconds, not minutes.

    >>> history_keys_from_rows([{"_step": 0, "a": 1.0}, {"_step": 3, "a": "x"}])["keys"]["a"]
    {'typeCounts': [{'type': 'number', 'count': 1}, {'type': 'string', 'count': 1}]}
    """
    counts: dict[str, Counter[str]] = {}
    last_step = -1
    chunk: list[Mapping[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == _CHUNK:
            last_step = max(last_step, _count_types(chunk, "", counts))
            chunk = []
    if chunk:
        last_step = max(last_step, _count_types(chunk, "", counts))
    keys = {
        name: {"typeCounts": [{"type": t, "count": n} for t, n in sorted(c.items())]}
        for name, c in counts.items()
    }
    return {"keys": keys, "lastStep": last_step}


def _count_types(dicts: list[Mapping[str, Any]], prefix: str, counts: dict[str, Counter[str]]) -> int:
    """Add the value types of one nesting level to `counts`; returns the largest int `_step`."""
    last_step = -1
    for key in set().union(*dicts):
        values = [d[key] for d in dicts if key in d]
        name = prefix + key
        by_type = Counter(map(type, values))
        nested: list[Mapping[str, Any]] = []
        for kind, n in by_type.items():
            if kind is dict:
                for value in values:
                    if type(value) is dict:
                        if is_leaf(value):
                            counts.setdefault(name, Counter())[value_type(value)] += 1
                        else:
                            nested.append(value)
            else:
                label = _TYPE_NAMES.get(kind) or value_type(values[0] if n else None)
                counts.setdefault(name, Counter())[label] += n
        if nested:
            _count_types(nested, name + ".", counts)
        if not prefix and key == "_step":
            ints = [v for v in values if type(v) is int]
            last_step = max(ints, default=-1)
    return last_step
