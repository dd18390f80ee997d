"""How unkind the emulator is: the service behaviours a client must survive, on by default.

`ServiceModel` gathers them and `Emulator` uses `ServiceModel()` unless told otherwise;
`Emulator(service=ServiceModel.friendly())` turns them all off for tests that need exact, even
answers.

* ``parquet_history``: ``"all"`` (default) keeps the history of finished, failed and crashed runs in
  Parquet files served by the storage host, and of running runs up to a boundary (the last
  `live_share` of their rows stay live); ``"finished"`` exports only runs that are not running;
  ``"none"`` answers ``parquetUrls: []`` with ``liveData`` from the first step.
* ``sampling``: ``"random"`` (default) answers a request that matches more rows than ``samples``
  with a seeded random subset whose size may be **below** ``samples`` (first and last rows are not
  guaranteed); ``"even"`` keeps exactly ``samples`` evenly spaced rows.
* ``limits``: requests beyond what the official SDK ever sends are refused with HTTP 400 and
  ``{"errors": [{"message": ...}]}``, which the SDK does not retry (`Limits`).
* ``stale_line_count``: ``historyLineCount`` of a running run lags its real count by this share of
  rows (at least one row when the run has any).

>>> model = ServiceModel()
>>> len(model.sample_positions(100, 10, "e/p/r", 0, 100)) <= 10
True
>>> model.sample_positions(5, 10, "e/p/r", 0, 5)
range(0, 5)
>>> ServiceModel.friendly().sample_positions(10, 4, "e/p/r", 0, 10)
[0, 3, 6, 9]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import ConfigurationError
from .storage import DEFAULT_URL_TTL

PARQUET_MODES = ("all", "finished", "none")
SAMPLING_MODES = ("random", "even")
ROWS_PER_FILE = 100_000


class LimitExceeded(ValueError):
    """A request beyond the service's limits (answered with HTTP 400)."""


@dataclass(frozen=True)
class Limits:
    """Caps on what one request may ask; the defaults are what the official SDK never exceeds."""

    max_specs: int = 1
    """``sampledHistory`` specs per call."""
    max_samples: int = 10_000
    """``samples`` per ``sampledHistory`` spec and per ``history`` call."""
    max_runs_page: int = 1_000
    """``first`` of a ``runs`` page."""

    def check_specs(self, count: int) -> None:
        if count > self.max_specs:
            raise LimitExceeded(f"sampledHistory accepts at most {self.max_specs} specs per request, got {count}")

    def check_samples(self, field_name: str, samples: int | None) -> None:
        if samples is None or samples > self.max_samples:
            shown = "no samples argument" if samples is None else f"samples={samples}"
            raise LimitExceeded(f"{field_name}: samples must be at most {self.max_samples}, got {shown}")

    def check_first(self, first: int | None) -> None:
        if first is not None and first > self.max_runs_page:
            raise LimitExceeded(f"runs: first must be at most {self.max_runs_page}, got {first}")


@dataclass(frozen=True)
class ServiceModel:
    """The service behaviours the emulator reproduces (see the module docstring)."""

    parquet_history: str = "all"
    sampling: str = "random"
    limits: Limits | None = field(default_factory=Limits)
    stale_line_count: float = 0.05
    parquet_url_ttl: float = DEFAULT_URL_TTL
    rows_per_file: int = ROWS_PER_FILE
    live_share: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.parquet_history not in PARQUET_MODES:
            raise ValueError(f"parquet_history must be one of {', '.join(PARQUET_MODES)}, got {self.parquet_history!r}")
        if self.sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLING_MODES)}, got {self.sampling!r}")
        if not 0 <= self.stale_line_count < 1 or not 0 <= self.live_share <= 1:
            raise ValueError("stale_line_count must be in [0, 1) and live_share in [0, 1]")
        if self.rows_per_file < 1 or self.parquet_url_ttl <= 0:
            raise ValueError("rows_per_file must be >= 1 and parquet_url_ttl > 0")

    @classmethod
    def friendly(cls) -> ServiceModel:
        """No Parquet exports, even sampling, no limits, exact line counts."""
        return cls(parquet_history="none", sampling="even", limits=None, stale_line_count=0.0)

    # -- behaviours ----------------------------------------------------------------------------

    def sample_positions(self, n: int, samples: int | None, *salt: object) -> Sequence[int]:
        """Positions kept out of `n` matching rows when at most `samples` may be returned.

        Random sampling is seeded by `salt` (the run and the request), so a repeated request gets
        the same answer.
        """
        if samples is None or n <= samples:
            return range(n)
        if samples <= 0:
            return []
        if self.sampling == "even":
            return [0] if samples == 1 else [round(j * (n - 1) / (samples - 1)) for j in range(samples)]
        digest = hashlib.sha256(repr((self.seed, *salt, n, samples)).encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        size = rng.randint(max(1, math.ceil(samples * 0.6)), samples)
        return sorted(rng.sample(range(n), size))

    def exported(self, state: str) -> bool:
        """Whether a run in `state` has Parquet exports at all."""
        if self.parquet_history == "none":
            return False
        return self.parquet_history == "all" or state != "running"

    def export_boundary(self, rows: int, state: str) -> int:
        """How many leading rows of a run are in Parquet files (the rest are live)."""
        if not self.exported(state) or rows == 0:
            return 0
        if state != "running":
            return rows
        return rows - max(1, math.ceil(rows * self.live_share))

    def line_count(self, rows: int, state: str) -> int:
        """The ``historyLineCount`` answered for a run of `rows` rows."""
        if state != "running" or rows == 0 or self.stale_line_count == 0:
            return rows
        return rows - max(1, math.ceil(rows * self.stale_line_count))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `ServiceModel` options of ``wandb-history serve`` and ``python -m connector.emulator``."""
    group = parser.add_argument_group("service fidelity (all on by default)")
    group.add_argument(
        "--parquet-history",
        choices=PARQUET_MODES,
        default="all",
        help="which runs keep their history in Parquet files on the storage host (default: all)",
    )
    group.add_argument(
        "--parquet-url-ttl",
        type=float,
        default=DEFAULT_URL_TTL,
        metavar="SECONDS",
        help="lifetime of the signed Parquet URLs (default: one hour)",
    )
    group.add_argument(
        "--sampling",
        choices=SAMPLING_MODES,
        default="random",
        help="how an answer is downsampled to `samples` rows (random: possibly fewer; default)",
    )
    group.add_argument(
        "--no-limits", action="store_true", help="accept requests the official SDK never sends"
    )
    group.add_argument(
        "--stale-line-count",
        type=float,
        default=0.05,
        metavar="SHARE",
        help="historyLineCount of a running run lags by this share of its rows (default: 0.05; 0: exact)",
    )


def from_arguments(args: argparse.Namespace) -> ServiceModel:
    """The `ServiceModel` that parsed `add_arguments` options describe (`ConfigurationError` when
    invalid)."""
    try:
        return ServiceModel(
            parquet_history=args.parquet_history,
            parquet_url_ttl=args.parquet_url_ttl,
            sampling=args.sampling,
            limits=None if args.no_limits else Limits(),
            stale_line_count=args.stale_line_count,
        )
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
