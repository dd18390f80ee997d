-- Merge a staged chunk into a destination table on its primary key (DuckDB and PostgreSQL).
-- Re-exported steps (lag windows of running runs, a resumed chunk) replace the columns they carry.
INSERT INTO {table} ({columns})
SELECT {source_columns} FROM {source}
ON CONFLICT ({key}) DO UPDATE SET {updates};
