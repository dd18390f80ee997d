"""Polars sources: `scan_history` and `scan_histories` give a `LazyFrame` with projection and step pushdown.

The public import path of `connector.engines.polars`, where the documentation lives.
"""

from .engines.polars import (
    arrow_frame,
    column_names,
    list_runs,
    polars_schema,
    scan_histories,
    scan_history,
)

__all__ = ["arrow_frame", "column_names", "list_runs", "polars_schema", "scan_histories", "scan_history"]
