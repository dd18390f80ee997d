"""DuckDB table functions: `register(con)` adds `wandb_history`, `wandb_runs`, `wandb_files`,
`wandb_artifacts` and friends.

The public import path of `connector.engines.duckdb`, where the documentation lives.
"""

from .engines.duckdb import register, register_run, register_runs, unregister

__all__ = ["register", "register_run", "register_runs", "unregister"]
