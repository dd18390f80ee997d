-- Name map of the wide tables (DuckDB and PostgreSQL): which column holds a W&B key, for every key
-- whose column is not the key itself (connector.core.columns.column_for_key: empty, reserved or
-- control-character keys, and in PostgreSQL keys over 63 bytes get <prefix>~<8 hex of sha1(key)>);
-- in PostgreSQL keys that would push a table past 1,600 columns get layout 'long' (history_long).
CREATE TABLE IF NOT EXISTS {table} (
    table_name TEXT NOT NULL,
    key TEXT NOT NULL,
    column_name TEXT,
    layout TEXT NOT NULL,
    PRIMARY KEY (table_name, key)
);
