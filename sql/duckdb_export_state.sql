-- Export checkpoints (DuckDB): one watermark per (run, stream, key set), written in the same
-- transaction as the rows it covers. watermark = last committed _step (stream 'history') or
-- _timestamp (stream 'events'); NULL = nothing committed. No secrets are ever stored here.
CREATE TABLE IF NOT EXISTS {table} (
    entity VARCHAR NOT NULL,
    project VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    stream VARCHAR NOT NULL,
    key_set VARCHAR NOT NULL,
    watermark DOUBLE,
    last_step BIGINT,
    line_count BIGINT,
    run_state VARCHAR,
    rewinds INTEGER NOT NULL DEFAULT 0,
    deleted_at VARCHAR,
    keys VARCHAR,
    layout VARCHAR,
    chunk_steps BIGINT,
    min_step BIGINT,
    updated_at VARCHAR,
    PRIMARY KEY (entity, project, run_id, stream, key_set)
);
