-- Undo sql/duckdb_macros.sql (connector.duckdb.unregister).
DROP MACRO TABLE IF EXISTS wandb_history;
DROP MACRO TABLE IF EXISTS wandb_runs;
