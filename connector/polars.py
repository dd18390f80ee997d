"""Polars sources: `scan_history` and `scan_histories` give a `LazyFrame` with projection and step pushdown;
`scan_files` and `scan_artifacts` list runs' files and artifacts as LazyFrames.

The public import path of `connector.engines.polars`, where the documentation lives.
"""

from .engines.polars import (
    arrow_frame,
    column_names,
    list_runs,
    polars_schema,
    scan_artifacts,
    scan_files,
    scan_histories,
    scan_history,
)

__all__ = [
    "arrow_frame",
    "column_names",
    "list_runs",
    "polars_schema",
    "scan_artifacts",
    "scan_files",
    "scan_histories",
    "scan_history",
]
