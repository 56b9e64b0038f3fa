-- jobs::reap: jobs to deliver again (the outbox rows are written by
-- outbox::enqueue in the same transaction). $1 job_ids.
UPDATE sync_jobs SET requeued_at = now(), retry_at = NULL WHERE id = ANY($1)
