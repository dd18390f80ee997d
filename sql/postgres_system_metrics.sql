-- System metrics (the `events` stream, PostgreSQL).
CREATE TABLE IF NOT EXISTS {table} (
    entity TEXT NOT NULL,
    project TEXT NOT NULL,
    run_id TEXT NOT NULL,
    _timestamp DOUBLE PRECISION NOT NULL,
    _extra TEXT,
    PRIMARY KEY (entity, project, run_id, _timestamp)
);
