"""The history index of `.wandb` files: per history record its step, file and byte offset, and
its key/type signature, so a run is read in windows instead of being held as rows.

The first pass over a file (`connector.local.rebuild.decode_file`) adds one entry per history
record (`HistoryIndex.add`, a few bytes each); a run built from one or more files keeps, per
``_step``, the entry of the record that wins it (the later record of the later file, see
`merge`), and its `historyKeys` are the sum of the winners' signatures (each signature is the
type counts one row adds, so no row is held to count them).

>>> a, b = HistoryIndex(), HistoryIndex()
>>> a.add(0, 7, a.signature({"_step": 0, "x": 1.0})); a.add(1, 90, a.signature({"_step": 1, "x": "s"}))
>>> b.add(1, 7, b.signature({"_step": 1, "x": 2.0}))
>>> merged = merge([a, b])
>>> list(merged.steps), merged.files.tolist(), merged.offsets.tolist()
([0, 1], [0, 1], [7, 7])
>>> merged.history_keys["keys"]["x"], merged.history_keys["lastStep"]
({'typeCounts': [{'type': 'number', 'count': 2}]}, 1)
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from ..core.values import history_keys_from_rows

_LABELS: dict[type, str] = {
    type(None): "nil", bool: "bool", int: "number", float: "number", str: "string", list: "list",
}  # fmt: skip
_NUMBERS = {int, float}
_INT64_MAX = 2**63 - 1
_DROPPED = -1  # the step of an entry taken back (a step-less record refused later)

#: what one row adds to `historyKeys`: ``(flat name, type name, count)`` triples
Contribution = tuple[tuple[str, str, int], ...]


class HistoryIndex:
    """The history records of one file, in file order: step, byte offset, signature id."""

    def __init__(self) -> None:
        self.steps = array("q")
        self.offsets = array("q")
        self.sigs = array("l")
        self.table: list[Contribution] = []  # signature id -> what a row of it adds
        self._ids: dict[Any, int] = {}

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, step: int, offset: int, sig: int) -> None:
        """Append the record at `offset` (its chunk's byte offset) holding the row of `step`."""
        self.steps.append(step)
        self.offsets.append(offset)
        self.sigs.append(sig)

    def drop(self, position: int) -> None:
        """Take back the entry at `position` (its record turned out damaged)."""
        self.steps[position] = _DROPPED

    def signature(self, row: Mapping[str, Any]) -> int:
        """The signature id of a history row: what it adds to the type counts of `historyKeys`.

        Rows of scalars and lists (the usual case) are keyed by their key names and value types;
        rows holding a dict (media, nested keys) are counted as `history_keys_from_rows` counts them.
        """
        types = tuple(map(type, row.values()))
        kinds = set(types)
        if dict not in kinds:
            # keyed without order (writers do not keep item order): a key set, or key/type pairs
            key: Any = frozenset(row) if kinds <= _NUMBERS else frozenset(zip(row, types, strict=True))
            sig = self._ids.get(key)
            if sig is None:
                labels = _LABELS
                contribution: Contribution = tuple(
                    (name, labels.get(t) or "list", 1) for name, t in zip(row, types, strict=True)
                )
                sig = self._ids[key] = len(self.table)
                self.table.append(contribution)
            return sig
        counts = history_keys_from_rows([row])["keys"]
        contribution = tuple(
            (name, tc["type"], tc["count"]) for name, info in counts.items() for tc in info["typeCounts"]
        )
        sig = self._ids.get(contribution)
        if sig is None:
            sig = self._ids[contribution] = len(self.table)
            self.table.append(contribution)
        return sig


class Steps(Sequence[int]):
    """The ascending ``_step`` values of a run, held as one int64 array (8 bytes a row).

    >>> s = Steps(np.array([0, 5, 9]))
    >>> len(s), s[1], s[-1], s[:2], s == [0, 5, 9], list(s), s.index_range(1, 2**63)
    (3, 5, 9, [0, 5], True, [0, 5, 9], (1, 3))
    """

    __slots__ = ("array",)

    def __init__(self, values: np.ndarray[Any, Any]) -> None:
        self.array = values

    def __len__(self) -> int:
        return len(self.array)

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> list[int]: ...

    def __getitem__(self, index: int | slice) -> int | list[int]:
        if isinstance(index, slice):
            return self.array[index].tolist()
        return int(self.array[index])

    def __iter__(self) -> Iterator[int]:
        return iter(self.array.tolist())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Steps):
            return bool(np.array_equal(self.array, other.array))
        if isinstance(other, Sequence):
            return len(other) == len(self.array) and self.array.tolist() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-equal, like a list

    def __repr__(self) -> str:
        return repr(self.array.tolist()) if len(self.array) <= 20 else f"Steps({len(self.array)} steps)"

    def index_range(self, lo: int, hi: int) -> tuple[int, int]:
        """Row indices ``[i0, i1)`` of the steps in ``[lo, hi)``."""
        return self._position(lo), self._position(hi)

    def _position(self, step: int) -> int:
        """``bisect_left`` of `step` (any Python int: beyond int64 it is past or before every row)."""
        if step > _INT64_MAX:
            return len(self.array)
        if step <= -_INT64_MAX:
            return 0
        return int(np.searchsorted(self.array, np.int64(step), "left"))


