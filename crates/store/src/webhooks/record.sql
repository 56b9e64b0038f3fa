-- webhooks::deliveries::record: one attempt's outcome, in one statement.
-- $1 attempt id, $2 message, $3 subscription, $4 url, $5 status code,
-- $6 response (1 KB), $7 delivered, $8 next attempt (NULL: none left),
-- $9 the deliverer, $10 the endpoint answered 410 Gone, $11 the hours of
-- only failures after which a subscription is disabled.
-- The delivery changes only while this deliverer still holds it (another
-- took it over after its lease ran out: that one records its own); the
-- attempt is kept either way. The subscription row is written only when
-- its failure streak starts or ends, or it is disabled. The commit does
-- not wait for the disk: an outcome lost with a crash of Postgres itself
-- only means the attempt is made again (at least once either way).
-- The subscription is locked first (key share): a delete of it waits for
-- this statement, or this one finds it gone and writes nothing. Taken
-- after the delivery's row instead (by the attempt's foreign key), the two
-- could deadlock.
WITH quick AS (
    SELECT set_config('synchronous_commit', 'off', true)
    FROM webhook_subscriptions WHERE id = $3::uuid FOR KEY SHARE
), attempt AS (
    INSERT INTO webhook_attempts (id, message_id, subscription_id, url,
                                  response_status_code, response, succeeded)
    SELECT $1::uuid, $2::uuid, $3::uuid, $4::text, $5::int, $6::text, $7::bool FROM quick
), delivery AS (
    UPDATE webhook_deliveries SET
        attempts = attempts + 1,
        state = CASE WHEN $7 THEN 'success' WHEN $8::timestamptz IS NULL OR $10 THEN 'failed'
                     ELSE 'pending' END,
        next_attempt_at = COALESCE($8, next_attempt_at),
        lease_owner = NULL, lease_until = NULL
    WHERE message_id = $2 AND subscription_id = $3 AND lease_owner = $9 AND state = 'pending'
      AND EXISTS (SELECT 1 FROM quick)
    RETURNING 1
), streak AS (
    SELECT s.id, s.failing_since,
           COALESCE(NOT $7 AND NOT s.disabled
             AND ($10 OR s.failing_since < now() - make_interval(hours => $11::int)), false)
             AS disable
    FROM webhook_subscriptions s WHERE s.id = $3
), subscription AS (
    UPDATE webhook_subscriptions s SET
        failing_since = CASE WHEN $7 THEN NULL ELSE COALESCE(s.failing_since, now()) END,
        disabled = s.disabled OR k.disable,
        disabled_reason = CASE
            WHEN NOT k.disable THEN s.disabled_reason
            WHEN $10 THEN 'the endpoint answered 410 Gone'
            ELSE 'every delivery failed for ' || $11::int || ' hours' END,
        updated_at = CASE WHEN k.disable THEN now() ELSE s.updated_at END
    FROM streak k
    WHERE s.id = k.id
      AND (($7 AND k.failing_since IS NOT NULL) OR (NOT $7 AND k.failing_since IS NULL) OR k.disable)
    RETURNING k.disable
), others_failed AS (
    UPDATE webhook_deliveries d SET state = 'failed', lease_owner = NULL, lease_until = NULL
    FROM subscription s
    WHERE s.disable AND d.subscription_id = $3 AND d.state = 'pending'
      AND d.message_id <> $2
)
SELECT EXISTS (SELECT 1 FROM delivery) AS held,
       COALESCE((SELECT disable FROM subscription), false) AS disabled
