-- V9: API keys have a life of their own (CONTRACT.md §7).
--
-- name, prefix: what a key's owner sees of it later (the key itself is
--   shown once and stored only as its digest).
-- role: `operator` keys may use the /admin/* routes and make operator keys.
-- bootstrap: made from SYNCWAY_AUTH__BOOTSTRAP_API_KEY; a new value of the
--   setting revokes the bootstrap keys made from earlier values.
-- last_used_at: coarse (each API process writes it at most once a minute
--   per key), so that using a key is not a write per request.
ALTER TABLE api_keys
    ADD COLUMN name          text NOT NULL DEFAULT 'key'
        CHECK (length(name) BETWEEN 1 AND 255),
    ADD COLUMN prefix        text NOT NULL DEFAULT '',
    ADD COLUMN role          text NOT NULL DEFAULT 'member'
        CHECK (role IN ('member', 'operator')),
    ADD COLUMN bootstrap     boolean NOT NULL DEFAULT false,
    ADD COLUMN last_used_at  timestamptz;

-- Until now the operator's keys were those of the bootstrap organization.
UPDATE api_keys SET role = 'operator', bootstrap = true
WHERE organization_id IN (SELECT id FROM organizations WHERE name = 'default');

ALTER TABLE organizations
    ADD CONSTRAINT organizations_name_length CHECK (length(name) BETWEEN 1 AND 255)
    NOT VALID;

-- GET /api-keys: an organization's keys, newest first.
CREATE INDEX api_keys_by_organization ON api_keys (organization_id, created_at DESC);
