-- System metrics (the `events` stream, DuckDB): keyed by timestamp, metric columns added later.
CREATE TABLE IF NOT EXISTS {table} (
    entity VARCHAR NOT NULL,
    project VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    _timestamp DOUBLE NOT NULL,
    _extra VARCHAR,
    PRIMARY KEY (entity, project, run_id, _timestamp)
);
