-- Name map of wide PostgreSQL tables: which column holds a W&B key. Keys whose names exceed 63 bytes
-- get a column named <prefix>~<8 hex of sha1(key)> (never a truncation that could collide); keys
-- that would push a table past 1,600 columns get layout 'long' (their values go to history_long).
CREATE TABLE IF NOT EXISTS {table} (
    table_name TEXT NOT NULL,
    key TEXT NOT NULL,
    column_name TEXT,
    layout TEXT NOT NULL,
    PRIMARY KEY (table_name, key)
);
