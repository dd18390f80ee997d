"""Read a run's Parquet history exports: the files `parquetHistory` points at, as logged rows.

The service keeps the history of finished runs (and of running runs up to a boundary) as Parquet
files on a storage host, behind signed URLs that expire. `parse_exports` checks the
`parquetHistory` answer; `ExportReader` reads the rows with ``lo <= _step < hi`` out of the files:

* only the needed row groups (``_step`` statistics against the window) and columns are read; a
  file that is not cached is read with HTTP range requests, unless the whole file is wanted, in
  which case it is downloaded once into the cache;
* the cache (`ParquetCache`, in ``$WANDB_CACHE_DIR`` or ``~/.cache/wandb``) is validated against the
  storage host's ETag and size before use, so a file replaced upstream is fetched again;
* an expired URL (``403``) makes the reader ask `parquetHistory` again, once per file;
* requests to the storage host never carry the API key (a separate HTTP session without credentials).

Layouts accepted in a file: nested dicts as structs or as dotted column names, media as structs,
lists, numbers, strings, booleans, and binary columns holding JSON text. A null cell means the key
was not logged at that step. Rows come back as they were logged: nested dicts rebuilt, nulls left
out (a key logged with an explicit ``None`` is therefore indistinguishable from an absent one).

>>> parse_exports({"parquetUrls": ["https://s/0.parquet"], "liveData": [{"_step": 20}]})
Exports(urls=['https://s/0.parquet'], first_live=20)
>>> logged_row({"_step": 1, "train.loss": 0.5, "m": None, "h": {"_type": "histogram", "bins": None}})
{'_step': 1, 'train': {'loss': 0.5}, 'h': {'_type': 'histogram'}}
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from ..core.arrow import dumps_json, flatten_structs, logged_value
from ..core.values import flatten_row, unflatten_row
from ..errors import CommError, ProtocolError

READAHEAD = 1 << 20
ROW_GROUPS_KEPT = 8
_TOTAL = re.compile(r"/(\d+)$")


@dataclass(frozen=True)
class Exports:
    """Signed URLs of a run's exported files, and the first step that is not in them (None: none)."""

    urls: list[str]
    first_live: int | None


def parse_exports(value: Any) -> Exports:
    """Check a `parquetHistory` answer (``{"parquetUrls": [...], "liveData": [...]}``).

    >>> parse_exports({"parquetUrls": [], "liveData": []})
    Exports(urls=[], first_live=None)
    >>> parse_exports({"parquetUrls": [3]})
    Traceback (most recent call last):
    ...
    connector.errors.ProtocolError: parquetHistory.parquetUrls must be a list of URL strings, got [3]
    """
    if not isinstance(value, dict):
        raise ProtocolError(f"parquetHistory must be an object, got {type(value).__name__}")
    urls = value.get("parquetUrls") or []
    if not isinstance(urls, list) or not all(isinstance(u, str) and u for u in urls):
        raise ProtocolError(f"parquetHistory.parquetUrls must be a list of URL strings, got {urls!r:.200}")
    live = value.get("liveData") or []
    if not isinstance(live, list):
        raise ProtocolError(f"parquetHistory.liveData must be a list, got {type(live).__name__}")
    steps = []
    for row in live:
        step = row.get("_step") if isinstance(row, dict) else None
        if isinstance(step, float) and step.is_integer():
            step = int(step)
        if not isinstance(step, int) or isinstance(step, bool):
            raise ProtocolError(f"parquetHistory.liveData rows need a numeric _step, got {row!r:.200}")
        steps.append(step)
    return Exports(list(urls), min(steps) if steps else None)


def logged_row(record: dict[str, Any]) -> dict[str, Any]:
    """A row read from a file, as it was logged: nulls left out, dotted names nested again, except
    a literal dotted key that sits beside the same path inside a nested dict (both were logged).

    >>> logged_row({"_step": 1, "a.b": 1.0, "a": {"b": 2.0}, "c.d": None, "t.x": 3})
    {'_step': 1, 'a': {'b': 2.0}, 't': {'x': 3}, 'a.b': 1.0}
    """
    row: dict[str, Any] = {}
    for key, value in record.items():
        if value is None:
            continue
        row[key] = logged_value(value)
    dotted = [key for key in row if "." in key]
    if not dotted:
        return row
    nested = {k: v for k, v in row.items() if v.__class__ is dict and "." not in k}
    paths = flatten_row(nested)[0].keys() if nested else ()
    literal = {key: row.pop(key) for key in dotted if key in paths}
    row = unflatten_row(row)
    row.update(literal)
    return row


class _Transient(Exception):
    """A storage answer worth another attempt (a connection error, 429, 5xx)."""


class ExpiredUrl(CommError):
    """The storage host refused a signed URL (``403``: expired or no longer valid)."""