@dataclass
class RunIndex:
    """The rows of a run: ``steps[i]`` is read from record ``offsets[i]`` of file ``files[i]``."""

    steps: Steps
    files: np.ndarray[Any, Any]
    offsets: np.ndarray[Any, Any]
    history_keys: dict[str, Any]


def merge(indexes: Sequence[HistoryIndex]) -> RunIndex:
    """One run's index from its files' indexes, oldest file first: the later record wins a step
    (within a file and across files), entries taken back are left out."""
    steps = np.concatenate([np.frombuffer(ix.steps, dtype=np.int64) for ix in indexes]) if indexes else np.zeros(0, np.int64)
    offsets = np.concatenate([np.frombuffer(ix.offsets, dtype=np.int64) for ix in indexes]) if indexes else np.zeros(0, np.int64)
    files = np.concatenate([np.full(len(ix), i, dtype=np.int32) for i, ix in enumerate(indexes)]) if indexes else np.zeros(0, np.int32)
    base = 0
    sig_parts = []
    table: list[Contribution] = []
    for ix in indexes:
        sig_parts.append(np.frombuffer(ix.sigs, dtype=np.dtype(f"i{ix.sigs.itemsize}")).astype(np.int64) + base)
        base += len(ix.table)
        table += ix.table
    sigs = np.concatenate(sig_parts) if sig_parts else np.zeros(0, np.int64)
    kept = np.flatnonzero(steps != _DROPPED)
    if len(kept) != len(steps):
        steps, offsets, files, sigs = steps[kept], offsets[kept], files[kept], sigs[kept]
    order = np.argsort(steps, kind="stable")
    ordered = steps[order]
    last = np.ones(len(ordered), dtype=bool)
    if len(ordered) > 1:
        last[:-1] = ordered[1:] != ordered[:-1]  # the last record of each step wins it
    winners = order[last]
    steps, offsets, files, sigs = steps[winners], offsets[winners], files[winners], sigs[winners]
    return RunIndex(Steps(steps), files, offsets, _history_keys(table, sigs, steps))


def _history_keys(table: Sequence[Contribution], sigs: np.ndarray[Any, Any], steps: np.ndarray[Any, Any]) -> dict[str, Any]:
    """`historyKeys` of the winning rows (as `history_keys_from_rows` would count them)."""
    counts: dict[str, Counter[str]] = {}
    if len(sigs):
        for sig, n in enumerate(np.bincount(sigs, minlength=len(table)).tolist()):
            if n:
                for name, label, count in table[sig]:
                    counts.setdefault(name, Counter())[label] += count * n
    keys = {
        name: {"typeCounts": [{"type": t, "count": k} for t, k in sorted(c.items())]}
        for name, c in sorted(counts.items())
    }
    return {"keys": keys, "lastStep": int(steps[-1]) if len(steps) else -1}
