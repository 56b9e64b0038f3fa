//! The console's sessions and its per-minute samples (V21).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use crate::StoreError;

/// A live session: the key it was made with (as its digest) and its CSRF
/// token. Whether the key is still live is the caller's check.
#[derive(Debug, Clone)]
pub struct Session {
    pub key_hash: Vec<u8>,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// Records a session under the token's digest.
pub async fn create_session(
    client: &impl GenericClient,
    token_hash: &[u8],
    key_hash: &[u8],
    csrf_token: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO console_sessions (token_hash, key_hash, csrf_token, expires_at)
             VALUES ($1, $2, $3, $4)",
            &[&token_hash, &key_hash, &csrf_token, &expires_at],
        )
        .await?;
    Ok(())
}

/// The unexpired session with this token's digest.
pub async fn find_session(
    client: &impl GenericClient,
    token_hash: &[u8],
) -> Result<Option<Session>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT key_hash, csrf_token, expires_at FROM console_sessions
             WHERE token_hash = $1 AND expires_at > now()",
        )
        .await?;
    let row = client.query_opt(&statement, &[&token_hash]).await?;
    Ok(row.map(|row| Session {
        key_hash: row.get(0),
        csrf_token: row.get(1),
        expires_at: row.get(2),
    }))
}

/// Ends a session (signing out, or its key found dead).
pub async fn end_session(client: &impl GenericClient, token_hash: &[u8]) -> Result<(), StoreError> {
    client
        .execute(
            "DELETE FROM console_sessions WHERE token_hash = $1",
            &[&token_hash],
        )
        .await?;
    Ok(())
}

/// The gauges a sample takes from the operations snapshot.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub ready: Option<i64>,
    pub unacked: Option<i64>,
    pub oldest_pending_seconds: Option<f64>,
    pub workers: i64,
    pub dead_letters: Option<i64>,
    pub outbox_pending: i64,
}

/// Writes the sample of the last whole minute unless it is there: the jobs
/// that started and ended in it (read through the active and finished
/// indexes, never the whole history) and `gauges`. The caller holds the
/// snapshot's lock, so one process writes it.
pub async fn sample(client: &impl GenericClient, gauges: &Gauges) -> Result<(), StoreError> {
    client
        .execute(
            "WITH m AS (SELECT date_trunc('minute', now()) - interval '1 minute' AS start)
             INSERT INTO console_samples (minute, ready, unacked, oldest_pending_seconds,
                 started, completed, failed, workers, dead_letters, outbox_pending)
             SELECT m.start, $1, $2, $3,
                 (SELECT count(*) FROM sync_jobs j
                  WHERE (j.active OR j.completed_at >= m.start)
                    AND j.started_at >= m.start AND j.started_at < m.start + interval '1 minute'),
                 (SELECT count(*) FROM sync_jobs j
                  WHERE j.completed_at >= m.start AND j.completed_at < m.start + interval '1 minute'
                    AND j.status = 'completed'),
                 (SELECT count(*) FROM sync_jobs j
                  WHERE j.completed_at >= m.start AND j.completed_at < m.start + interval '1 minute'
                    AND j.status = 'failed'),
                 $4, $5, $6
             FROM m
             WHERE NOT EXISTS (SELECT 1 FROM console_samples s WHERE s.minute = m.start)
             ON CONFLICT (minute) DO NOTHING",
            &[
                &gauges.ready,
                &gauges.unacked,
                &gauges.oldest_pending_seconds,
                &gauges.workers,
                &gauges.dead_letters,
                &gauges.outbox_pending,
            ],
        )
        .await?;
    Ok(())
}

/// One minute's figures.
#[derive(Debug, Clone)]
pub struct Sample {
    pub minute: DateTime<Utc>,
    pub ready: Option<i64>,
    pub unacked: Option<i64>,
    pub oldest_pending_seconds: Option<f64>,
    pub started: i64,
    pub completed: i64,
    pub failed: i64,
    pub workers: i64,
    pub dead_letters: Option<i64>,
    pub outbox_pending: i64,
}

/// The samples of the last `hours`, oldest first.
pub async fn samples(client: &impl GenericClient, hours: i32) -> Result<Vec<Sample>, StoreError> {
    let rows = client
        .query(
            "SELECT minute, ready, unacked, oldest_pending_seconds, started, completed,
                    failed, workers, dead_letters, outbox_pending
             FROM console_samples WHERE minute >= now() - make_interval(hours => $1)
             ORDER BY minute",
            &[&hours],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Sample {
                minute: row.try_get(0)?,
                ready: row.try_get(1)?,
                unacked: row.try_get(2)?,
                oldest_pending_seconds: row.try_get(3)?,
                started: row.try_get(4)?,
                completed: row.try_get(5)?,
                failed: row.try_get(6)?,
                workers: row.try_get(7)?,
                dead_letters: row.try_get(8)?,
                outbox_pending: row.try_get(9)?,
            })
        })
        .collect()
}
