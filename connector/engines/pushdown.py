"""Polars predicates → what to fetch (step ranges, value sets) plus the filter still to apply.

Polars (and DuckDB, through a registered Polars LazyFrame) hands an IO source its filter as a
``pl.Expr``. `analyze` reads it from ``predicate.meta.serialize(format="json")`` and returns a
`Pushdown`:

* ``ranges`` — half-open step ranges ``[lo, hi)`` that hold every row the predicate can keep, or
  ``None`` when the predicate does not bound `_step`. Understood on `_step`: ``>``, ``>=``, ``<``,
  ``<=``, ``==`` against a number literal (either side), ``is_between`` (``closed`` both, left,
  right or none), ``is_in``, and ``&`` / ``|`` of those (intersection / union). A float literal
  bounds to the integers it admits (``_step > 2.5`` → ``[3, ∞)``).
* ``values`` — for the columns named in ``value_columns`` (``entity``, ``project``, ``run_id``,
  ``key``, ...), the set of values a kept row can hold: ``==`` a literal, ``is_in``, ``is_null``
  (the set then holds ``None``), and ``&`` / ``|`` of those.
* ``residual`` — the predicate with Polars' *dynamic predicates* removed (``Display`` nodes
  ``dynamic_pred: <id>`` that Polars ANDs in under a slice/top-k; they are pruning hints that
  ``DataFrame.filter`` cannot evaluate). **The residual is the whole real predicate**: the source
  must apply it, exactly, to every batch, because Polars does not filter again above an IO source.

Everything else — ``!=``, ``~``, arithmetic on `_step`, casts, UDFs, comparisons with a NULL or NaN
literal, a shape this module does not know — bounds nothing: the whole window is fetched and the
residual filters it. Extraction is therefore always a superset of the rows the predicate keeps; a
misunderstood predicate can cost requests but never change a result.

NULL and NaN: a comparison with NULL is NULL, which a filter drops, so a row whose value is NULL is
never kept by ``==``/``is_in`` (unless ``is_in(..., nulls_equal=True)`` lists ``None``) and the value
sets never admit NULL except through ``is_null``. `_step` is never NULL. A NaN or NULL literal bounds
nothing (the residual decides). For a ``when(c.is_null()).then(NULL).otherwise(x)`` wrapper — the
form DuckDB gives ``c IN (...)`` — the kept rows are those where ``x`` holds, so ``x`` is read.

>>> import polars as pl
>>> p = analyze((pl.col("_step") >= 100) & (pl.col("_step") < 200) & (pl.col("loss") > 1),
...             value_columns=("run_id",))
>>> p.ranges, p.values
(((100, 200),), {})
>>> analyze(pl.col("_step").is_in([3, 4, 9]) & (pl.col("run_id") == "a"),
...         value_columns=("run_id",)).describe()
'_step in [3, 5) ∪ [9, 10); run_id in {a}'
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

STEP = "_step"
NEG_INF = -(2**63)  # open lower bound of a step range
POS_INF = 2**63  # open upper bound of a step range
MAX_RANGES = 64  # more disjoint ranges than this are merged across their smallest gaps

Range = tuple[int, int]
Ranges = tuple[Range, ...]
Tree = Any  # a node of the JSON-serialised expression


@dataclass(frozen=True)
class Pushdown:
    """What a predicate lets a source skip, and the filter it must still apply (see module doc)."""

    ranges: Ranges | None = None
    values: Mapping[str, frozenset[Any]] = field(default_factory=dict)
    residual: pl.Expr | None = None

    def windows(self, lo: int | None = None, hi: int | None = None) -> list[Range]:
        """The step ranges to fetch, clipped to ``[lo, hi)`` (``None`` = unbounded).

        >>> Pushdown(ranges=((0, 10), (20, 30))).windows(5, 25)
        [(5, 10), (20, 25)]
        >>> Pushdown().windows(0, None)
        [(0, 9223372036854775808)]
        """
        clip = ((NEG_INF if lo is None else lo, POS_INF if hi is None else hi),)
        ranges = clip if self.ranges is None else intersect(self.ranges, clip)
        return list(ranges)

    def allows(self, column: str, value: Any) -> bool:
        """False when no row with this value in `column` can pass the predicate.

        >>> Pushdown(values={"run_id": frozenset({"a"})}).allows("run_id", "b")
        False
        """
        allowed = self.values.get(column)
        return allowed is None or value in allowed

    def describe(self) -> str:
        """A one-line summary (for EXPLAIN-like output and tests)."""
        parts = []
        if self.ranges is not None:
            parts.append(
                "_step in "
                + (" ∪ ".join(f"[{_fmt(lo)}, {_fmt(hi)})" for lo, hi in self.ranges) or "∅")
            )
        for name in sorted(self.values):
            shown = sorted(self.values[name], key=lambda v: (v is not None, str(v)))
            parts.append(f"{name} in {{{', '.join(str(v) for v in shown)}}}")
        return "; ".join(parts) or "everything"


def _fmt(bound: int) -> str:
    return "-∞" if bound == NEG_INF else "∞" if bound == POS_INF else str(bound)


# -- range algebra --------------------------------------------------------------------------------


def normalize(ranges: Iterable[Range]) -> Ranges:
    """Sort, drop empty ranges and merge touching ones.

    >>> normalize([(5, 7), (0, 3), (3, 4), (6, 6)])
    ((0, 4), (5, 7))
    """
    out: list[list[int]] = []
    for lo, hi in sorted(r for r in ranges if r[0] < r[1]):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def intersect(a: Ranges, b: Ranges) -> Ranges:
    """The steps in both range lists.

    >>> intersect(((0, 10), (20, 30)), ((5, 25),))
    ((5, 10), (20, 25))
    """
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def coalesce(ranges: Ranges, limit: int = MAX_RANGES) -> Ranges:
    """At most `limit` ranges, merging across the smallest gaps (a superset of the input).

    >>> coalesce(((0, 1), (2, 3), (10, 11)), limit=2)
    ((0, 3), (10, 11))
    """
    if len(ranges) <= limit:
        return ranges
    gaps = sorted(range(len(ranges) - 1), key=lambda i: ranges[i + 1][0] - ranges[i][1])
    merge = set(gaps[: len(ranges) - limit])
    out = [list(ranges[0])]
    for i in range(1, len(ranges)):
        if i - 1 in merge:
            out[-1][1] = ranges[i][1]
        else:
            out.append(list(ranges[i]))
    return tuple((lo, hi) for lo, hi in out)


# -- the expression tree --------------------------------------------------------------------------


def is_dynamic(node: Tree) -> bool:
    """True for Polars' dynamic-predicate placeholder (a ``Display`` node ``dynamic_pred: ...``)."""
    if not isinstance(node, dict):
        return False
    display = node.get("Display")
    return isinstance(display, dict) and str(display.get("fmt_str", "")).startswith("dynamic_pred")


