-- The runs table (PostgreSQL). Columns match connector.runs_table.RUNS_SCHEMA and sql/runs_table.sql.
CREATE TABLE IF NOT EXISTS {table} (
    entity TEXT NOT NULL,
    project TEXT NOT NULL,
    run_id TEXT NOT NULL,
    name TEXT,
    state TEXT,
    created_at TEXT,
    heartbeat_at TEXT,
    tags TEXT[],
    config JSONB,
    summary JSONB,
    last_step BIGINT,
    history_line_count BIGINT,
    PRIMARY KEY (entity, project, run_id)
);
