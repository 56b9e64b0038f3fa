-- What a deleted connection leaves at its source: a postgres_cdc
-- connection's replication slot keeps the source's WAL until it is dropped.
-- The trigger keeps what a worker needs to drop it (the config and the
-- credentials, still sealed to the connection's id) until one has; a
-- worker claims a row by moving next_at (a lease), and on failure tries
-- again later.
CREATE TABLE source_releases (
    connection_id uuid PRIMARY KEY,
    short_name    text NOT NULL,
    config        jsonb NOT NULL,
    credentials   bytea,
    attempts      integer NOT NULL DEFAULT 0,
    next_at       timestamptz NOT NULL DEFAULT now(),
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX source_releases_due ON source_releases (next_at);

CREATE FUNCTION syncway_source_release() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO source_releases (connection_id, short_name, config, credentials)
    VALUES (OLD.id, OLD.short_name, OLD.config, OLD.credentials)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

CREATE TRIGGER source_connections_released AFTER DELETE ON source_connections
FOR EACH ROW WHEN (OLD.short_name = 'postgres_cdc')
EXECUTE FUNCTION syncway_source_release();
