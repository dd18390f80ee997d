-- Long history table (PostgreSQL): one row per (run, step, key), in the long layout of
-- connector.core.long. Also receives the keys of a wide export that do not fit PostgreSQL's
-- 1,600-column limit (see the name map).
CREATE TABLE IF NOT EXISTS {table} (
    entity TEXT NOT NULL,
    project TEXT NOT NULL,
    run_id TEXT NOT NULL,
    _step BIGINT NOT NULL,
    key TEXT NOT NULL,
    value_number DOUBLE PRECISION,
    value_bool BOOLEAN,
    value_text TEXT,
    PRIMARY KEY (entity, project, run_id, _step, key)
);
