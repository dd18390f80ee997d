"""What "the same rows as the official SDK" means (DESIGN, Contracts), as one comparison.

Both sides are flattened to dotted keys; JSON text holding an object or list is parsed; a missing
key equals null; ``1`` equals ``1.0``; NaN equals NaN; for number-typed keys the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"`` equal the float (the SDK's keyed scans receive them as strings).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from connector.core.values import flatten_row

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def normalise(value: Any) -> Any:
    """One comparable form of a value."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            value = json.loads(value)
        except ValueError:
            return value
    if isinstance(value, str) and value in _NONFINITE:
        return _NONFINITE[value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items() if v is not None}
    return value


def same_value(a: Any, b: Any) -> bool:
    a, b = normalise(a), normalise(b)
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(same_value(a[k], b[k]) for k in a)
    return a == b


def flat(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row flattened to dotted keys, without null values and without `_extra` when empty."""
    out, _ = flatten_row(row)
    return {k: v for k, v in out.items() if v is not None and not (k == "_extra" and v is None)}


def row_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The keys on which two rows differ (empty when they are the same row)."""
    fa, fb = flat(a), flat(b)
    return sorted(k for k in set(fa) | set(fb) if not same_value(fa.get(k), fb.get(k)))


def assert_same_rows(got: Iterable[Mapping[str, Any]], want: Iterable[Mapping[str, Any]]) -> None:
    """Assert two row sequences are the same rows in the same order (message names the first diff)."""
    got, want = list(got), list(want)
    assert len(got) == len(want), f"{len(got)} rows, expected {len(want)}"
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        diff = row_diff(a, b)
        assert not diff, f"row {i} (_step {b.get('_step')}) differs on {diff[:5]}: {a} != {b}"
