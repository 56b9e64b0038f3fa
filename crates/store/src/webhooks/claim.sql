-- webhooks::deliveries::claim: due deliveries for one deliverer, at most
-- $3, held by $1 for $2 seconds. Each subscription gets at most $4 in
-- flight across all deliverers (1 while it is failing), so that one slow
-- or dead endpoint holds a few of the deliverers' slots, never all.
-- The subscriptions with pending deliveries are found by a loose scan of
-- webhook_deliveries_pending (one probe per such subscription, however
-- long its backlog); each then gives its oldest due deliveries, with the
-- sealed secrets that sign for it now. A lease lost with a crash of
-- Postgres itself only lets a delivery be sent again: the commit does not
-- wait for the disk (synchronous_commit off for this transaction).
WITH RECURSIVE quick AS (
    SELECT set_config('synchronous_commit', 'off', true)
), backlog AS (
    (SELECT d.subscription_id FROM webhook_deliveries d
     WHERE d.state = 'pending' ORDER BY d.subscription_id LIMIT 1)
    UNION ALL
    SELECT (SELECT d.subscription_id FROM webhook_deliveries d
            WHERE d.state = 'pending' AND d.subscription_id > b.subscription_id
            ORDER BY d.subscription_id LIMIT 1)
    FROM backlog b WHERE b.subscription_id IS NOT NULL
), room AS (
    SELECT s.id, s.url,
           CASE WHEN s.failing_since IS NULL THEN $4::int ELSE 1 END
             - (SELECT count(*) FROM webhook_deliveries h
                WHERE h.subscription_id = s.id AND h.state = 'pending'
                  AND h.lease_until > now())::int AS free
    FROM backlog b JOIN webhook_subscriptions s ON s.id = b.subscription_id
    WHERE NOT s.disabled
), chosen AS (
    SELECT d.message_id, d.subscription_id, r.url
    FROM room r
    CROSS JOIN LATERAL (
        SELECT d.message_id, d.subscription_id FROM webhook_deliveries d
        WHERE d.subscription_id = r.id AND d.state = 'pending'
          AND d.next_attempt_at <= now()
          AND (d.lease_until IS NULL OR d.lease_until <= now())
        ORDER BY d.next_attempt_at
        LIMIT GREATEST(r.free, 0)
        FOR UPDATE SKIP LOCKED) d
    LIMIT $3
)
UPDATE webhook_deliveries d
SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
FROM chosen c JOIN webhook_messages m ON m.id = c.message_id
     JOIN webhook_subscriptions s ON s.id = c.subscription_id
WHERE d.message_id = c.message_id AND d.subscription_id = c.subscription_id
  AND EXISTS (SELECT 1 FROM quick)
RETURNING d.message_id, d.subscription_id, d.attempts, c.url, m.event_type,
          m.payload::text AS body, m.created_at, s.secret,
          CASE WHEN s.previous_secret_until > now() THEN s.previous_secret END
              AS previous_secret