def _contains_dynamic(node: Tree) -> bool:
    if is_dynamic(node):
        return True
    if isinstance(node, dict):
        return any(_contains_dynamic(v) for v in node.values())
    if isinstance(node, list):
        return any(_contains_dynamic(v) for v in node)
    return False


def strip_dynamic(tree: Tree) -> Tree | None:
    """The tree without dynamic-predicate conjuncts; ``None`` when nothing else is left.

    Polars only ANDs them in at the top; one found anywhere else cannot be dropped (under an OR it
    would widen the filter) nor evaluated, so that raises `NotImplementedError`.

    >>> strip_dynamic({"BinaryExpr": {"left": {"Display": {"fmt_str": "dynamic_pred: 1"}},
    ...                               "op": "And", "right": {"Column": "a"}}})
    {'Column': 'a'}
    """
    if is_dynamic(tree):
        return None
    binary = tree.get("BinaryExpr") if isinstance(tree, dict) else None
    if isinstance(binary, dict) and binary.get("op") == "And":
        left, right = strip_dynamic(binary["left"]), strip_dynamic(binary["right"])
        if left is None or right is None:
            return right if left is None else left
        return {"BinaryExpr": {**binary, "left": left, "right": right}}
    if _contains_dynamic(tree):
        raise NotImplementedError("a Polars dynamic predicate outside a top-level AND")
    return tree


def _column(node: Tree) -> str | None:
    if isinstance(node, dict) and isinstance(node.get("Column"), str):
        return node["Column"]
    return None


_MISSING = object()
_PLAIN_SCALARS = frozenset(
    ["Int", "Float", "String", "Boolean", "Float32", "Float64"]
    + [f"{sign}{bits}" for sign in ("Int", "UInt") for bits in (8, 16, 32, 64, 128)]
)


