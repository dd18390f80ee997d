-- Long history table (DuckDB): one row per (run, step, key) with a non-null value, in the long
-- layout of connector.core.long (the columns of the wandb_history SQL macro too). Never needs DDL.
CREATE TABLE IF NOT EXISTS {table} (
    entity VARCHAR NOT NULL,
    project VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    _step BIGINT NOT NULL,
    key VARCHAR NOT NULL,
    value_number DOUBLE,
    value_bool BOOLEAN,
    value_text VARCHAR,
    PRIMARY KEY (entity, project, run_id, _step, key)
);
