-- webhooks::deliveries::record_many: the outcomes of many attempts, in one
-- statement (one transaction, one commit, whatever the count). Arrays,
-- one entry per attempt: $1 attempt ids, $2 messages, $3 subscriptions,
-- $4 urls, $5 status codes, $6 responses (1 KB), $7 delivered, $8 next
-- attempts (NULL: none left), $9 answered 410 Gone; $10 the deliverer, $11
-- the hours of only failures after which a subscription is disabled.
-- As record.sql does for one: a delivery changes only while this
-- deliverer still holds it; the subscriptions are locked first (key
-- share, in id order) so that a delete of one waits or finds them gone;
-- a subscription's row is written only when its failure streak (read from
-- its last outcome here) starts or ends, or it is disabled. The commit
-- does not wait for the disk: an outcome lost with a crash of Postgres
-- itself only means the attempt is made again.
WITH quick AS (
    SELECT set_config('synchronous_commit', 'off', true)
), input AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::int[], $6::text[],
                         $7::bool[], $8::timestamptz[], $9::bool[]) WITH ORDINALITY
        AS i(attempt_id, message_id, subscription_id, url, code, response, delivered, next_at,
             gone, n)
), locked AS (
    SELECT s.id, s.failing_since, s.disabled FROM webhook_subscriptions s
    WHERE s.id = ANY ($3::uuid[]) AND EXISTS (SELECT 1 FROM quick)
    ORDER BY s.id FOR KEY SHARE
), attempt AS (
    INSERT INTO webhook_attempts (id, message_id, subscription_id, url,
                                  response_status_code, response, succeeded)
    SELECT i.attempt_id, i.message_id, i.subscription_id, i.url, i.code, i.response, i.delivered
    FROM input i JOIN locked l ON l.id = i.subscription_id
), delivery AS (
    UPDATE webhook_deliveries d SET
        attempts = d.attempts + 1,
        state = CASE WHEN i.delivered THEN 'success' WHEN i.next_at IS NULL OR i.gone THEN 'failed'
                     ELSE 'pending' END,
        next_attempt_at = COALESCE(i.next_at, d.next_attempt_at),
        lease_owner = NULL, lease_until = NULL
    FROM input i
    WHERE d.message_id = i.message_id AND d.subscription_id = i.subscription_id
      AND d.lease_owner = $10 AND d.state = 'pending'
      AND i.subscription_id IN (SELECT id FROM locked)
    RETURNING i.n
), last AS (
    SELECT DISTINCT ON (i.subscription_id) i.subscription_id, i.delivered,
           bool_or(i.gone) OVER (PARTITION BY i.subscription_id) AS gone
    FROM input i ORDER BY i.subscription_id, i.n DESC
), streak AS (
    SELECT l.id, l.failing_since, t.delivered, t.gone,
           COALESCE(NOT t.delivered AND NOT l.disabled
             AND (t.gone OR l.failing_since < now() - make_interval(hours => $11::int)), false)
             AS disable
    FROM locked l JOIN last t ON t.subscription_id = l.id
), subscription AS (
    UPDATE webhook_subscriptions s SET
        failing_since = CASE WHEN k.delivered THEN NULL ELSE COALESCE(s.failing_since, now()) END,
        disabled = s.disabled OR k.disable,
        disabled_reason = CASE
            WHEN NOT k.disable THEN s.disabled_reason
            WHEN k.gone THEN 'the endpoint answered 410 Gone'
            ELSE 'every delivery failed for ' || $11::int || ' hours' END,
        updated_at = CASE WHEN k.disable THEN now() ELSE s.updated_at END
    FROM streak k
    WHERE s.id = k.id
      AND ((k.delivered AND k.failing_since IS NOT NULL)
           OR (NOT k.delivered AND k.failing_since IS NULL) OR k.disable)
    RETURNING s.id, k.disable
), others_failed AS (
    UPDATE webhook_deliveries d SET state = 'failed', lease_owner = NULL, lease_until = NULL
    FROM subscription s
    WHERE s.disable AND d.subscription_id = s.id AND d.state = 'pending'
      AND NOT EXISTS (SELECT 1 FROM input i
                      WHERE i.message_id = d.message_id AND i.subscription_id = d.subscription_id)
)
SELECT i.n, EXISTS (SELECT 1 FROM delivery x WHERE x.n = i.n) AS held,
       COALESCE((SELECT s.disable FROM subscription s WHERE s.id = i.subscription_id), false)
           AS disabled
FROM input i ORDER BY i.n
