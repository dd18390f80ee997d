-- DuckDB table macros over the views registered by connector.duckdb.register(con).
--
-- DuckDB (2.0) has no Python table functions. connector.duckdb registers two Polars IO-source
-- LazyFrames as views named like the macros, wandb_history and wandb_runs (so DuckDB's errors name
-- what the user wrote); DuckDB pushes projections and the macros' constant filters into them (run or
-- project path, key IN (...), _step bounds, samples, filters), and the Python side turns those into
-- exactly the GraphQL requests needed.
--
-- The macros are TEMPORARY: they live in the connection's temp catalog and never land in a database
-- file (a file-backed connection reopened later opens cleanly, with no wandb_* objects).
--
-- Hidden columns of the backing views (never in the macros' output):
--   run_path      the run or project as the caller named it ('entity/project/run_id',
--                 'entity/project', './wandb', a URL, ...)
--   _samples      0 = full history, N > 0 = Run.history(samples = N)
--   _project      the path given to wandb_runs
--   _filters      MongoDB-style run filters as JSON text ('{}' = none)
--
-- Step windows: min_step inclusive, max_step exclusive, as everywhere in the connector.
-- wandb_history has the project's one long layout (connector.core.long), the columns and values of
-- an export's history_long table: value_number (numbers, NaN and +-inf kept), value_bool, value_text
-- (strings as they are, JSON text of media, lists, maps and of every value of a mixed-type key).
-- With keys := [...] only rows of those keys come back (count(*) counts their logged values).
-- Without keys every step also has one row with key = '_step' (value columns NULL), so
-- count(DISTINCT _step) counts steps; keys := ['_step'] is one row per step, cheaply.

CREATE OR REPLACE TEMP MACRO wandb_history(
    run, keys := NULL, min_step := NULL, max_step := NULL, samples := NULL, filters := NULL
) AS TABLE
SELECT entity, project, run_id, _step, key, value_number, value_bool, value_text
FROM wandb_history
WHERE run_path = run
  AND (keys IS NULL OR list_contains(keys, key))
  AND (min_step IS NULL OR _step >= min_step)
  AND (max_step IS NULL OR _step < max_step)
  AND _samples = coalesce(samples, 0)
  AND _filters = coalesce(filters, '{}');

-- created_at / heartbeat_at arrive as naive UTC ISO text (connector.duckdb.utc_text).
CREATE OR REPLACE TEMP MACRO wandb_runs(project_path, filters := NULL) AS TABLE
SELECT entity, project, run_id, name, state,
       CAST(created_at AS TIMESTAMP) AS created_at, CAST(heartbeat_at AS TIMESTAMP) AS heartbeat_at,
       tags, CAST(config AS JSON) AS config, CAST(summary AS JSON) AS summary,
       last_step, history_line_count,
       display_name, "group", job_type, sweep_name, username, notes, url
FROM wandb_runs
WHERE _project = project_path
  AND _filters = coalesce(filters, '{}');
