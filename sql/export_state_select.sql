SELECT entity, project, run_id, stream, key_set, watermark, last_step, line_count, run_state, rewinds,
       deleted_at, keys, layout, chunk_steps, min_step
FROM {table};
