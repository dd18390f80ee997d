"""The seam every part speaks to: a source yields pages of history rows for (run, step window, keys).

Two sources implement it: `connector.remote.source.ApiSource` (the W&B GraphQL API) and
`connector.local.source.LocalSource` (`.wandb` files and other in-memory runs). Scans, the Polars and
DuckDB adapters and the exporter only use this protocol.

Windows are half-open: ``Window(lo, hi)`` holds steps ``lo <= _step < hi``.

>>> Window(0, 1000).width
1000
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

from ..errors import ConnectorError
from .runpath import RunRef
from .values import parse_row


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open step range ``[lo, hi)``."""

    lo: int
    hi: int

    @property
    def width(self) -> int:
        return self.hi - self.lo

    def halves(self) -> tuple[Window, Window]:
        mid = self.lo + self.width // 2
        return Window(self.lo, mid), Window(mid, self.hi)


@dataclass(slots=True)
class Page:
    """Rows of one window, ascending by `_step`.

    `complete` is False when the server may have downsampled the window (it returned exactly as many
    rows as it was allowed to); the scan then splits the window and fetches the halves.
    `shared` is True when the row objects belong to the source: a caller handing rows to users
    copies them first. A page may arrive with its rows still as JSON `texts`; `decode()` parses
    them in the caller's thread, so fetching threads hold the GIL as little as possible.

    >>> page = Page([], texts=['{"_step": 1, "x": NaN}'])
    >>> len(page), page.decode()
    (1, [{'_step': 1, 'x': nan}])
    """

    rows: list[dict[str, Any]]
    complete: bool = True
    nbytes: int = 0
    shared: bool = False
    texts: list[str] | None = None
    table: pa.Table | None = None
    """The page as a columnar table (``_step`` and key columns), when the source read one: the
    scan then builds its batch with `SchemaPlan.conform` and no Python row at all."""

    def __len__(self) -> int:
        if self.table is not None:
            return self.table.num_rows
        return len(self.texts) if self.texts is not None else len(self.rows)

    def decode(self) -> list[dict[str, Any]]:
        """The rows, parsing the JSON texts first if the page still holds them."""
        if self.texts is not None:
            self.rows = [parse_row(text) for text in self.texts]
            self.texts = None
        return self.rows

    def offload(self) -> tuple[Callable[..., list[dict[str, Any]]], tuple[Any, ...]] | None:
        """``(function, args)`` that gives `decode()`'s rows in another process (both picklable),
        or None when this page must be decoded here (`connector.core.decode`)."""
        return None


class HistorySource(Protocol):
    """What a scan reads from."""

    ref: RunRef

    @property
    def row_error(self) -> type[ConnectorError]:
        """The error raised for rows this source served that cannot be used (`ProtocolError` for the
        W&B API, whose answers broke the protocol; `RowError` for data read from elsewhere)."""
        ...

    def history_keys(self) -> dict[str, Any]:
        """A fresh `historyKeys` object (``{"keys": {...}, "lastStep": N}``)."""
        ...

    def line_count(self) -> int | None:
        """How many history rows the run holds (a planning hint; may be stale)."""
        ...

    def exported_until(self) -> int | None:
        """Steps below this are read from columnar files (the service's exports), where no server
        sampling applies and windows may be of any width; None when nothing is."""
        ...

    def fetch_rows(self, window: Window, samples: int) -> Page:
        """Full rows in the window (at most `samples`)."""
        ...

    def fetch_keyed(self, window: Window, keys: Sequence[str], samples: int) -> Page:
        """Rows holding every one of `keys` (the SDK's all-keys rule), projected to `_step` + keys."""
        ...

    def fetch_columns(self, window: Window, columns: Sequence[str], samples: int) -> Page:
        """One row per step in the window, projected to `_step` + columns (flat names)."""
        ...

    def probe_steps(self, window: Window, samples: int) -> list[int]:
        """Steps holding a row in the window: all of them, or an even sample of `samples`."""
        ...

    def sampled_history(
        self, samples: int, keys: Sequence[str] | None, stream: str
    ) -> list[dict[str, Any]]:
        """`Run.history()`: the whole run downsampled by the server."""
        ...
