-- A key that appears later adds a column; old rows keep NULL there (nothing is rewritten).
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {type};
