-- jobs::reap: what full syncs saw (V12) is kept only while their job is
-- active. A worker's final commit removes its job's rows; this removes
-- those of jobs that ended otherwise (the reaper failed or cancelled them,
-- a cancel ended one nobody held, or the job was deleted). The table holds
-- a row per batch of the full syncs running now, so the scan is short.
DELETE FROM full_sync_seen f
WHERE NOT EXISTS (SELECT 1 FROM sync_jobs j WHERE j.id = f.job_id AND j.active)
