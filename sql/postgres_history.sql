-- Wide history table (PostgreSQL). Columns per key are added with export_add_column.sql; names
-- longer than 63 bytes go through the name map (postgres_column_map.sql).
CREATE TABLE IF NOT EXISTS {table} (
    entity TEXT NOT NULL,
    project TEXT NOT NULL,
    run_id TEXT NOT NULL,
    _step BIGINT NOT NULL,
    _extra TEXT,
    PRIMARY KEY (entity, project, run_id, _step)
);
