-- V18: webhooks (CONTRACT.md §10).
--
-- A change and the messages that report it commit together: triggers on
-- sync_jobs, source_connections and collections write a message, and one
-- delivery per subscription of the organization that wants the event, in
-- the statement that makes the change. Nothing is written for an
-- organization without subscriptions, and a deployment without any pays
-- one probe of an empty table per job status change. Deliverers in the
-- workers claim due deliveries with a lease (at least once across crashes,
-- one attempt at a time while the deliverer lives).

CREATE TABLE webhook_subscriptions (
    id                     uuid PRIMARY KEY,
    organization_id        uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    url                    text NOT NULL,
    -- The event types wanted; empty: all of them (as Svix reads it).
    filter_types           text[] NOT NULL,
    description            text,
    disabled               boolean NOT NULL DEFAULT false,
    -- Why syncway disabled it (410 Gone, or failing for too long).
    disabled_reason        text,
    -- The signing secret, sealed like source credentials; after a rotation
    -- the previous one signs too until previous_secret_until.
    secret                 bytea NOT NULL,
    previous_secret        bytea,
    previous_secret_until  timestamptz,
    -- The first failed attempt since the last success (NULL: none).
    failing_since          timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_subscriptions_by_org ON webhook_subscriptions (organization_id, created_at);

CREATE TABLE webhook_messages (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL,
    event_type       text NOT NULL,
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX webhook_messages_by_org ON webhook_messages (organization_id, created_at DESC, id DESC);
CREATE INDEX webhook_messages_by_age ON webhook_messages (created_at);

-- One message to one subscription: pending until delivered (success) or
-- out of attempts (failed). A deliverer holds it while lease_until lies
-- ahead.
CREATE TABLE webhook_deliveries (
    message_id       uuid NOT NULL REFERENCES webhook_messages (id) ON DELETE CASCADE,
    subscription_id  uuid NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'success', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    lease_owner      text,
    lease_until      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (message_id, subscription_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
-- A subscription's due deliveries, and the subscriptions with any (the
-- deliverers' loose scan).
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (subscription_id, next_attempt_at)
    WHERE state = 'pending';
-- The deliveries a subscription has in flight (its concurrency cap).
CREATE INDEX webhook_deliveries_held ON webhook_deliveries (subscription_id, lease_until)
    WHERE state = 'pending';
-- A subscription's failed deliveries by age, for recover.
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (subscription_id, created_at)
    WHERE state = 'failed';
CREATE INDEX webhook_deliveries_by_subscription ON webhook_deliveries (subscription_id);

CREATE TABLE webhook_attempts (
    id                    uuid PRIMARY KEY,
    message_id            uuid NOT NULL REFERENCES webhook_messages (id) ON DELETE CASCADE,
    subscription_id       uuid NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    url                   text NOT NULL,
    response_status_code  integer,
    response              text NOT NULL DEFAULT '',
    succeeded             boolean NOT NULL,
    at                    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX webhook_attempts_by_message ON webhook_attempts (message_id, at);
CREATE INDEX webhook_attempts_by_subscription ON webhook_attempts (subscription_id, at DESC);

-- A message of `org`, fanned out to each of its subscriptions that wants
-- the event (a disabled one's delivery is recorded failed at once, for
-- recover). Nothing at all when none wants it.
CREATE FUNCTION syncway_webhook_emit(org uuid, event text, payload jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    message uuid;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_subscriptions s
                   WHERE s.organization_id = org
                     AND (cardinality(s.filter_types) = 0 OR event = ANY (s.filter_types))) THEN
        RETURN;
    END IF;
    message := gen_random_uuid();
    INSERT INTO webhook_messages (id, organization_id, event_type, payload)
    VALUES (message, org, event,
            jsonb_build_object('event_type', event, 'organization_id', org,
                               'timestamp', to_char(clock_timestamp() AT TIME ZONE 'UTC',
                                                    'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
            || payload);
    INSERT INTO webhook_deliveries (message_id, subscription_id, state)
    SELECT message, s.id, CASE WHEN s.disabled THEN 'failed' ELSE 'pending' END
    FROM webhook_subscriptions s
    WHERE s.organization_id = org
      AND (cardinality(s.filter_types) = 0 OR event = ANY (s.filter_types));
END $$;

-- A job's status, as a `sync.*` message. Errors are cut so that a payload
-- stays under 20 KB.
CREATE FUNCTION syncway_job_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    c record;
    payload jsonb;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_subscriptions) THEN
        RETURN NULL;
    END IF;
    SELECT s.organization_id, s.short_name, s.collection_id, col.readable_id, col.name INTO c
    FROM source_connections s JOIN collections col ON col.id = s.collection_id
    WHERE s.id = NEW.source_connection_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    payload := jsonb_build_object(
        'job_id', NEW.id, 'sync_job_id', NEW.id,
        'source_connection_id', NEW.source_connection_id, 'source_type', c.short_name,
        'collection_id', c.collection_id, 'collection_readable_id', c.readable_id,
        'collection_name', c.name,
        'status', NEW.status, 'version', NEW.version);
    IF NEW.status IN ('completed', 'failed', 'cancelled') THEN
        payload := payload || jsonb_build_object(
            'entities_inserted', NEW.entities_inserted, 'entities_updated', NEW.entities_updated,
            'entities_deleted', NEW.entities_deleted, 'entities_failed', NEW.entities_failed,
            'error', CASE WHEN length(NEW.error) > 16000
                          THEN left(NEW.error, 16000) || ' [cut: the error was longer]'
                          ELSE NEW.error END,
            'error_category', NEW.error_category);
    END IF;
    PERFORM syncway_webhook_emit(c.organization_id, 'sync.' || NEW.status, payload);
    RETURN NULL;
END $$;

CREATE TRIGGER sync_jobs_webhook_created AFTER INSERT ON sync_jobs
FOR EACH ROW EXECUTE FUNCTION syncway_job_webhook();
CREATE TRIGGER sync_jobs_webhook_changed AFTER UPDATE OF status ON sync_jobs
FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION syncway_job_webhook();

CREATE FUNCTION syncway_connection_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    subject source_connections;
    readable text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_subscriptions) THEN
        RETURN NULL;
    END IF;
    subject := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    SELECT readable_id INTO readable FROM collections WHERE id = subject.collection_id;
    PERFORM syncway_webhook_emit(subject.organization_id,
        CASE WHEN TG_OP = 'DELETE' THEN 'source_connection.deleted'
             ELSE 'source_connection.created' END,
        jsonb_build_object('source_connection_id', subject.id, 'name', subject.name,
                           'source_type', subject.short_name,
                           'collection_id', subject.collection_id,
                           'collection_readable_id', readable));
    RETURN NULL;
END $$;

CREATE TRIGGER source_connections_webhook AFTER INSERT OR DELETE ON source_connections
FOR EACH ROW EXECUTE FUNCTION syncway_connection_webhook();

CREATE FUNCTION syncway_collection_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    subject collections;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_subscriptions) THEN
        RETURN NULL;
    END IF;
    subject := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    PERFORM syncway_webhook_emit(subject.organization_id,
        CASE TG_OP WHEN 'INSERT' THEN 'collection.created'
                   WHEN 'UPDATE' THEN 'collection.updated' ELSE 'collection.deleted' END,
        jsonb_build_object('collection_id', subject.id,
                           'collection_readable_id', subject.readable_id,
                           'name', subject.name));
    RETURN NULL;
END $$;

CREATE TRIGGER collections_webhook AFTER INSERT OR UPDATE OR DELETE ON collections
FOR EACH ROW EXECUTE FUNCTION syncway_collection_webhook();
