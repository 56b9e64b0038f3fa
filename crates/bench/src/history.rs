//! Finished jobs added straight into Postgres, as fast as it takes them:
//! the history the `growth` and `steering` benches measure against.

use anyhow::Context;
use uuid::Uuid;

/// What the added history looks like.
pub struct Shape {
    /// Days it spans, ending now.
    pub span_days: u32,
    /// The largest history the run adds (the jobs are spread evenly over
    /// the span by their number out of it).
    pub total: u64,
    /// Every job completed through the API (false), or a mix as a busy
    /// deployment has (true): 90% completed, 7% failed (with one of four
    /// error categories), 3% cancelled; 70% scheduled, 30% manual.
    pub mixed: bool,
}

/// Adds finished jobs `from..to`, oldest first, round-robin across the
/// connections (all of one organization and connector type); with their
/// timelines (created and completed) where the schema has them. Triggers
/// are off for the load (`session_replication_role`): the rows are written
/// as the triggers would have written them (the job's organization and
/// source type included), set-based.
pub async fn load(
    db: &tokio_postgres::Client,
    connections: &[Uuid],
    from: u64,
    to: u64,
    shape: &Shape,
    has_timeline: bool,
) -> anyhow::Result<()> {
    const CHUNK: u64 = 500_000;
    let span_ms = f64::from(shape.span_days) * 86_400_000.0;
    let owner = db
        .query_one(
            "SELECT min(organization_id::text)::uuid, min(short_name), count(DISTINCT organization_id)
             FROM source_connections WHERE id = ANY($1)",
            &[&connections],
        )
        .await?;
    anyhow::ensure!(
        owner.get::<_, i64>(2) == 1,
        "the history's connections must be of one organization"
    );
    let (organization, short_name): (Uuid, String) = (owner.get(0), owner.get(1));
    db.batch_execute("SET session_replication_role = replica")
        .await?;
    let timeline = if has_timeline {
        "INSERT INTO job_timeline (job_id, at, kind, attempt, worker_id, message, details)
         SELECT j.id, CASE k.kind WHEN 'created' THEN j.created_at ELSE j.completed_at END,
                k.kind, 1, 'bench', k.kind, '{}' FROM jobs j
         CROSS JOIN (VALUES ('created'), ('completed')) AS k(kind)"
    } else {
        "SELECT 1"
    };
    let statement = format!(
        "WITH numbered AS (
             SELECT i, now() - make_interval(secs => ($3::float8 - i::float8 * $3::float8 / $4::float8) / 1000.0) AS t,
                    CASE WHEN NOT $8 OR i % 100 < 90 THEN 'completed'
                         WHEN i % 100 < 97 THEN 'failed' ELSE 'cancelled' END AS status,
                    $8 AND i % 10 < 7 AS scheduled
             FROM generate_series($1::bigint, $2::bigint - 1) AS i
         ), jobs AS (
             INSERT INTO sync_jobs (id, source_connection_id, status, created_at, modified_at,
                                    started_at, completed_at, entities_inserted, attempt,
                                    organization_id, short_name, trigger, scheduled_for,
                                    error, error_category)
             SELECT (lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0') || '7'
                     || substr(md5(i::text), 1, 3) || '8' || substr(md5(i::text), 4, 15))::uuid,
                    ($5::uuid[])[1 + (i % array_length($5::uuid[], 1))],
                    status, t, t, t, t + interval '1 second', 1, 1, $6, $7,
                    CASE WHEN scheduled THEN 'schedule' ELSE 'api' END,
                    CASE WHEN scheduled THEN t END,
                    CASE WHEN status = 'failed' THEN 'the source failed' END,
                    CASE WHEN status = 'failed'
                         THEN (ARRAY['timeout', 'rate_limited', 'auth_failed', 'source_error'])[1 + i % 4] END
             FROM numbered
             RETURNING id, created_at, completed_at
         )
         {timeline}"
    );
    let statement = db.prepare(&statement).await?;
    let mut start = from;
    while start < to {
        let end = (start + CHUNK).min(to);
        let (a, b) = (i64::try_from(start)?, i64::try_from(end)?);
        let total = shape.total.max(1) as f64;
        db.execute(
            &statement,
            &[
                &a,
                &b,
                &span_ms,
                &total,
                &connections,
                &organization,
                &short_name,
                &shape.mixed,
            ],
        )
        .await
        .context("loading history")?;
        start = end;
    }
    db.batch_execute("SET session_replication_role = DEFAULT")
        .await?;
    Ok(())
}
