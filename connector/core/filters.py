"""Mongo-style run filters and run ordering, as `Api().runs(path, filters=..., order=...)` sends them.

Fields a filter or an order can name (``RunMeta`` behind each):

* ``state``, ``name`` (the run id), ``displayName`` / ``display_name``, ``tags`` (a list: equality
  and ``$in`` match when any tag matches, as in MongoDB), ``group``, ``jobType`` / ``job_type``;
* ``createdAt`` / ``created_at``, ``heartbeatAt`` / ``heartbeat_at``, ``updatedAt`` / ``updated_at``
  (= heartbeat, else created): ISO strings, compared as strings;
* ``config.<k>`` and ``config.<k>.value`` (the unwrapped value; ``<k>`` may be a dotted path into a
  nested config dict), ``summary_metrics.<k>`` / ``summaryMetrics.<k>`` (dotted paths allowed).

Operators: ``$and $or $nor $eq $ne $gt $gte $lt $lte $in $nin $exists $regex`` (``re.search``),
plus implicit equality (``{"state": "finished"}``). A comparison between values of different kinds
(number vs string) is false, as in MongoDB. A missing field equals ``None``.

Order: ``[+|-]<field>`` (default ``+created_at``); missing values sort first ascending; ties are
broken by created time then run id.

>>> from connector.core.rundata import RunMeta
>>> m = RunMeta("e", "p", "r1", state="finished", config={"lr": 0.1}, tags=["a", "b"])
>>> matches(m, {"$and": [{"state": "finished"}, {"config.lr": {"$gt": 0.05}}, {"tags": "a"}]})
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .rundata import RunMeta

_MISSING = object()
_ALIASES = {
    "displayName": "display_name",
    "createdAt": "created_at",
    "heartbeatAt": "heartbeat_at",
    "updatedAt": "updated_at",
    "jobType": "job_type",
    "summaryMetrics": "summary_metrics",
}


class FilterError(ValueError):
    """A filter or order this module does not understand (named in the message)."""


def _dig(obj: Any, parts: Sequence[str]) -> Any:
    for part in parts:
        if isinstance(obj, Mapping) and part in obj:
            obj = obj[part]
        else:
            return _MISSING
    return obj


def field_value(meta: RunMeta, name: str) -> Any:
    """The value of `name` for a run, or a sentinel when it is absent."""
    head, _, rest = name.partition(".")
    head = _ALIASES.get(head, head)
    if head == "config" and rest:
        parts = rest.split(".")
        if parts[-1] == "value" and len(parts) > 1:
            found = _dig(meta.config, parts[:-1])
            if found is not _MISSING:
                return found
        return _dig(meta.config, parts)
    if head == "summary_metrics" and rest:
        return _dig(meta.summary, rest.split("."))
    if rest:
        return _MISSING
    if head == "name":
        return meta.run_id
    if head == "updated_at":
        return meta.heartbeat_at or meta.created_at
    if head in ("state", "display_name", "tags", "group", "job_type", "created_at", "heartbeat_at"):
        return getattr(meta, head)
    if head in ("entity", "project"):
        return getattr(meta, head)
    raise FilterError(f"unknown run filter field {name!r}")


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    return type(v).__name__


def _cmp(op: str, a: Any, b: Any) -> bool:
    if a is _MISSING or a is None or b is None or _kind(a) != _kind(b):
        return False
    try:
        if op == "$gt":
            return bool(a > b)
        if op == "$gte":
            return bool(a >= b)
        if op == "$lt":
            return bool(a < b)
        return bool(a <= b)
    except TypeError:
        return False


def _eq(a: Any, b: Any) -> bool:
    if a is _MISSING:
        return b is None
    if isinstance(a, list) and not isinstance(b, list):
        return any(_eq(x, b) for x in a)
    return a == b and _kind(a) == _kind(b) if a is not None and b is not None else a is b


def _match_ops(value: Any, cond: Any) -> bool:
    if not (isinstance(cond, Mapping) and cond and all(str(k).startswith("$") for k in cond)):
        return _eq(value, cond)
    for op, arg in cond.items():
        if op == "$eq":
            ok = _eq(value, arg)
        elif op == "$ne":
            ok = not _eq(value, arg)
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            items = value if isinstance(value, list) else [value]
            ok = any(_cmp(op, v, arg) for v in items)
        elif op == "$in":
            if not isinstance(arg, list):
                raise FilterError(f"$in needs a list, got {arg!r}")
            ok = any(_eq(value, x) for x in arg)
        elif op == "$nin":
            if not isinstance(arg, list):
                raise FilterError(f"$nin needs a list, got {arg!r}")
            ok = not any(_eq(value, x) for x in arg)
        elif op == "$exists":
            ok = (value is not _MISSING and value is not None) == bool(arg)
        elif op == "$regex":
            items = value if isinstance(value, list) else [value]
            ok = any(isinstance(v, str) and re.search(str(arg), v) is not None for v in items)
        elif op == "$not":
            ok = not _match_ops(value, arg)
        else:
            raise FilterError(f"unsupported filter operator {op!r}")
        if not ok:
            return False
    return True


def matches(meta: RunMeta, flt: Mapping[str, Any] | None) -> bool:
    """True when the run `meta` satisfies the Mongo-style filter `flt` (``None``/``{}`` match all)."""
    if not flt:
        return True
    if not isinstance(flt, Mapping):
        raise FilterError(f"run filters must be a JSON object, got {flt!r}")
    for key, cond in flt.items():
        if key in ("$and", "$or", "$nor"):
            if not isinstance(cond, list):
                raise FilterError(f"{key} needs a list of filters, got {cond!r}")
            results = (matches(meta, c) for c in cond)
            ok = (
                all(results)
                if key == "$and"
                else (any(results) if key == "$or" else not any(results))
            )
        elif key.startswith("$"):
            raise FilterError(f"unsupported top-level filter operator {key!r}")
        else:
            ok = _match_ops(field_value(meta, key), cond)
        if not ok:
            return False
    return True


def sort_runs(metas: Sequence[RunMeta], order: str | None) -> list[RunMeta]:
    """Sort runs by ``[+|-]field`` (default ``+created_at``).

    >>> a, b = RunMeta("e", "p", "a", created_at="2"), RunMeta("e", "p", "b", created_at="1")
    >>> [m.run_id for m in sort_runs([a, b], "-name")]
    ['b', 'a']
    """
    text = (order or "+created_at").strip()
    desc = text.startswith("-")
    name = text.lstrip("+-") or "created_at"
    base = sorted(metas, key=lambda m: (m.created_at or "", m.run_id))

    def key(m: RunMeta) -> tuple[int, str, Any]:
        v = field_value(m, name)
        if v is _MISSING or v is None:
            return (0, "", 0)
        if isinstance(v, list | dict):
            return (1, "json", str(v))
        return (1, _kind(v), v)

    try:
        return sorted(base, key=key, reverse=desc)
    except TypeError:
        return sorted(base, key=lambda m: str(key(m)), reverse=desc)
