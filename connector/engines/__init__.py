"""Query engines over history scans: Polars, DuckDB, Ray Data and Spark, and the pushdown they share.

Their public import paths are `connector.polars`, `connector.duckdb`, `connector.ray` and
`connector.spark`.
"""
