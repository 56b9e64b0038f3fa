-- jobs::find: a job of the organization's connection.
-- $1 job_id, $2 source_connection_id, $3 organization_id.
SELECT {JOB_COLUMNS} FROM sync_jobs j
JOIN source_connections s ON s.id = j.source_connection_id
WHERE j.id = $1 AND j.source_connection_id = $2 AND s.organization_id = $3
