-- jobs::list: a connection's jobs, newest first.
-- $1 source_connection_id, $2 limit.
SELECT {JOB_COLUMNS} FROM sync_jobs j WHERE j.source_connection_id = $1
ORDER BY j.created_at DESC, j.id DESC LIMIT $2
