-- The mass-deletion guard: a completing full sync that would delete more
-- than its connection's max_delete_fraction of the stored entities (when
-- at least sync.mass_delete_min_entities are stored) fails instead and
-- deletes nothing, unless its job was triggered with allow_mass_deletion.
ALTER TABLE source_connections
    ADD COLUMN max_delete_fraction double precision NOT NULL DEFAULT 0.5
        CHECK (max_delete_fraction > 0 AND max_delete_fraction <= 1);
ALTER TABLE sync_jobs
    ADD COLUMN allow_mass_deletion boolean NOT NULL DEFAULT false;
