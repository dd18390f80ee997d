-- Undo sql/duckdb_macros.sql (connector.duckdb.unregister): the macros are temporary.
DROP MACRO TABLE IF EXISTS temp.wandb_history;
DROP MACRO TABLE IF EXISTS temp.wandb_runs;
DROP MACRO TABLE IF EXISTS temp.wandb_files;
DROP MACRO TABLE IF EXISTS temp.wandb_artifacts;
