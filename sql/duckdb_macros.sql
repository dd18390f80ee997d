-- DuckDB table macros over the views registered by connector.duckdb.register(con).
--
-- DuckDB (2.0) has no Python table functions. connector.duckdb registers Polars IO-source
-- LazyFrames as views named like the macros (wandb_history, wandb_runs, wandb_files,
-- wandb_artifacts: DuckDB's errors name what the user wrote); DuckDB pushes projections and the macros' constant filters into them (run or
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
--   _path         the run or project given to wandb_files / wandb_artifacts
--   _direction    'logged' or 'used': the side of the run an artifact is on (wandb_artifacts)
--   _asked        the direction asked of wandb_artifacts: 'logged', 'used' or 'both'
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

-- One row per file of each run (Run.files(): names, sizes, md5, URLs; nothing downloaded), for a run
-- path or every run of a project (filters := as for wandb_runs). updated_at arrives as a TIMESTAMP (UTC).
CREATE OR REPLACE TEMP MACRO wandb_files(path, filters := NULL) AS TABLE
SELECT entity, project, run_id, name, size, mimetype, md5, updated_at, url, direct_url, id
FROM wandb_files
WHERE _path = path
  AND _filters = coalesce(filters, '{}');

-- One row per artifact each run logged (direction = 'logged', Run.logged_artifacts()) or used
-- ('used', Run.used_artifacts()); direction := 'logged' | 'used' fetches only that side, NULL or
-- 'both' both. aliases and tags are VARCHAR[] (aliases without the version alias: see version),
-- metadata JSON, created_at / updated_at TIMESTAMP (UTC).
CREATE OR REPLACE TEMP MACRO wandb_artifacts(path, direction := NULL, filters := NULL) AS TABLE
SELECT entity, project, run_id, _direction AS direction, id, name, collection, type, version,
       aliases, tags, digest, size, file_count, state, description, CAST(metadata AS JSON) AS metadata,
       commit_hash, history_step, created_at, updated_at, artifact_entity, artifact_project, url
FROM wandb_artifacts
WHERE _path = path
  AND _asked = coalesce(direction, 'both')
  AND _filters = coalesce(filters, '{}');
