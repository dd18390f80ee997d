-- DuckDB table macros over the views registered by connector.duckdb.register(con).
--
-- DuckDB (2.0) has no Python table functions. connector.duckdb registers two Polars IO-source
-- LazyFrames as views, __wandb_history_long and __wandb_runs; DuckDB pushes projections and the
-- macros' constant filters into them (run path, key IN (...), _step bounds, samples), and the
-- Python side turns those into exactly the GraphQL requests needed.
--
-- Hidden columns of the backing views (never in the macros' output):
--   run_path      the run as the caller named it ('entity/project/run_id', a URL, ...)
--   _samples      0 = full history, N > 0 = Run.history(samples = N)
--   _project      'entity/project' for wandb_runs
--   _filters      MongoDB-style run filters as JSON text ('{}' = none)
--
-- Step windows: min_step inclusive, max_step exclusive, as everywhere in the connector.
-- Every step has one row with key = '_step' (its value columns are NULL), so
-- count(DISTINCT _step) counts steps whatever keys are selected, and aggregates over value
-- are not disturbed.

CREATE OR REPLACE MACRO wandb_history(
    run, keys := NULL, min_step := NULL, max_step := NULL, samples := NULL
) AS TABLE
SELECT entity, project, run_id, _step, key, value, value_json
FROM __wandb_history_long
WHERE run_path = run
  AND (keys IS NULL OR list_contains(list_append(keys, '_step'), key))
  AND (min_step IS NULL OR _step >= min_step)
  AND (max_step IS NULL OR _step < max_step)
  AND _samples = coalesce(samples, 0);

CREATE OR REPLACE MACRO wandb_runs(project_path, filters := NULL) AS TABLE
SELECT entity, project, run_id, name, state, created_at, heartbeat_at, tags,
       CAST(config AS JSON) AS config, CAST(summary AS JSON) AS summary,
       last_step, history_line_count
FROM __wandb_runs
WHERE _project = project_path
  AND _filters = coalesce(filters, '{}');
