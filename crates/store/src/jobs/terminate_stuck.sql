-- jobs::terminate_stuck: the sessions of workers whose leases ran out that
-- sit inside a transaction waiting on their own client (ClientRead: a
-- COPY whose rows stopped coming; ClientWrite: results nobody reads) for
-- longer than the session bound. A frozen worker, or one cut off behind a
-- proxy, holds its job's row lock that way; no timeout of Postgres ends
-- it (statement_timeout is not acted on while a session waits for its
-- client), so the reapers do: the session is terminated and its
-- transaction rolled back (the worker's writes are fenced by its claim
-- anyway). A session of a live worker busy on the server is never one of
-- these.
-- $1 bound_seconds.
SELECT a.pid, pg_terminate_backend(a.pid) AS terminated, a.application_name
FROM pg_stat_activity a
WHERE a.datname = current_database()
  AND a.state = 'active' AND a.wait_event IN ('ClientRead', 'ClientWrite')
  AND a.xact_start < now() - make_interval(secs => $1)
  AND a.application_name IN (
      SELECT left(lease_owner, 63) FROM sync_jobs
      WHERE active AND lease_owner IS NOT NULL AND lease_expires_at < now())
