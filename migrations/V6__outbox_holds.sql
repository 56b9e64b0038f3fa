-- V6: a message the broker nacks is held and tried again, not set aside at
-- once. A quorum queue nacks while it has no leader (a cluster node died
-- and the others are electing one): that refusal passes within seconds.
-- held_until: the relay leaves the row alone until then. refused_since:
-- when the broker first refused it; a message refused for longer than the
-- relay's grace is set aside (its job failed), as one the broker will never
-- take, so that it cannot hold back every other.
ALTER TABLE outbox
    ADD COLUMN held_until    timestamptz,
    ADD COLUMN refused_since timestamptz;
