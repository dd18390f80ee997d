-- Drop the exported rows of one run (a rewound run, before it is exported again).
DELETE FROM {table} WHERE entity = $1 AND project = $2 AND run_id = $3;
