"""Export destinations, told apart by the form of ``--to`` (see `open_sink`)."""

from __future__ import annotations

from .base import Interrupted, Sink, SqlSink
from .dest import Destination, parse_destination

__all__ = ["Destination", "Interrupted", "Sink", "SqlSink", "parse_destination"]
