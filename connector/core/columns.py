"""Keys → columns: which flat columns a requested key names, the error for a key no run logged, the
leading columns of a multi-run table and the column that holds a key in a destination.

Every entry point that takes ``keys`` (`Run.scan`, the Polars and DuckDB engines, Ray and Spark, the
exporter's ``--keys``) resolves them here, against the `historyKeys` of the runs (the flattened keys a
run logged, ``{"keys": {"train.loss": {...}, ...}, "lastStep": N}``):

* a key the run logged is its own column (``loss``, ``train.loss``), also when it has leaves;
* a nested parent the run did not log itself (``train``) selects its dotted leaves (``train.acc``,
  ``train.loss``) in the order of `historyKeys`; where keys are values rather than columns (the
  long layout of ``wandb_history`` in DuckDB) a parent is not expanded (``nested=False``);
* ``_step`` is always a column (every row has it) and asking for it selects nothing more;
* any other key is unknown. Over one run it is an error; over many runs it is skipped in the runs
  that lack it and an error only when no run logged it. The error is always `unknown_keys_error`:
  ``unknown key 'los' in run e/p/r; did you mean 'loss'?`` (leaves first for a nested parent, else
  the close matches; when a key has no suggestion, some logged keys).

**Column names** (`column_for_key`, the one rule of the exporter's destinations and the Ray and
Spark readers): a key is its own column name unless it is empty, holds a control character (NUL
included), equals one of `RESERVED_COLUMNS` in any letter case, ends like a mapped name (``~`` and 8
hex digits), or is longer than the engine allows (PostgreSQL: 63 bytes). Such a key gets the column
``<its printable prefix>~<first 8 hex digits of sha1(key)>``; `fold_collisions` gives the same
mapped form to a name that equals a taken one but for letter case (engines and readers that fold
case), so two keys never share a column and a key is never fatal. The ``{column: key}`` map of the
renamed columns travels in the Arrow schema metadata under `KEYS_META`.

>>> hk = {"keys": {"loss": {}, "train.acc": {}, "train.loss": {}}, "lastStep": 9}
>>> select_columns(hk, ["_step", "train", "loss"], run_path="e/p/r")
['train.acc', 'train.loss', 'loss']
>>> select_columns(hk, ["los"], run_path="e/p/r")
Traceback (most recent call last):
...
connector.errors.ConfigurationError: unknown key 'los' in run e/p/r; did you mean 'loss'?
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Literal

from ..errors import ConfigurationError
from .arrow import EXTRA_COLUMN, INT, JSON, STEP_COLUMN, SchemaPlan

#: The identity columns of a table of many runs, in their order.
RUN_COLUMNS = ("entity", "project", "run_id")
#: The leading columns of every multi-run history table: identity, then ``_step``.
LEADING_COLUMNS = (*RUN_COLUMNS, STEP_COLUMN)
#: Names a key's column never takes, in any letter case (`column_for_key`).
RESERVED_COLUMNS = (*LEADING_COLUMNS, EXTRA_COLUMN)
#: The Arrow schema metadata key of the ``{column: key}`` map of renamed columns (JSON).
KEYS_META = b"wandb.keys"

#: Suggestions per unknown key, logged keys listed when a key has none.
SUGGESTIONS, SAMPLE_KEYS = 3, 8
_LEAF_SUGGESTIONS = 5
_MAPPED_TAIL = re.compile(r"~[0-9a-f]{8}$")
_RESERVED_LOWER = frozenset(RESERVED_COLUMNS)

Unknown = Literal["error", "skip", "keep"]


# -- keys -----------------------------------------------------------------------------------------


def logged_keys(history_keys: Mapping[str, Any] | None) -> list[str]:
    """The flattened keys a run logged, in `historyKeys` order.

    >>> logged_keys({"keys": {"loss": {}, "train.acc": {}}}), logged_keys(None)
    (['loss', 'train.acc'], [])
    """
    return list(((history_keys or {}).get("keys") or {}).keys())


def last_step(history_keys: Mapping[str, Any] | None) -> int:
    """The run's last step from its `historyKeys`, -1 when it has none (an integer, never a bool).

    >>> last_step({"lastStep": 41}), last_step({}), last_step({"lastStep": True})
    (41, -1, -1)
    """
    last = (history_keys or {}).get("lastStep")
    return last if isinstance(last, int) and not isinstance(last, bool) else -1


def check_key_list(keys: Any, what: str = "keys") -> list[str]:
    """`keys` as a list, or `ConfigurationError` when it is not a list of strings.

    >>> check_key_list(("loss", "acc"))
    ['loss', 'acc']
    >>> check_key_list("loss")
    Traceback (most recent call last):
    ...
    connector.errors.ConfigurationError: keys must be a list of strings, got 'loss'
    """
    if isinstance(keys, str | bytes) or not isinstance(keys, Iterable):
        raise ConfigurationError(f"{what} must be a list of strings, got {keys!r}")
    listed = list(keys)
    if not all(isinstance(k, str) for k in listed):
        raise ConfigurationError(f"{what} must be a list of strings, got {keys!r}")
    return listed


def resolve_key(key: str, logged: Collection[str], *, nested: bool = True) -> list[str] | None:
    """The value columns `key` names in a run that logged `logged` (rules in the module doc):
    ``[]`` for ``_step``, None when the run does not know the key.

    >>> logged = ["loss", "train.acc", "train.loss"]
    >>> resolve_key("loss", logged), resolve_key("train", logged), resolve_key("_step", logged)
    (['loss'], ['train.acc', 'train.loss'], [])
    >>> resolve_key("train", logged, nested=False), resolve_key("nope", logged)
    (None, None)
    """
    if key == STEP_COLUMN:
        return []
    if key in logged:
        return [key]
    if nested:
        prefix = key + "."
        leaves = [k for k in logged if k.startswith(prefix)]
        if leaves:
            return leaves
    return None


def select_columns(
    history_keys: Mapping[str, Any] | None,
    keys: Sequence[str] | None,
    *,
    run_path: str = "",
    unknown: Unknown = "error",
) -> list[str] | None:
    """The value columns `keys` select in one run (``_step`` aside, each once, in request order);
    None when `keys` is None (every column).

    A key the run did not log raises `unknown_keys_error` naming `run_path` (``unknown="error"``,
    every unknown key of the request named at once), is left out (``"skip"``: a run of many that
    lacks it), or is kept as a column of its own (``"keep"``: the SDK's all-keys rule, which then
    yields no rows).

    >>> hk = {"keys": {"a": {}, "t.x": {}}}
    >>> select_columns(hk, ["t", "zz"], unknown="skip"), select_columns(hk, ["a", "zz"], unknown="keep")
    (['t.x'], ['a', 'zz'])
    >>> select_columns(hk, None) is None
    True
    """
    if keys is None:
        return None
    keys = check_key_list(keys)
    logged = logged_keys(history_keys)
    known = dict.fromkeys(logged)  # ordered, with set-speed membership
    out: list[str] = []
    missing: list[str] = []
    for key in keys:
        columns = resolve_key(key, known)
        if columns is None:
            missing.append(key)
            if unknown == "keep":
                out.append(key)
            continue
        out += columns
    if missing and unknown == "error":
        raise unknown_keys_error(missing, logged, [run_path])
    return list(dict.fromkeys(out))


def unknown_keys(
    keys: Sequence[str], key_sets: Iterable[Mapping[str, Any] | None], *, nested: bool = True
) -> list[str]:
    """The keys of `keys` that no run logged, given each run's `historyKeys` (a nested parent counts
    as logged when a run logged a leaf, unless ``nested=False``), each once, in request order.

    >>> runs = [{"keys": {"loss": {}}}, {"keys": {"t.a": {}}}]
    >>> unknown_keys(["loss", "t", "los", "_step"], runs), unknown_keys(["t"], runs, nested=False)
    (['los'], ['t'])
    """
    known: dict[str, None] = {}
    for history_keys in key_sets:
        known.update(dict.fromkeys(logged_keys(history_keys)))
    return [k for k in dict.fromkeys(keys) if resolve_key(k, known, nested=nested) is None]


def check_keys(
    keys: Sequence[str] | None,
    runs: Mapping[str, Mapping[str, Any] | None],
    *,
    nested: bool = True,
    hint: str = "",
) -> None:
    """Raise `unknown_keys_error` when a key of `keys` was logged by none of `runs` (``{run path:
    historyKeys}``). Nothing to check without keys or runs.

    >>> check_keys(["loss"], {"e/p/a": {"keys": {"loss": {}}}, "e/p/b": {"keys": {}}})
    >>> check_keys(["los"], {"e/p/a": {"keys": {"loss": {}}}, "e/p/b": {"keys": {}}})
    Traceback (most recent call last):
    ...
    connector.errors.ConfigurationError: unknown key 'los': none of the 2 runs logged it; did you mean 'loss'?
    """
    if not keys or not runs:
        return
    missing = unknown_keys(keys, runs.values(), nested=nested)
    if missing:
        logged: dict[str, None] = {}
        for history_keys in runs.values():
            logged.update(dict.fromkeys(logged_keys(history_keys)))
        raise unknown_keys_error(missing, list(logged), list(runs), hint=hint)


def suggestions(key: str, logged: Iterable[str], n: int = SUGGESTIONS) -> list[str]:
    """What an unknown `key` may have meant: its leaves (sorted) when it is a nested parent, else
    the logged keys closest to it.

    >>> suggestions("los", ["loss", "acc"]), suggestions("train", ["train.a", "train.b", "x"])
    (['loss'], ['train.a', 'train.b'])
    """
    logged = list(logged)
    if not isinstance(key, str):
        return []
    leaves = sorted(k for k in logged if k.startswith(key + "."))
    if leaves:
        return leaves[:_LEAF_SUGGESTIONS]
    return difflib.get_close_matches(key, sorted(logged), n=n, cutoff=0.6)


def did_you_mean(word: str, choices: Iterable[str], n: int = SUGGESTIONS) -> str:
    """``"; did you mean 'loss'?"`` (or ``""``), for error messages about a mistyped name.

    >>> did_you_mean("los", {"loss", "acc"}), did_you_mean("zzz", {"loss"})
    ("; did you mean 'loss'?", '')
    """
    close = difflib.get_close_matches(word, sorted(choices), n=n, cutoff=0.6)
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?" if close else ""


def unknown_keys_error(
    keys: Sequence[Any], logged: Iterable[str], run_paths: Sequence[str], *, hint: str = ""
) -> ConfigurationError:
    """The one error for requested keys the runs never logged: it names every unknown key, the run
    (or how many runs), and what each key may have meant (`suggestions`); when a key has no
    suggestion, some logged keys (system keys like ``_runtime`` last). `hint` ends the message.

    >>> print(unknown_keys_error(["los"], ["loss", "acc"], ["e/p/r"]))
    unknown key 'los' in run e/p/r; did you mean 'loss'?
    >>> print(unknown_keys_error(["train", "zz"], ["train.a", "acc", "_runtime"], ["e/p/a", "e/p/b"]))
    unknown keys 'train', 'zz': none of the 2 runs logged them; did you mean 'train.a' for 'train'? (logged keys include acc, train.a, _runtime)
    >>> print(unknown_keys_error(["zz"], ["acc"], ["e/p/r"], hint="pass --allow-missing to export it anyway"))
    unknown key 'zz' in run e/p/r (logged keys include acc; pass --allow-missing to export it anyway)
    """
    keys = list(dict.fromkeys(keys))
    logged = list(logged)
    names = ", ".join(repr(k) for k in keys)
    head = f"unknown key {names}" if len(keys) == 1 else f"unknown keys {names}"
    if len(run_paths) == 1:
        head += f" in run {run_paths[0]}"
    else:
        head += f": none of the {len(run_paths)} runs logged {'it' if len(keys) == 1 else 'them'}"
    found = {k: suggestions(k, logged) for k in keys}
    meant = [(k, s) for k, s in found.items() if s]
    if len(keys) == 1 and meant:
        head += "; did you mean " + " or ".join(repr(c) for c in meant[0][1]) + "?"
    elif meant:
        head += "; did you mean " + ", ".join(
            " or ".join(repr(c) for c in s) + f" for {k!r}" for k, s in meant
        ) + "?"
    notes = []
    if len(meant) < len(keys) and logged:
        ordered = sorted(logged, key=lambda k: (k.startswith("_"), k))
        notes.append("logged keys include " + ", ".join(ordered[:SAMPLE_KEYS]))
    if hint:
        notes.append(hint)
    if notes:
        head += " (" + "; ".join(notes) + ")"
    return ConfigurationError(head)


# -- columns of many runs -------------------------------------------------------------------------


def union_kinds(kind_maps: Iterable[Mapping[str, str]]) -> tuple[tuple[str, str], ...]:
    """The ``(column, kind)`` pairs of a table of many runs, given each run's ``{column: kind}``:
    every run's columns in the order of `connector.core.arrow` (``_step`` first, ``_extra`` left
    out); a column whose kind differs between runs is JSON text.

    >>> union_kinds([{"_step": "int", "b": "float", "a": "float"}, {"a": "string"}])
    (('_step', 'int'), ('a', 'json'), ('b', 'float'))
    """
    union: dict[str, str] = {}
    for kinds in kind_maps:
        for name, kind in kinds.items():
            union[name] = kind if union.get(name, kind) == kind else JSON
    ordered = SchemaPlan.from_history_keys({"keys": dict.fromkeys(union)}).kinds[1:]
    return ((STEP_COLUMN, INT), *((name, union[name]) for name, _ in ordered))


# -- column names ---------------------------------------------------------------------------------


def column_for_key(key: str, max_bytes: int | None = None, *, force: bool = False) -> str:
    r"""The column that holds `key` (rules in the module doc); `force` always gives the mapped form.

    >>> column_for_key("loss"), column_for_key("train.acc")
    ('loss', 'train.acc')
    >>> column_for_key("entity"), column_for_key("RUN_ID"), column_for_key(""), column_for_key("a\x00b")
    ('entity~e7116313', 'RUN_ID~86df75ea', '~da39a3ee', 'ab~4a3dec2d')
    >>> column_for_key("x~0123abcd"), len(column_for_key("x" * 80, max_bytes=63).encode())
    ('x~0123abcd~7268dde1', 63)
    """
    raw = key.encode("utf-8", "surrogatepass")
    printable = "".join(c for c in key if c.isprintable())
    plain = (
        bool(key)
        and printable == key
        and key.lower() not in _RESERVED_LOWER
        and not _MAPPED_TAIL.search(key)
        and (max_bytes is None or len(raw) <= max_bytes)
    )
    if plain and not force:
        return key
    digest = hashlib.sha1(raw).hexdigest()[:8]
    prefix = printable.encode()
    if max_bytes is not None:
        prefix = prefix[: max_bytes - 9]
    return prefix.decode("utf-8", "ignore") + "~" + digest


def fold_collisions(names: list[str], keys: Mapping[str, str], existing: Collection[str]) -> dict[str, str]:
    """``{name: new name}`` for the `names` whose case-folded form is already taken (by `existing`
    columns or an earlier name): they get the mapped form of their key (`keys` maps a renamed
    column to its key), so two keys never share a column in an engine that folds case.

    >>> fold_collisions(["loss", "acc"], {}, ["entity", "Loss"])
    {'loss': 'loss~c9279f09'}
    """
    taken = {e.casefold(): e for e in existing}
    out: dict[str, str] = {}
    for name in names:
        folded = name.casefold()
        if folded in taken and taken[folded] != name:
            out[name] = column_for_key(keys.get(name, name), force=True)
        else:
            taken.setdefault(folded, name)
    return out


def key_columns(keys: Iterable[str], reserved: Collection[str] = RESERVED_COLUMNS) -> dict[str, str]:
    """``{key: column}`` for the `keys` that cannot be their own column (`column_for_key`), unique
    when folded to lower case and apart from the `reserved` names (Spark and most lakehouse
    readers fold case).

    >>> key_columns(["loss", "Entity", "LOSS"])
    {'Entity': 'Entity~c7fb3177', 'LOSS': 'LOSS~72ab4b12'}
    """
    plain = {key: column_for_key(key) for key in keys}
    folded = fold_collisions(list(plain.values()), {c: k for k, c in plain.items()}, reserved)
    named = {key: folded.get(column, column) for key, column in plain.items()}
    return {key: column for key, column in named.items() if column != key}
