-- Ids of the jobs of deleted connections, kept for a week. A message that
-- names a job nobody has is dead-lettered (it cannot be run, and an operator
-- should see it), unless the job was deleted with its connection: then the
-- message is simply dropped. The reaper removes entries older than a week.
CREATE TABLE deleted_jobs (
    job_id     uuid PRIMARY KEY,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
