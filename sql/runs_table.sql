-- The runs table (DuckDB): one row of metadata per run ({table} is the quoted table name). Columns match connector.runs_table.RUNS_SCHEMA.
CREATE TABLE IF NOT EXISTS {table} (
    entity VARCHAR NOT NULL,
    project VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    name VARCHAR,
    state VARCHAR,
    created_at VARCHAR,
    heartbeat_at VARCHAR,
    tags VARCHAR[],
    config JSON,
    summary JSON,
    last_step BIGINT,
    history_line_count BIGINT,
    PRIMARY KEY (entity, project, run_id)
);