class StorageClient:
    """HTTP reads from the storage host, without credentials.

    Connection errors and 5xx/429 answers are retried `retries` times (tenacity, short exponential
    waits); ``403`` raises `ExpiredUrl`.
    """

    def __init__(self, *, user_agent: str, timeout: float = 60.0, retries: int = 4) -> None:
        self._local = threading.local()
        self.user_agent = user_agent
        self.timeout = timeout
        self.retries = retries

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False  # never pick up .netrc credentials for the storage host
            session.headers["User-Agent"] = self.user_agent
        return session

    def _get(self, url: str, headers: dict[str, str]) -> requests.Response:
        def attempt() -> requests.Response:
            try:
                response = self._session().get(url, headers=headers, timeout=self.timeout)
            except requests.RequestException as exc:
                raise _Transient(str(exc)) from exc
            status = response.status_code
            if status == 403:
                raise ExpiredUrl(f"the storage host refused {_short(url)} (403: the signed URL expired?)")
            if status == 429 or status >= 500:
                raise _Transient(f"the storage host answered {status} for {_short(url)}")
            if status not in (200, 206):
                raise CommError(f"the storage host answered {status} for {_short(url)}")
            return response

        retrying = Retrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential(multiplier=0.1, max=2.0),
            retry=retry_if_exception_type(_Transient),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Transient as exc:
            raise CommError(f"reading {_short(url)} failed after {self.retries + 1} attempts: {exc}") from exc

    def stat(self, url: str) -> tuple[int, str | None]:
        """(size, ETag) of the file at `url`, from a one-byte range read."""
        response = self._get(url, {"Range": "bytes=0-0"})
        if response.status_code == 206:
            match = _TOTAL.search(response.headers.get("Content-Range", ""))
            if match is None:
                raise ProtocolError(f"the storage host sent no Content-Range total for {_short(url)}")
            size = int(match.group(1))
        else:
            size = len(response.content)
        return size, response.headers.get("ETag")

    def read(self, url: str, first: int, last: int) -> bytes:
        """Bytes ``first..last`` (inclusive) of the file at `url`."""
        response = self._get(url, {"Range": f"bytes={first}-{last}"})
        data = response.content
        if response.status_code == 200:  # a server that ignores Range sends the whole file
            data = data[first : last + 1]
        if len(data) != last - first + 1:
            raise ProtocolError(f"the storage host sent {len(data)} bytes for range {first}-{last} of {_short(url)}")
        return data

    def download(self, url: str) -> tuple[bytes, str | None]:
        """The whole file at `url` and its ETag."""
        response = self._get(url, {})
        return response.content, response.headers.get("ETag")


def _short(url: str) -> str:
    """A URL without its query string (signatures are not for logs)."""
    return url.split("?", 1)[0]


class RemoteFile(io.RawIOBase):
    """A read-only, seekable file over HTTP range reads, with a read-ahead buffer."""

    def __init__(
        self, client: StorageClient, url: str, size: int, renew: Callable[[], str] | None = None
    ) -> None:
        super().__init__()
        self.client, self.url, self.size, self.renew = client, url, size, renew
        self.position = 0
        self._buffer = b""
        self._buffer_at = 0
        self.requests = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self.size - self.position)
        if want <= 0:
            return 0
        start = self.position - self._buffer_at
        if not (start >= 0 and start + want <= len(self._buffer)):
            last = min(self.size, self.position + max(want, READAHEAD)) - 1
            try:
                self._buffer = self.client.read(self.url, self.position, last)
            except ExpiredUrl:
                if self.renew is None:
                    raise
                self.url = self.renew()  # a fresh signed URL for the same file, asked once
                self.renew = None
                self._buffer = self.client.read(self.url, self.position, last)
            self._buffer_at = self.position
            self.requests += 1
            start = 0
        view[:want] = self._buffer[start : start + want]
        self.position += want
        return want


class ParquetCache:
    """Downloaded export files, each beside a JSON note of its ETag and size."""

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        base = folder or os.environ.get("WANDB_CACHE_DIR") or Path.home() / ".cache" / "wandb"
        self.folder = Path(base) / "connector-history"

    def _paths(self, name: str) -> tuple[Path, Path]:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        return self.folder / f"{safe}.parquet", self.folder / f"{safe}.json"

    def lookup(self, name: str, size: int, etag: str | None) -> Path | None:
        """The cached file `name` when it has this `size` and `etag`, else None."""
        data, note = self._paths(name)
        try:
            meta = json.loads(note.read_text(encoding="utf-8"))
            if meta.get("size") == size == data.stat().st_size and meta.get("etag") == etag:
                return data
        except (OSError, ValueError, AttributeError):
            pass
        return None

    def store(self, name: str, content: bytes, etag: str | None) -> Path | None:
        """Keep `content` as `name` (atomically); None when the folder is not writable."""
        data, note = self._paths(name)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for path, body in ((data, content), (note, json.dumps({"size": len(content), "etag": etag}).encode())):
                temp = path.with_suffix(path.suffix + f".{os.getpid()}.{threading.get_ident()}.tmp")
                temp.write_bytes(body)
                os.replace(temp, path)
        except OSError:
            return None
        return data


