-- Record one checkpoint (parameters $1..$16 in the column order of the state table).
INSERT INTO {table} (entity, project, run_id, stream, key_set, watermark, last_step, line_count,
                     run_state, rewinds, deleted_at, keys, layout, chunk_steps, min_step, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (entity, project, run_id, stream, key_set) DO UPDATE SET
    watermark = EXCLUDED.watermark, last_step = EXCLUDED.last_step, line_count = EXCLUDED.line_count,
    run_state = EXCLUDED.run_state, rewinds = EXCLUDED.rewinds, deleted_at = EXCLUDED.deleted_at,
    keys = EXCLUDED.keys, layout = EXCLUDED.layout, chunk_steps = EXCLUDED.chunk_steps, min_step = EXCLUDED.min_step,
    updated_at = EXCLUDED.updated_at;
