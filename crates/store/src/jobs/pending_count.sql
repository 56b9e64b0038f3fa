-- jobs::pending_messages_missing: how many pending jobs should have a
-- message in the jobs queue (published: not held, nothing in the outbox),
-- when any of them has waited longer than requeue_after; 0 otherwise.
-- $1 requeue_after_seconds.
SELECT CASE WHEN EXISTS (
           SELECT 1 FROM sync_jobs
           WHERE active AND status = 'pending' AND held_since IS NULL
             AND created_at < now() - make_interval(secs => $1))
       THEN (SELECT count(*) FROM sync_jobs j
             WHERE active AND status = 'pending' AND held_since IS NULL
               AND NOT EXISTS (SELECT 1 FROM outbox_jobs o WHERE o.job_id = j.id))
       ELSE 0 END AS published