class ExportReader:
    """Rows of one run's exported files, read by step window (thread-safe).

    `reask` fetches a fresh `parquetHistory` answer (signed URLs expire); it is called at most once
    per file. `whole_files` says that whole files will be read (a full scan): files are then
    downloaded into the cache instead of read by ranges.
    """

    def __init__(
        self,
        name: str,
        exports: Exports,
        client: StorageClient,
        reask: Callable[[], Exports],
        *,
        cache: ParquetCache | None = None,
        whole_files: bool = False,
    ) -> None:
        self.name, self.exports, self.client, self.reask = name, exports, client, reask
        self.cache, self.whole_files = cache, whole_files
        self._lock = threading.RLock()  # a range read that renews its URL runs under it too
        self._files: dict[int, pq.ParquetFile] = {}
        self._file_locks: dict[int, threading.Lock] = {}
        self._groups: OrderedDict[tuple[int, int, tuple[str, ...] | None], pa.Table] = OrderedDict()
        self._reasked: set[int] = set()

    @property
    def first_live(self) -> int | None:
        return self.exports.first_live

    def _open(self, index: int) -> pq.ParquetFile:
        with self._lock:
            opened = self._files.get(index)
            if opened is not None:
                return opened
            try:
                opened = self._open_url(index, self.exports.urls[index])
            except ExpiredUrl:
                opened = self._open_url(index, self._renew(index, self.exports.urls[index]))
            self._files[index] = opened
            return opened

    def _renew(self, index: int, stale: str) -> str:
        """A fresh URL for file `index`, whose URL `stale` was refused (`parquetHistory` is asked
        again, unless another file's renewal already brought a newer URL; once per file)."""
        if self.exports.urls[index] != stale:
            return self.exports.urls[index]
        if index in self._reasked:
            raise ExpiredUrl(f"{self.name}: exported file {index} was refused again after a fresh URL")
        self._reasked.add(index)
        fresh = self.reask()
        if len(fresh.urls) != len(self.exports.urls):
            raise ProtocolError(
                f"{self.name}: parquetHistory changed from {len(self.exports.urls)} to "
                f"{len(fresh.urls)} files during the scan"
            )
        self.exports = Exports(fresh.urls, self.exports.first_live)
        return fresh.urls[index]

    def _open_url(self, index: int, url: str) -> pq.ParquetFile:
        size, etag = self.client.stat(url)
        key = f"{self.name}_{index}"
        if self.cache is not None:
            cached = self.cache.lookup(key, size, etag)
            if cached is not None:
                return pq.ParquetFile(str(cached))
        if self.whole_files:
            content, etag_now = self.client.download(url)
            if self.cache is not None and (etag_now or etag) is not None:
                stored = self.cache.store(key, content, etag_now or etag)
                if stored is not None:
                    return pq.ParquetFile(str(stored))
            return pq.ParquetFile(pa.BufferReader(content))
        def renew() -> str:
            with self._lock:
                return self._renew(index, url)

        return pq.ParquetFile(pa.PythonFile(RemoteFile(self.client, url, size, renew), mode="r"))

    def table(self, lo: int, hi: int, keys: Sequence[str] | None = None) -> pa.Table | None:
        """Rows with ``lo <= _step < hi`` from every file (None when no file holds any).

        With `keys`, only ``_step`` and the columns holding those keys are read (a nested key is
        read from its struct column or its dotted columns, whichever the file has).
        """
        parts = []
        for index in range(len(self.exports.urls)):
            parts.extend(self._read(index, lo, hi, keys))
        parts = [flatten_structs(p) for p in parts if p.num_rows]
        if not parts:
            return None
        table = pa.concat_tables(_unified(parts), promote_options="permissive") if len(parts) > 1 else parts[0]
        return table if _ascending(table.column("_step")) else table.sort_by("_step")

    def _read(self, index: int, lo: int, hi: int, keys: Sequence[str] | None) -> list[pa.Table]:
        file = self._open(index)
        schema = file.schema_arrow
        if "_step" not in schema.names:
            raise ProtocolError(f"{self.name}: exported file {index} has no _step column")
        leaves = file.schema  # statistics are per leaf column, in the Parquet schema's order
        step_at = next(i for i in range(len(leaves)) if leaves.column(i).path == "_step")
        columns = None if keys is None else _columns_for(schema.names, keys)
        out = []
        meta = file.metadata
        for group in range(meta.num_row_groups):
            stats = meta.row_group(group).column(step_at).statistics
            if stats is not None and stats.has_min_max:
                low, high = stats.min, stats.max
                if low is not None and high is not None and (high < lo or low >= hi):
                    continue
            table = self._row_group(file, index, group, columns)
            out.append(_step_slice(table, lo, hi))
        return out

    def _row_group(self, file: pq.ParquetFile, index: int, group: int, columns: list[str] | None) -> pa.Table:
        """One decoded row group, kept for the next windows (a row group spans several pages).

        A `ParquetFile` is not safe for concurrent reads, so each file is read by one thread at a time.
        """
        key = (index, group, None if columns is None else tuple(columns))
        with self._lock:
            table = self._groups.get(key)
            if table is not None:
                self._groups.move_to_end(key)
                return table
            file_lock = self._file_locks.setdefault(index, threading.Lock())
        with file_lock:
            table = file.read_row_group(group, columns=columns)
        with self._lock:
            self._groups[key] = table
            while len(self._groups) > ROW_GROUPS_KEPT:
                self._groups.popitem(last=False)
        return table

    def rows(self, lo: int, hi: int, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The logged rows with ``lo <= _step < hi``, ascending by step (see `logged_row`)."""
        table = self.table(lo, hi, keys)
        if table is None:
            return []
        return [logged_row(record) for record in table.to_pylist()]


def _unified(parts: list[pa.Table]) -> list[pa.Table]:
    """`parts` (read from different files) with each column of one type everywhere: a column whose
    type differs between parts (a key logged as text in one file and numbers in another, media of
    two kinds) becomes binary JSON text of its logged values in every part, as exporters write mixed
    columns; numbers are never promoted (an int stays an int).

    >>> a, b = pa.table({"_step": [0], "m": ["x"]}), pa.table({"_step": [1], "m": [2.0]})
    >>> [p.column("m").to_pylist() for p in _unified([a, b])]
    [[b'"x"'], [b'2.0']]
    """
    types: dict[str, set[pa.DataType]] = {}
    for part in parts:
        for field in part.schema:
            if not pa.types.is_null(field.type):
                types.setdefault(field.name, set()).add(field.type)
    mixed = {name for name, seen in types.items() if len(seen) > 1}
    if not mixed:
        return parts
    out = []
    for part in parts:
        for name in mixed & set(part.column_names):
            index = part.column_names.index(name)
            texts = [None if v is None else dumps_json(logged_value(v)).encode() for v in part.column(index).to_pylist()]
            part = part.set_column(index, name, pa.array(texts, pa.binary()))
        out.append(part)
    return out


def _ascending(steps: pa.ChunkedArray[Any]) -> bool:
    """Whether a ``_step`` column is strictly ascending without nulls (the exporter's usual order).

    >>> _ascending(pa.chunked_array([[1, 2], [5]])), _ascending(pa.chunked_array([[1, 3, 2]]))
    (True, False)
    """
    if steps.null_count:
        return False
    values = steps.to_numpy()
    return bool((values[1:] > values[:-1]).all())


def _step_slice(table: pa.Table, lo: int, hi: int) -> pa.Table:
    """The rows of `table` with ``lo <= _step < hi``: a zero-copy slice when the steps ascend
    (found by binary search), a filter otherwise.

    >>> t = pa.table({"_step": [0, 2, 4, 6]})
    >>> _step_slice(t, 1, 5)["_step"].to_pylist(), _step_slice(t.take([3, 0, 2]), 1, 7)["_step"].to_pylist()
    ([2, 4], [6, 4])
    """
    steps = table.column("_step")
    if _ascending(steps):
        values = steps.to_numpy()
        start, stop = (int(i) for i in np.searchsorted(values, [lo, hi]))
        return table.slice(start, stop - start)
    mask = pc.and_(pc.greater_equal(steps, pa.scalar(lo, pa.int64())), pc.less(steps, pa.scalar(hi, pa.int64())))
    return table.filter(mask)


def _columns_for(names: Sequence[str], keys: Sequence[str]) -> list[str]:
    """The file columns that hold `keys` (flat names), ``_step`` first.

    >>> _columns_for(["_step", "train", "x.y", "x.z", "loss"], ["train.loss", "x", "loss", "nope"])
    ['_step', 'train', 'x.y', 'x.z', 'loss']
    """
    wanted = ["_step"]
    for key in keys:
        parts = key.split(".")
        hits = [key] if key in names else []
        hits += [n for n in names if n.startswith(key + ".")]
        hits += [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in names]
        wanted += [h for h in hits if h not in wanted]
    return [n for n in names if n in wanted]
