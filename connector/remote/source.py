"""The W&B GraphQL API as a `HistorySource`.

**Two paths.** The service keeps the history of finished runs (and of running runs up to a
boundary) as Parquet files: `parquetHistory` answers their signed URLs plus ``liveData``, the first
step not exported yet. Steps below that boundary are read from the files (`connector.remote.parquet`:
range reads of the needed row groups and columns, or whole files into a validated cache); steps
from the boundary on are paged live. A window that straddles the boundary is cut there, so no row is
read twice and none is missed; `parquetHistory` is asked again at the start of every scan.

Live full rows come from `history(minStep, maxStep, samples)` (rows as JSON text with bare
NaN/±Infinity tokens); keyed rows (the SDK's all-keys rule) from one `sampledHistory` spec per
window; column projections from one `sampledHistory` spec per request — `_step` alone, then one spec
per column — joined on `_step`, so a projection never changes which rows come back (a projection of
more than `MAX_COLUMN_SPECS` columns reads full rows instead).

**Sampling.** The service may downsample any answer that matches more rows than ``samples``, to
*fewer* rows than ``samples`` and at random. So a page is complete only when ``samples`` is at least
the window's width (no window can hold more rows than steps), or when it is empty (a downsampling
server keeps some rows); anything else is split by the scan and fetched again.

Every answer is checked before it is used; the server is never trusted. Each of these raises
`ProtocolError` naming the run (``entity/project/run_id``), the step window and what was wrong:

* a field the query asked for is missing, or null where the protocol promises a value
  (``history``, ``sampledHistory`` and its lists), or of the wrong type;
* `historyKeys` that is not an object, a ``lastStep`` that is not an integer (a bool is not one),
  a ``keys`` object that is not ``{name: {"typeCounts": [{"type": str, ...}]}}``, or no
  ``lastStep`` at all while the run reports history lines (`check_history_keys`);
* a run object with missing or mistyped fields (`check_run_attrs`);
* more rows than ``samples`` allowed;
* a row that is not a JSON object, nests deeper or holds more keys than the limits of
  `connector.core.values`, has no integer ``_step``, a step outside the requested window
  ``[minStep, maxStep)``, or a step twice in one answer (rows out of order are sorted).

Full rows stay JSON text until the scan decodes them (`HistoryPage.decode`, in the consuming thread);
the checks run there. Anything else that goes wrong while reading an answer (a `TypeError` on a
shape nobody foresaw, a `RecursionError`, a `MemoryError`) is also a `ProtocolError`, carrying the
original exception as its cause.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson

from ..core.runpath import RunRef
from ..core.source import Page, Window
from ..core.values import (
    MAX_DEPTH,
    MAX_KEYS_PER_ROW,
    SCALAR_TYPES,
    check_row,
    flatten_row,
    parse_row,
)
from ..errors import ConnectorError, NotFoundError, ProtocolError, RequestError, RowError
from .parquet import ExportReader, Exports, ParquetCache, StorageClient, logged_row, parse_exports
from .queries import OPERATION_NAMES, document
from .transport import Transport

log = logging.getLogger(__name__)

SPECS_PER_REQUEST = 1  # the official SDK never sends more; the service's cap is not public
MAX_COLUMN_SPECS = 4  # past this many projected columns, one full-row page costs less
INT64_MAX = 2**63 - 1
_ABSENT = object()

#: Run fields of ``RunFragment`` (plus ``projectId``) and the JSON types each may have (None: null).
RUN_FIELDS: dict[str, tuple[type, ...]] = {
    "projectId": (str, int),
    "id": (str, type(None)),
    "tags": (list, type(None)),
    "name": (str,),
    "displayName": (str, type(None)),
    "sweepName": (str, type(None)),
    "state": (str, type(None)),
    "config": (str, dict, type(None)),
    "group": (str, type(None)),
    "jobType": (str, type(None)),
    "commit": (str, type(None)),
    "readOnly": (bool, type(None)),
    "createdAt": (str, type(None)),
    "heartbeatAt": (str, type(None)),
    "description": (str, type(None)),
    "notes": (str, type(None)),
    "systemMetrics": (str, dict, type(None)),
    "summaryMetrics": (str, dict, type(None)),
    "historyLineCount": (int, type(None)),
    "user": (dict, type(None)),
    "historyKeys": (dict, type(None)),
}

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _kind(value: Any) -> str:
    """A JSON-ish name for the type of `value`, for messages."""
    if value is None:
        return "null"
    return {bool: "a bool", int: "an integer", float: "a float", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)  # fmt: skip


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(value: Any) -> bool:
    """True for a JSON integer (a bool is not one)."""
    return value.__class__ is int


def check_history_keys(value: Any, path: str, *, line_count: int | None = None) -> dict[str, Any]:
    """A `historyKeys` answer, checked (`ProtocolError` naming run `path` otherwise); null is ``{}``.

    A missing ``lastStep`` (or -1) means an empty run (the SDK reads it as -1), unless the run
    reports history lines: then the answer contradicts itself and a scan would silently return
    nothing.

    >>> check_history_keys({"keys": {}, "lastStep": 4}, "e/p/r")["lastStep"]
    4
    >>> check_history_keys({"lastStep": "4"}, "e/p/r")
    Traceback (most recent call last):
    ...
    connector.errors.ProtocolError: run e/p/r: historyKeys.lastStep is a string ('4'), not an integer step
    >>> check_history_keys(None, "e/p/r", line_count=3000)
    Traceback (most recent call last):
    ...
    connector.errors.ProtocolError: run e/p/r: historyKeys has no lastStep although the run reports 3000 history lines
    """
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ProtocolError(f"run {path}: historyKeys is {_kind(value)}, not a JSON object")
    last = value.get("lastStep")
    if last is None:
        if line_count:
            raise ProtocolError(
                f"run {path}: historyKeys has no lastStep although the run reports {line_count} history lines"
            )
    elif not _is_int(last):
        raise ProtocolError(
            f"run {path}: historyKeys.lastStep is {_kind(last)} ({_shown(last)}), not an integer step"
        )
    elif not -1 <= last < INT64_MAX:
        raise ProtocolError(f"run {path}: historyKeys.lastStep {last} is not a step (-1 .. 2^63-2)")
    elif last == -1 and line_count:
        raise ProtocolError(
            f"run {path}: historyKeys.lastStep is -1 (no history) although the run reports {line_count} "
            "history lines"
        )
    keys = value.get("keys")
    if keys is None:
        return value
    if not isinstance(keys, dict):
        raise ProtocolError(f"run {path}: historyKeys.keys is {_kind(keys)}, not a JSON object")
    for name, info in keys.items():
        if info is None:
            continue
        counts = info.get("typeCounts") if isinstance(info, dict) else info
        if not isinstance(info, dict) or not isinstance(counts, list | type(None)):
            raise ProtocolError(
                f"run {path}: historyKeys.keys[{_shown(name)}] is {_kind(info)} ({_shown(info)}), "
                "not {\"typeCounts\": [...]}"
            )
        for tc in counts or ():
            if not isinstance(tc, dict) or not isinstance(tc.get("type", "nil"), str):
                raise ProtocolError(
                    f"run {path}: historyKeys.keys[{_shown(name)}].typeCounts holds {_shown(tc)}, "
                    "not {\"type\": <name>, \"count\": <n>}"
                )
    return value


def check_run_attrs(attrs: Any, path: str) -> dict[str, Any]:
    """A run object from a `Run` or `Runs` answer, checked: every `RUN_FIELDS` field present with
    its JSON type, a non-negative `historyLineCount`, a valid `historyKeys` consistent with it.

    >>> check_run_attrs({"name": "r"}, "e/p/r")
    Traceback (most recent call last):
    ...
    connector.errors.ProtocolError: run e/p/r: the run object lacks the fields projectId, id, tags, displayName, sweepName, state, config, group, jobType, commit, readOnly, createdAt, heartbeatAt, description, notes, systemMetrics, summaryMetrics, historyLineCount, user, historyKeys
    """
    if not isinstance(attrs, dict):
        raise ProtocolError(f"run {path}: the run is {_kind(attrs)}, not a JSON object")
    missing = [name for name in RUN_FIELDS if name not in attrs]
    if missing:
        raise ProtocolError(f"run {path}: the run object lacks the fields {', '.join(missing)}")
    for name, types in RUN_FIELDS.items():
        value = attrs[name]
        if value.__class__ not in types:
            raise ProtocolError(f"run {path}: the run's {name} is {_kind(value)} ({_shown(value)})")
    if attrs["tags"] is not None and not all(isinstance(t, str) for t in attrs["tags"]):
        raise ProtocolError(f"run {path}: the run's tags are not all strings ({_shown(attrs['tags'])})")
    lines = attrs["historyLineCount"]
    if lines is not None and not 0 <= lines <= INT64_MAX:
        raise ProtocolError(f"run {path}: the run's historyLineCount {lines} is negative or too large")
    check_history_keys(attrs["historyKeys"], path, line_count=lines)
    return attrs


def _where(run_path: str, window: Window | None = None) -> str:
    where = f"run {run_path}"
    return where if window is None else f"{where}, steps [{window.lo}, {window.hi})"


_UNFORESEEN = (TypeError, KeyError, AttributeError, IndexError, ValueError, RecursionError, MemoryError, OverflowError)


def _unusable(where: str, exc: BaseException) -> ProtocolError:
    return ProtocolError(f"{where}: unusable answer ({type(exc).__name__}: {_shown(str(exc), 200)})")


def check_steps(
    rows: list[dict[str, Any]], window: Window, what: str, run_path: str, prev: int | None = None
) -> list[dict[str, Any]]:
    """`rows` with integer steps in `window`, each once, ascending (sorted when they were not);
    `ProtocolError` naming `run_path` and the window otherwise.

    `prev` is the step of the row before `rows` (when checking one row of a longer answer).

    >>> check_steps([{"_step": 3}, {"_step": 2}], Window(0, 10), "history", "e/p/r")
    [{'_step': 2}, {'_step': 3}]
    >>> check_steps([{"_step": 12}], Window(0, 10), "history row 0:", "e/p/r")
    Traceback (most recent call last):
    ...
    connector.errors.ProtocolError: run e/p/r, steps [0, 10): history row 0 has _step 12, outside the requested window
    """
    lo, hi = window.lo, window.hi
    prev = lo - 1 if prev is None else prev
    ordered = True
    for i, row in enumerate(rows):
        step = row.get("_step")
        where = what if len(rows) == 1 and what.endswith(":") else f"{what} row {i}"
        if step.__class__ is not int:
            why = "no _step" if "_step" not in row else f"_step {_shown(step)} ({_kind(step)})"
            raise ProtocolError(f"{_where(run_path, window)}: {where.rstrip(':')} has {why}, not an integer step")
        if not lo <= step < hi:
            raise ProtocolError(
                f"{_where(run_path, window)}: {where.rstrip(':')} has _step {step}, outside the requested window"
            )
        if step <= prev:
            if step == prev:
                raise ProtocolError(f"{_where(run_path, window)}: {what} answered step {step} twice")
            ordered = False
        prev = step
    if not ordered:
        rows = sorted(rows, key=itemgetter("_step"))
        for a, b in zip(rows, rows[1:], strict=False):
            if a["_step"] == b["_step"]:
                raise ProtocolError(f"{_where(run_path, window)}: {what} answered step {a['_step']} twice")
    return rows


def parse_history_texts(texts: list[str], window: Window, run_path: str) -> list[dict[str, Any]]:
    """Parse and check the rows of one `history` answer for steps `window` of run `run_path` (one
    pass: this is the hot loop). Any error is a `ProtocolError` naming the run and the window. A
    plain function of its arguments, so that a worker process can run it (`HistoryPage.offload`).

    >>> parse_history_texts(['{"_step": 1, "x": NaN}', '{"_step": 0}'], Window(0, 5), "e/p/r")
    [{'_step': 0}, {'_step': 1, 'x': nan}]
    """
    try:
        return _parse_texts(texts, window, run_path)
    except ConnectorError:
        raise
    except _UNFORESEEN as exc:
        raise _unusable(_where(run_path, window), exc) from exc


def _parse_texts(texts: list[str], window: Window, run_path: str) -> list[dict[str, Any]]:
    lo, hi = window.lo, window.hi
    prev = lo - 1
    ordered = True
    rows: list[dict[str, Any]] = []
    append = rows.append
    loads, depth = orjson.loads, MAX_DEPTH
    for i, text in enumerate(texts):
        try:
            row = loads(text)
        except orjson.JSONDecodeError:  # NaN/Infinity tokens (or worse): parse_row decides
            row = None
        # parse_row's checks, inlined for the usual row (see connector.core.values.parse_row)
        if row.__class__ is not dict or (
            len(text) > 2 * depth and (text.count("{") + text.count("[") > depth or len(text) > 4 * MAX_KEYS_PER_ROW)
        ):
            try:
                row = parse_row(text)
            except RowError as exc:
                raise ProtocolError(f"{_where(run_path, window)}: history row {i}: {exc}") from exc
        step = row.get("_step")
        if step.__class__ is not int or not lo <= step < hi or step <= prev:
            if step.__class__ is int and lo <= step < prev:
                ordered = False  # out of order: sorted (and checked for repeats) below
            else:
                check_steps([row], window, f"history row {i}:", run_path, prev)
        prev = step
        append(row)
    return rows if ordered else check_steps(rows, window, "history", run_path)


def _answer_errors(
    method: Callable[Concatenate[ApiSource, _P], _R],
) -> Callable[Concatenate[ApiSource, _P], _R]:
    """Turn any unforeseen error while reading an answer into a `ProtocolError` naming the run."""

    @functools.wraps(method)
    def wrapper(self: ApiSource, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except ConnectorError:
            raise
        except _UNFORESEEN as exc:
            window = next((a for a in args if isinstance(a, Window)), None)
            raise _unusable(self._where(window), exc) from exc

    return wrapper


@dataclass(slots=True)
class HistoryPage(Page):
    """A `Page` of one `history` answer for steps `window` of run `run_path`: its JSON texts are
    parsed and checked by `parse_history_texts`, here when decoded or in a worker process
    (`offload`)."""

    window: Window | None = None
    run_path: str = ""

    def decode(self) -> list[dict[str, Any]]:
        if self.texts is not None:
            texts = self.texts
            self.rows = (
                parse_history_texts(texts, self.window, self.run_path)
                if self.window is not None
                else [parse_row(t) for t in texts]
            )
            self.texts = None
        return self.rows

    def offload(self) -> tuple[Callable[..., list[dict[str, Any]]], tuple[Any, ...]] | None:
        if self.texts is None or self.window is None:
            return None
        return parse_history_texts, (self.texts, self.window, self.run_path)


class ExportPage(Page):
    """A `Page` read from the Parquet exports: its `table` feeds Arrow batches directly, its rows
    (SDK-shaped, as logged) are built from the table only when asked for."""

    def decode(self) -> list[dict[str, Any]]:
        if self.table is not None and not self.rows and self.table.num_rows:
            self.rows = [logged_row(record) for record in self.table.to_pylist()]
        return self.rows


class ApiSource:
    """History of one run read over the GraphQL API.

    `line_count` is the run's `historyLineCount` (a planning hint, also checked against
    `historyKeys`); `running` says whether the run was running when it was loaded.
    """

    row_error = ProtocolError

    def __init__(
        self,
        transport: Transport,
        ref: RunRef,
        *,
        line_count: int | None = None,
        running: bool = False,
        read_exports: bool = True,
        cache: ParquetCache | None = None,
    ) -> None:
        self.transport = transport
        self.ref = ref
        self._line_count = line_count
        self.running = running
        self.read_exports = read_exports
        self.cache = ParquetCache() if cache is None else cache
        self._reader: ExportReader | None | bool = False  # False: not asked in this scan yet
        self._reader_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ApiSource({self.ref.path!r})"

    # -- answers --------------------------------------------------------------------------------

    def _where(self, window: Window | None = None) -> str:
        return _where(self.ref.path, window)

    def _error(self, what: str, window: Window | None = None) -> ProtocolError:
        return ProtocolError(f"{self._where(window)}: {what}")

    def _run(
        self, name: str, variables: dict[str, Any], window: Window | None = None
    ) -> tuple[dict[str, Any], bytes]:
        try:
            data, raw = self.transport.execute_raw(
                document(name), variables, OPERATION_NAMES.get(name, "")
            )
        except ProtocolError as exc:  # an answer that is not usable at all: say whose it was
            raise type(exc)(f"{self._where(window)}: {exc}", status=exc.status) from exc
        if "project" not in data:
            raise self._error("the answer has no 'project' field", window)
        project = data["project"]
        if project is None:
            raise NotFoundError(f"run {self.ref.path} not found")
        if not isinstance(project, dict) or "run" not in project:
            raise self._error(f"the answer's project is {_kind(project)} without a 'run' field", window)
        run = project["run"]
        if run is None:
            raise NotFoundError(f"run {self.ref.path} not found")
        if not isinstance(run, dict):
            raise self._error(f"the answer's run is {_kind(run)}, not a JSON object", window)
        return run, raw

    def _field(self, run: dict[str, Any], name: str, window: Window | None = None) -> Any:
        if name not in run:
            raise self._error(f"the answer has no '{name}' field", window)
        return run[name]

    def _vars(self, run_var: str = "name") -> dict[str, Any]:
        return {"entity": self.ref.entity, "project": self.ref.project, run_var: self.ref.run_id}

    # -- row checks -----------------------------------------------------------------------------

    def _check_steps(
        self, rows: list[dict[str, Any]], window: Window, what: str, prev: int | None = None
    ) -> list[dict[str, Any]]:
        return check_steps(rows, window, what, self.ref.path, prev)

    def _row_list(
        self, value: Any, window: Window | None, what: str, samples: int
    ) -> list[dict[str, Any]]:
        """One `sampledHistory` list: at most `samples` JSON objects within the limits and, with a
        `window`, with integer steps in it, each once, ascending (sorted when they were not)."""
        if not isinstance(value, list):
            raise self._error(f"{what} is {_kind(value)}, not a list of rows", window)
        if len(value) > samples:
            raise self._error(f"{what} answered {len(value)} rows for samples={samples}", window)
        leaf = SCALAR_TYPES
        lo, hi = (window.lo, window.hi) if window is not None else (0, 0)
        prev = lo - 1
        ordered = True
        for i, row in enumerate(value):  # one pass per list: the columns path runs it per column
            if row.__class__ is not dict:
                raise self._error(f"{what} row {i} is {_kind(row)}, not a JSON object", window)
            if len(row) > MAX_KEYS_PER_ROW or not leaf.issuperset(map(type, row.values())):
                try:
                    check_row(row)
                except RowError as exc:
                    raise self._error(f"{what} row {i}: {exc}", window) from exc
            if window is None:
                continue
            step: Any = row.get("_step")  # unchecked JSON: the class test below vets it
            if step.__class__ is not int or not lo <= step < hi or step <= prev:
                if step.__class__ is int and lo <= step < prev:
                    ordered = False  # out of order: sorted (and checked for repeats) below
                else:
                    self._check_steps([row], window, f"{what} row {i}:", prev)
            prev = step
        return value if ordered or window is None else self._check_steps(value, window, what)

    # -- HistorySource --------------------------------------------------------------------------

    # -- Parquet exports ------------------------------------------------------------------------

    def _ask_exports(self) -> Exports:
        run, _ = self._run("parquet_history", self._vars("runName") | {"liveKeys": ["_step"]})
        try:
            return parse_exports(self._field(run, "parquetHistory"))
        except ProtocolError as exc:
            raise self._error(str(exc)) from exc

    def _exports(self, whole_files: bool) -> ExportReader | None:
        """The reader of this run's exported files for the current scan (None: nothing exported)."""
        if not self.read_exports:
            return None
        with self._reader_lock:
            if self._reader is False:
                self._reader = None
                try:
                    exports = self._ask_exports()
                except (ProtocolError, RequestError) as exc:
                    # a server without Parquet exports (an older or self-hosted one): live pages only
                    log.info("%s: parquetHistory unusable (%s); reading live pages", self._where(), exc)
                    return None
                if exports.urls:
                    name = "_".join((self.ref.entity, self.ref.project, self.ref.run_id))
                    self._reader = ExportReader(
                        name,
                        exports,
                        StorageClient(user_agent=getattr(self.transport, "user_agent", "wandb-history-connector")),
                        self._ask_exports,
                        cache=self.cache,
                        whole_files=whole_files,
                    )
            if not isinstance(self._reader, ExportReader):
                return None
            if whole_files:  # files not opened yet are downloaded whole from now on
                self._reader.whole_files = True
            return self._reader

    def _exported(
        self,
        window: Window,
        samples: int,
        whole_files: bool,
        read: Callable[[ExportReader, int, int], list[dict[str, Any]]],
        live: Callable[[Window, int], Page],
    ) -> Page | None:
        """The page of `window` with the steps below the live boundary read from the exported files
        by `read(reader, lo, hi)` and the rest by `live` (None when no file covers the window)."""
        reader = self._exports(whole_files)
        if reader is None:
            return None
        boundary = reader.first_live if reader.first_live is not None else INT64_MAX
        if window.lo >= boundary:
            return None
        cut = min(window.hi, boundary)
        if whole_files and cut >= window.hi:  # full rows, all exported: the columnar path
            table = reader.table(window.lo, cut)
            return ExportPage([], table=table)
        rows = read(reader, window.lo, cut)
        if cut >= window.hi:
            return Page(rows, complete=True)
        tail = live(Window(cut, window.hi), min(samples, window.hi - cut))
        return Page(rows + tail.decode(), complete=tail.complete, nbytes=tail.nbytes)

    # -- HistorySource --------------------------------------------------------------------------

    @_answer_errors
    def history_keys(self) -> dict[str, Any]:
        with self._reader_lock:
            self._reader = False  # a fresh read of the run: its exports are asked again
        run, _ = self._run("run_history_keys", self._vars())
        return check_history_keys(
            self._field(run, "historyKeys"), self.ref.path, line_count=self._line_count
        )

    def line_count(self) -> int | None:
        return self._line_count

    @_answer_errors
    def exported_until(self) -> int | None:
        reader = self._exports(False)
        if reader is None:
            return None
        return reader.first_live if reader.first_live is not None else INT64_MAX

    @_answer_errors
    def fetch_rows(self, window: Window, samples: int) -> Page:
        page = self._exported(window, samples, True, lambda r, lo, hi: r.rows(lo, hi), self._live_rows)
        return page if page is not None else self._live_rows(window, samples)

    def _live_rows(self, window: Window, samples: int) -> Page:
        variables = self._vars("run") | {
            "minStep": window.lo,
            "maxStep": window.hi,
            "pageSize": samples,
        }
        run, raw = self._run("history_page", variables, window)
        texts = self._field(run, "history", window)
        if texts is None:
            raise self._error("the server answered history: null", window)
        if not isinstance(texts, list):
            raise self._error(f"history is {_kind(texts)}, not a list of rows", window)
        if len(texts) > samples:
            raise self._error(f"history answered {len(texts)} rows for samples={samples}", window)
        if not all(t.__class__ is str for t in texts):
            bad = next(i for i, t in enumerate(texts) if t.__class__ is not str)
            raise self._error(f"history row {bad} is {_kind(texts[bad])}, not JSON text", window)
        return HistoryPage(
            [],
            complete=samples >= window.width or not texts,
            nbytes=len(raw),
            texts=texts,
            window=window,
            run_path=self.ref.path,
        )

    def _spec(self, keys: Sequence[str], window: Window, samples: int) -> str:
        # maxStep is inclusive in sampledHistory specs.
        return json.dumps(
            {"keys": list(keys), "minStep": window.lo, "maxStep": window.hi - 1, "samples": samples}
        )

    def _sampled(
        self, specs: list[str], window: Window | None = None, operation: str = "sampled_history"
    ) -> tuple[list[Any], int]:
        if operation == "sampled_history_page":
            run, raw = self._run(operation, self._vars("run") | {"spec": specs[0]}, window)
        else:
            run, raw = self._run(operation, self._vars() | {"specs": specs}, window)
        result = self._field(run, "sampledHistory", window)
        if not isinstance(result, list) or len(result) != len(specs):
            count = f"{len(result)} lists" if isinstance(result, list) else _kind(result)
            raise self._error(f"sampledHistory answered {count} for {len(specs)} specs", window)
        return result, len(raw)

    @_answer_errors
    def fetch_keyed(self, window: Window, keys: Sequence[str], samples: int) -> Page:
        def read(reader: ExportReader, lo: int, hi: int) -> list[dict[str, Any]]:
            return keyed_rows(reader.rows(lo, hi, keys), keys)

        page = self._exported(window, samples, False, read, lambda w, n: self._live_keyed(w, keys, n))
        return page if page is not None else self._live_keyed(window, keys, samples)

    def _live_keyed(self, window: Window, keys: Sequence[str], samples: int) -> Page:
        wanted = list(dict.fromkeys(["_step", *keys]))
        spec = self._spec(wanted, window, samples)
        result, nbytes = self._sampled([spec], window, "sampled_history_page")
        rows = self._row_list(result[0], window, "sampledHistory", samples)
        return Page(rows, complete=samples >= window.width or not rows, nbytes=nbytes)

    @_answer_errors
    def fetch_columns(self, window: Window, columns: Sequence[str], samples: int) -> Page:
        wanted = [c for c in dict.fromkeys(columns) if c != "_step"]

        def read(reader: ExportReader, lo: int, hi: int) -> list[dict[str, Any]]:
            return column_rows(reader.rows(lo, hi, wanted), wanted)

        page = self._exported(window, samples, False, read, lambda w, n: self._live_columns(w, wanted, n))
        return page if page is not None else self._live_columns(window, wanted, samples)

    def _live_columns(self, window: Window, wanted: list[str], samples: int) -> Page:
        if len(wanted) > MAX_COLUMN_SPECS:
            page = self._live_rows(window, samples)
            return Page(column_rows(page.decode(), wanted), complete=page.complete, nbytes=page.nbytes)
        specs = [self._spec(["_step"], window, samples)]
        specs += [self._spec(["_step", c], window, samples) for c in wanted]
        lists: list[list[dict[str, Any]]] = []
        nbytes = 0
        for i in range(0, len(specs), SPECS_PER_REQUEST):
            part, size = self._sampled(specs[i : i + SPECS_PER_REQUEST], window)
            for j, lst in enumerate(part):
                what = "sampledHistory" + (f" (column {wanted[i + j - 1]!r})" if i + j else " (_step)")
                lists.append(self._row_list(lst, window, what, samples))
            nbytes += size
        complete = samples >= window.width or not lists[0]
        by_step: dict[int, dict[str, Any]] = {r["_step"]: {"_step": r["_step"]} for r in lists[0]}
        for column, lst in zip(wanted, lists[1:], strict=True):
            for raw_row in lst:
                row = by_step.get(raw_row["_step"])
                if row is None:
                    if complete:
                        raise self._error(
                            f"sampledHistory (column {column!r}) answered step {raw_row['_step']}, "
                            "which the _step spec did not", window,
                        )  # fmt: skip
                    continue
                value = raw_row.get(column, _ABSENT)
                # the usual case, a leaf under the column's own name (is_leaf, inlined): no flattening
                if value is not _ABSENT and (value.__class__ is not dict or not value or "_type" in value):
                    row[column] = value
                    continue
                try:
                    flat = flatten_row(raw_row)[0]
                except RowError as exc:
                    raise self._error(f"sampledHistory (column {column!r}): {exc}", window) from exc
                if column in flat:
                    row[column] = flat[column]
        return Page(list(by_step.values()), complete=complete, nbytes=nbytes)

    @_answer_errors
    def probe_steps(self, window: Window, samples: int) -> list[int]:
        def read(reader: ExportReader, lo: int, hi: int) -> list[dict[str, Any]]:
            table = reader.table(lo, hi, [])
            return [] if table is None else [{"_step": int(s)} for s in table.column("_step").to_pylist() if s is not None]

        def live(part: Window, n: int) -> Page:
            return Page([{"_step": s} for s in self._live_probe(part, n)])

        page = self._exported(window, samples, False, read, live)
        if page is not None:
            return [row["_step"] for row in page.rows]
        return self._live_probe(window, samples)

    def _live_probe(self, window: Window, samples: int) -> list[int]:
        lists, _ = self._sampled([self._spec(["_step"], window, samples)], window)
        rows = self._row_list(lists[0], window, "sampledHistory (_step probe)", samples)
        return [r["_step"] for r in rows]

    @_answer_errors
    def sampled_history(
        self, samples: int, keys: Sequence[str] | None, stream: str
    ) -> list[dict[str, Any]]:
        if keys:
            spec = json.dumps({"keys": list(keys), "samples": samples})
            result, _ = self._sampled([spec])
            return list(self._row_list(result[0], None, "sampledHistory", max(samples, 0)))
        name = "full_events" if stream == "system" else "full_history"
        field = "events" if stream == "system" else "history"
        run, _ = self._run(name, self._vars() | {"samples": samples})
        texts = self._field(run, field)
        if not isinstance(texts, list):
            raise self._error(f"{field} is {_kind(texts)}, not a list of rows")
        rows = []
        for i, text in enumerate(texts):
            try:
                rows.append(parse_row(text))
            except RowError as exc:
                raise self._error(f"{field} row {i}: {exc}") from exc
        return rows


