-- Destinations written before the state recorded its covered range: add the column (NULL = 0).
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS min_step BIGINT;
