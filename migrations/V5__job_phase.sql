-- V5: what an active job is doing, derived in one place.
--
-- A job's wire status (pending, running, cancelling) does not say who holds
-- it: `running` is leased by a live worker, or left by a dead one, or
-- waiting out a retry backoff, or handed back at shutdown. Those phases are
-- told apart by lease_owner, lease_expires_at and retry_at. This function
-- is the only place that reads them so: the claim, the cancel and the
-- reaper all ask it (see crates/store/src/jobs/phase.rs for the table of
-- what each does in each phase). It is a plain SQL expression, STABLE
-- (now()), so Postgres inlines it into the statements that call it.
--
-- The second of slack on retry_at is for clocks: the delay queue that
-- brings the job back keeps the broker's time.
CREATE FUNCTION job_phase(
    status text,
    lease_owner text,
    lease_expires_at timestamptz,
    retry_at timestamptz
) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN status IN ('completed', 'failed', 'cancelled') THEN 'terminal'
        WHEN status = 'pending' THEN 'pending'
        WHEN lease_owner IS NOT NULL AND lease_expires_at >= now() THEN 'leased'
        WHEN lease_owner IS NOT NULL THEN 'expired'
        WHEN retry_at > now() + interval '1 second' THEN 'retry_wait'
        ELSE 'handed_back'
    END
$$;