def keyed_rows(rows: list[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Logged rows projected as a keyed ``sampledHistory`` answers them: the rows holding every one
    of `keys`, each key with its value (a top-level key's whole value, or the leaf a dotted key
    names), and ``_step``.

    >>> keyed_rows([{"_step": 1, "a": {"b": 2}, "c": 3}, {"_step": 2, "c": 4}], ["a.b", "c"])
    [{'_step': 1, 'a.b': 2, 'c': 3}]
    """
    out = []
    for row in rows:
        projected = {"_step": row["_step"]}
        for key in keys:
            value = _lookup(row, key)
            if value is _ABSENT or value is None:
                break
            projected[key] = value
        else:
            out.append(projected)
    return out


def column_rows(rows: list[dict[str, Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
    """Logged rows projected to ``_step`` and the flat `columns` each row holds (one row per step).

    >>> column_rows([{"_step": 1, "a": {"b": 2}, "c": 3}, {"_step": 2}], ["a.b"])
    [{'_step': 1, 'a.b': 2}, {'_step': 2}]
    """
    out = []
    for row in rows:
        flat = flatten_row(row)[0]
        out.append({"_step": row["_step"], **{c: flat[c] for c in columns if c in flat}})
    return out


def _lookup(row: dict[str, Any], key: str) -> Any:
    """A top-level key's value, else the leaf a dotted key names through nested dicts."""
    if key in row:
        return row[key]
    value: Any = row
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return _ABSENT
        value = value[part]
    return value
