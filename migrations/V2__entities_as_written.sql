-- The entity table is the hot path of every sync; two of its column types
-- cost more CPU than the rows themselves (measured with perf on the
-- 1M-entity sync benchmark):
--
-- * payload json, not jsonb. The worker writes each payload as its canonical
--   serialization (sorted keys, no duplicates), which is also what its
--   content hash covers, and nothing queries inside payloads. jsonb parsed
--   and rebuilt every payload on the way in (about a fifth of the server's
--   time); json only checks that it is valid and keeps the text.
-- * entity_id in the "C" collation: the primary key compares entity ids on
--   every insert and lookup, and a locale collation compares through
--   strcoll. Byte order is also the order the entities listing documents.
ALTER TABLE entities
    ALTER COLUMN entity_id TYPE text COLLATE "C",
    ALTER COLUMN payload TYPE json USING payload::json;
