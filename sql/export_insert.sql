-- Append a staged chunk that holds only steps above the committed watermark (DuckDB and PostgreSQL).
-- The primary key still guards it: a row that already exists fails the chunk instead of duplicating.
INSERT INTO {table} ({columns})
SELECT {source_columns} FROM {source};
