-- Wide history table (DuckDB). Key columns first; one column per flattened key is added later with
-- export_add_column.sql (a column never changes type). {table} is the quoted table name.
CREATE TABLE IF NOT EXISTS {table} (
    entity VARCHAR NOT NULL,
    project VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    _step BIGINT NOT NULL,
    _extra VARCHAR,
    PRIMARY KEY (entity, project, run_id, _step)
);
