-- Export checkpoints (PostgreSQL), committed in the same transaction as the merge of the rows.
CREATE TABLE IF NOT EXISTS {table} (
    entity TEXT NOT NULL,
    project TEXT NOT NULL,
    run_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    key_set TEXT NOT NULL,
    watermark DOUBLE PRECISION,
    last_step BIGINT,
    line_count BIGINT,
    run_state TEXT,
    rewinds INTEGER NOT NULL DEFAULT 0,
    deleted_at TEXT,
    keys TEXT,
    layout TEXT,
    chunk_steps BIGINT,
    min_step BIGINT,
    updated_at TEXT,
    PRIMARY KEY (entity, project, run_id, stream, key_set)
);
