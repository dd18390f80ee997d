"""Options that several sub-commands share, each defined once.

>>> import argparse
>>> p = argparse.ArgumentParser()
>>> add_timeout(p)
>>> p.parse_args([]).timeout, p.parse_args(["--timeout", "5"]).timeout
(120.0, 5.0)
"""

from __future__ import annotations

import argparse

#: How long a command keeps retrying an unreachable or failing W&B API (``--timeout``, seconds).
API_TIMEOUT = 120.0


def add_timeout(p: argparse.ArgumentParser) -> None:
    """Add ``--timeout SECONDS`` (default `API_TIMEOUT`): the retry deadline of every API request."""
    p.add_argument(
        "--timeout",
        type=float,
        default=API_TIMEOUT,
        metavar="SECONDS",
        help="how long to keep retrying an unreachable or failing W&B API before giving up "
        "(exit 3; default %(default)g)",
    )