def literal(node: Tree) -> Any:
    """The Python value of a literal node (a list for list/Series literals), else `_MISSING`.

    Plain scalars are read from the JSON; other literals (lists and Series arrive as Arrow IPC
    bytes) are evaluated by Polars itself.
    """
    if not isinstance(node, dict) or "Literal" not in node:
        return _MISSING
    lit = node["Literal"]
    if isinstance(lit, dict):
        for tag in ("Scalar", "Dyn"):
            inner = lit.get(tag)
            if isinstance(inner, dict) and len(inner) == 1:
                (kind, value), = inner.items()
                if kind in _PLAIN_SCALARS:
                    return value
                if kind == "Null":
                    return None
    import polars as pl

    try:
        expr = pl.Expr.deserialize(io.StringIO(json.dumps(node)), format="json")
        series = pl.select(expr.alias("v")).to_series()
    except Exception:  # noqa: BLE001 - an unreadable literal simply bounds nothing
        return _MISSING
    if series.dtype.base_type() in (pl.List, pl.Array) and len(series) == 1:
        return series[0].to_list()
    values = series.to_list()
    return values[0] if len(values) == 1 and not isinstance(values[0], list) else values


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


_FLIP = {"Gt": "Lt", "GtEq": "LtEq", "Lt": "Gt", "LtEq": "GtEq", "Eq": "Eq"}


def _comparison_range(op: str, x: float | int) -> Ranges:
    if op == "Gt":
        return ((math.floor(x) + 1, POS_INF),)
    if op == "GtEq":
        return ((math.ceil(x), POS_INF),)
    if op == "Lt":
        return ((NEG_INF, math.ceil(x)),)
    if op == "LtEq":
        return ((NEG_INF, math.floor(x) + 1),)
    # Eq
    return ((int(x), int(x) + 1),) if float(x).is_integer() else ()


def _compare(node: dict[str, Any]) -> tuple[str, str, Any] | None:
    """``(column, op, literal)`` of a comparison between a column and a literal, either way round."""
    op = node.get("op")
    if not isinstance(op, str):
        return None
    left, right = node.get("left"), node.get("right")
    if (column := _column(left)) is not None and (value := literal(right)) is not _MISSING:
        return column, op, value
    if (column := _column(right)) is not None and op in _FLIP and (value := literal(left)) is not _MISSING:
        return column, _FLIP[op], value
    return None


def _boolean_function(node: Tree) -> tuple[str, Any, list[Tree]] | None:
    func = node.get("Function") if isinstance(node, dict) else None
    if not isinstance(func, dict):
        return None
    boolean = (func.get("function") or {}).get("Boolean") if isinstance(func.get("function"), dict) else None
    if boolean is None:
        return None
    if isinstance(boolean, str):
        return boolean, None, list(func.get("input") or [])
    if isinstance(boolean, dict) and len(boolean) == 1:
        (name, options), = boolean.items()
        return name, options, list(func.get("input") or [])
    return None


def _null_guard(node: Tree) -> Tree | None:
    """For ``when(p).then(NULL or False).otherwise(x)``, the `x` that alone decides a kept row."""
    ternary = node.get("Ternary") if isinstance(node, dict) else None
    if not isinstance(ternary, dict):
        return None
    truthy = literal(ternary.get("truthy"))
    return ternary.get("falsy") if truthy is None or truthy is False else None


