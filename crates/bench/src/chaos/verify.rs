//! What a chaos scenario came to: every job checked on its own, and how
//! long completions took to flow again after the fault.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::processes::BenchEnv;

/// Per job: lost (ended other than completed), doubled (counts beyond the
/// source, or stored content other than the source's), stuck (not ended).
pub(super) async fn check(
    env: &BenchEnv,
    jobs: &[(Uuid, Uuid)],
    config: &syncway_model::StubConfig,
) -> anyhow::Result<(usize, usize, usize)> {
    let entities = config.entity_count;
    // Three minutes, or longer for a backlog (at least 20 jobs a second).
    let wait = Duration::from_secs(180).max(Duration::from_secs(jobs.len() as u64 / 20));
    let deadline = Instant::now() + wait;
    let client = loop {
        match env.client().await {
            Ok(client) => break client,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(error) => return Err(error),
        }
    };
    let ids: Vec<Uuid> = jobs.iter().map(|(_, job)| *job).collect();
    while Instant::now() < deadline {
        let active: i64 = client
            .query_one(
                "SELECT count(*) FROM sync_jobs WHERE id = ANY($1) AND active",
                &[&ids],
            )
            .await?
            .get(0);
        if active == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let expected: HashMap<String, Vec<u8>> = (0..entities)
        .map(|i| {
            let entity = syncway_connectors::stub::entity(config, i);
            let hash = syncway_model::content_hash(&entity.payload).to_vec();
            (entity.id, hash)
        })
        .collect();
    let (mut lost, mut doubled, mut stuck) = (0, 0, 0);
    for (connection, job) in jobs {
        let row = client
            .query_one(
                "SELECT status, entities_inserted, entities_updated, entities_deleted FROM sync_jobs WHERE id = $1",
                &[job],
            )
            .await?;
        let status: String = row.get(0);
        let counts: (i64, i64, i64) = (row.get(1), row.get(2), row.get(3));
        match status.as_str() {
            "completed" => {}
            "pending" | "running" | "cancelling" => {
                stuck += 1;
                continue;
            }
            _ => {
                lost += 1;
                continue;
            }
        }
        let stored = client
            .query(
                "SELECT entity_id, content_hash FROM entities WHERE source_connection_id = $1",
                &[connection],
            )
            .await?;
        let same = stored.len() == expected.len()
            && stored.iter().all(|row| {
                expected.get(row.get::<_, &str>(0)).map(Vec::as_slice)
                    == Some(row.get::<_, &[u8]>(1))
            });
        if counts != (entities as i64, 0, 0) || !same {
            doubled += 1;
        }
    }
    Ok((lost, doubled, stuck))
}

/// From the end of the fault until completions flow at 80% of their rate
/// in the 5 s before it (in 2 s windows).
pub(super) async fn recovery(
    env: &BenchEnv,
    jobs: &[(Uuid, Uuid)],
    started: Instant,
    fault_at: Duration,
    fault_end: Instant,
) -> anyhow::Result<Option<Duration>> {
    let client = env.client().await?;
    let ids: Vec<Uuid> = jobs.iter().map(|(_, job)| *job).collect();
    let since: Vec<f64> = client
        .query(
            "SELECT extract(epoch FROM completed_at - (now() - make_interval(secs => $2)))::float8
             FROM sync_jobs WHERE id = ANY($1) AND completed_at IS NOT NULL",
            &[&ids, &started.elapsed().as_secs_f64()],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let before = since
        .iter()
        .filter(|t| **t >= fault_at.as_secs_f64() - 5.0 && **t < fault_at.as_secs_f64())
        .count() as f64
        / 5.0;
    let end = (fault_end - started).as_secs_f64();
    let target = (before * 0.8 * 2.0).max(1.0);
    let mut t = end;
    let last = since.iter().copied().fold(end, f64::max);
    while t <= last {
        let window = since.iter().filter(|s| **s >= t && **s < t + 2.0).count() as f64;
        if window >= target {
            return Ok(Some(Duration::from_secs_f64(t - end)));
        }
        t += 0.1;
    }
    Ok(None)
}
