//! The watched jobs of this API process (CONTRACT.md §8). Every event
//! stream of a job shares one `watch` channel; one task reads every watched
//! job in a single statement each poll interval and publishes the ones whose
//! `version` moved. Postgres does one read per interval and process,
//! however many streams watch and however often the jobs commit; nothing
//! happens while nobody watches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use syncway_store::Pool;
use syncway_store::jobs::watch::{Versioned, read_many};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::metrics::ApiMetrics;

/// What a stream sees of its job: the latest state, or `None` once the
/// job is gone (deleted with its connection).
pub type Watched = watch::Receiver<Option<Arc<Versioned>>>;

#[derive(Default)]
pub struct Hub {
    watched: Mutex<HashMap<Uuid, watch::Sender<Option<Arc<Versioned>>>>>,
}

impl Hub {
    /// Watches `current.job`, starting from `current` (or from a newer
    /// state another stream already has).
    pub fn watch(&self, current: Versioned) -> Watched {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        let id = current.job.id;
        match watched.get(&id) {
            Some(sender) => {
                offer(sender, current);
                sender.subscribe()
            }
            None => {
                let (sender, receiver) = watch::channel(Some(Arc::new(current)));
                watched.insert(id, sender);
                receiver
            }
        }
    }

    /// The jobs some stream still watches (forgetting the others), and how
    /// many streams there are.
    fn watched_ids(&self) -> (Vec<Uuid>, usize) {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        watched.retain(|_, sender| sender.receiver_count() > 0);
        let streams = watched.values().map(watch::Sender::receiver_count).sum();
        (watched.keys().copied().collect(), streams)
    }

    /// Publishes what one read found: newer states, and the end of jobs
    /// that are gone.
    fn publish(&self, ids: &[Uuid], found: Vec<Versioned>) {
        let mut found: HashMap<Uuid, Versioned> =
            found.into_iter().map(|v| (v.job.id, v)).collect();
        let watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            let Some(sender) = watched.get(id) else {
                continue;
            };
            match found.remove(id) {
                Some(state) => offer(sender, state),
                None => {
                    sender.send_replace(None);
                }
            }
        }
    }

    /// Reads the watched jobs every `interval` until `stop`.
    pub async fn run(
        self: Arc<Self>,
        pool: Pool,
        interval: Duration,
        metrics: ApiMetrics,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while stop.run_until_cancelled(tick.tick()).await.is_some() {
            let (ids, streams) = self.watched_ids();
            metrics
                .event_streams
                .set(i64::try_from(streams).unwrap_or(i64::MAX));
            if ids.is_empty() {
                continue;
            }
            let read = match pool.get().await {
                Ok(client) => read_many(&client, &ids).await,
                Err(error) => Err(error.into()),
            };
            metrics.event_reads.inc();
            match read {
                Ok(found) => self.publish(&ids, found),
                // The streams keep their last state; the next poll tries again.
                Err(error) => tracing::warn!(error = %error, "reading watched jobs failed"),
            }
        }
    }
}

/// Publishes `state` to a job's streams when it is newer than what they
/// have (or they have the job as gone).
fn offer(sender: &watch::Sender<Option<Arc<Versioned>>>, state: Versioned) {
    sender.send_if_modified(|seen| {
        let newer = seen
            .as_ref()
            .is_none_or(|seen| state.version > seen.version);
        if newer {
            *seen = Some(Arc::new(state));
        }
        newer
    });
}