def step_ranges(node: Tree) -> Ranges | None:
    """The `_step` ranges a tree keeps rows in, or ``None`` for no bound (see module doc).

    >>> import polars as pl
    >>> tree = json.loads(pl.col("_step").is_between(5, 9, closed="right").meta.serialize(format="json"))
    >>> step_ranges(tree)
    ((6, 10),)
    """
    if not isinstance(node, dict):
        return None
    binary = node.get("BinaryExpr")
    if isinstance(binary, dict):
        op = binary.get("op")
        if op in ("And", "LogicalAnd"):
            left, right = step_ranges(binary["left"]), step_ranges(binary["right"])
            if left is None or right is None:
                return right if left is None else left
            return intersect(left, right)
        if op in ("Or", "LogicalOr"):
            left, right = step_ranges(binary["left"]), step_ranges(binary["right"])
            return None if left is None or right is None else normalize(left + right)
        compared = _compare(binary)
        if compared is None or compared[0] != STEP or compared[1] not in _FLIP:
            return None
        x = _number(compared[2])
        return None if x is None else _comparison_range(compared[1], x)
    guarded = _null_guard(node)
    if guarded is not None:
        return step_ranges(guarded)
    func = _boolean_function(node)
    if func is None:
        return None
    name, options, inputs = func
    if not inputs or _column(inputs[0]) != STEP:
        return None
    if name == "IsBetween" and len(inputs) == 3:
        lo, hi = _number(literal(inputs[1])), _number(literal(inputs[2]))
        if lo is None or hi is None:
            return None
        closed = (options or {}).get("closed", "Both") if isinstance(options, dict) else "Both"
        low = _comparison_range("GtEq" if closed in ("Both", "Left") else "Gt", lo)
        high = _comparison_range("LtEq" if closed in ("Both", "Right") else "Lt", hi)
        return intersect(low, high)
    if name == "IsIn" and len(inputs) == 2:
        values = literal(inputs[1])
        if not isinstance(values, list):
            return None
        points = [int(v) for v in values if _number(v) is not None and float(v).is_integer()]
        return normalize((p, p + 1) for p in points)
    return None


def value_set(node: Tree, column: str) -> frozenset[Any] | None:
    """The values of `column` a tree keeps rows with, or ``None`` for no constraint.

    >>> import polars as pl
    >>> tree = json.loads(((pl.col("k") == "a") | pl.col("k").is_in(["b", "c"])).meta.serialize(format="json"))
    >>> sorted(value_set(tree, "k"))
    ['a', 'b', 'c']
    """
    if not isinstance(node, dict):
        return None
    binary = node.get("BinaryExpr")
    if isinstance(binary, dict):
        op = binary.get("op")
        if op in ("And", "LogicalAnd"):
            left, right = value_set(binary["left"], column), value_set(binary["right"], column)
            if left is None or right is None:
                return right if left is None else left
            return left & right
        if op in ("Or", "LogicalOr"):
            left, right = value_set(binary["left"], column), value_set(binary["right"], column)
            return None if left is None or right is None else left | right
        compared = _compare(binary)
        if compared is None or compared[0] != column or compared[1] != "Eq" or compared[2] is None:
            return None
        value = compared[2]
        return frozenset([value]) if isinstance(value, str | int) else None
    guarded = _null_guard(node)
    if guarded is not None:
        return value_set(guarded, column)
    func = _boolean_function(node)
    if func is None:
        return None
    name, options, inputs = func
    if not inputs or _column(inputs[0]) != column:
        return None
    if name == "IsNull" and len(inputs) == 1:
        return frozenset([None])
    if name == "IsIn" and len(inputs) == 2:
        values = literal(inputs[1])
        if not isinstance(values, list) or not all(isinstance(v, str | int | None) for v in values):
            return None
        nulls_equal = isinstance(options, dict) and options.get("nulls_equal") is True
        return frozenset(v for v in values if v is not None or nulls_equal)
    return None


def analyze(
    predicate: pl.Expr | None,
    *,
    value_columns: Sequence[str] = (),
    max_ranges: int = MAX_RANGES,
) -> Pushdown:
    """Read a Polars predicate: step ranges, value sets for `value_columns`, and the residual.

    >>> import polars as pl
    >>> analyze(pl.col("_step") > 10).ranges
    ((11, 9223372036854775808),)
    >>> analyze((pl.col("_step") % 7) == 3).ranges is None  # not understood: fetch everything
    True
    """
    if predicate is None:
        return Pushdown()
    try:
        tree = json.loads(predicate.meta.serialize(format="json"))
    except Exception:  # noqa: BLE001 - unserialisable: nothing to push, the filter still applies
        return Pushdown(residual=predicate)
    stripped = strip_dynamic(tree) if _contains_dynamic(tree) else tree
    if stripped is None:
        return Pushdown()
    if stripped is tree:
        residual = predicate
    else:
        import polars as pl

        residual = pl.Expr.deserialize(io.StringIO(json.dumps(stripped)), format="json")
    ranges = step_ranges(stripped)
    values = {}
    for name in value_columns:
        allowed = value_set(stripped, name)
        if allowed is not None:
            values[name] = allowed
    return Pushdown(
        ranges=None if ranges is None else coalesce(ranges, max_ranges),
        values=values,
        residual=residual,
    )
