-- schedules::set_plans: $1 connection ids, $2 ticks, $3 due times.
UPDATE source_connections c SET schedule_tick_at = i.tick, next_run_at = i.due
FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) AS i(id, tick, due)
WHERE c.id = i.id
