-- jobs::source_type_room: the capped source types with held jobs (V20),
-- each with the room its cap has left: the cap less its jobs that are not
-- held (running, or on their way to a claim).
-- $1 short names (text[]), $2 their caps (int[]).
SELECT cap.short_name, cap.cap - (
           SELECT count(*) FROM sync_jobs j
           WHERE j.short_name = cap.short_name AND j.active AND j.held_since IS NULL) AS room
FROM unnest($1::text[], $2::int[]) AS cap(short_name, cap)
WHERE EXISTS (SELECT 1 FROM sync_jobs j
              WHERE j.waiting_reason = 'source_type_cap' AND j.short_name = cap.short_name
                AND j.held_since IS NOT NULL AND j.active)
