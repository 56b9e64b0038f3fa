//! Job event streams (CONTRACT.md §8), server-sent events: syncway's own
//! (`event:` status | progress | end, `id:` the job's version, the job as
//! data) and Airweave's (`data:` lines only). Both send the current state
//! first, follow the job through this process's [`crate::events::Hub`],
//! and end once it is terminal, gone, or the process shuts down.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::json;
use syncway_model::JobStatus;
use syncway_store::jobs::watch::{Versioned, find_versioned};

use crate::AppState;
use crate::auth::{KeyDigest, Organization};
use crate::error::{ApiError, Result};
use crate::events::Watched;
use crate::extract::{PathParams, path_uuid};
use crate::routes::table::Routes;

pub fn routes() -> Routes {
    Routes::new()
        .get(
            "/source-connections/{source_connection_id}/jobs/{job_id}/events",
            events,
        )
        .get("/sync/job/{job_id}/subscribe", subscribe)
}

/// Airweave's streams send a heartbeat at least this often.
const HEARTBEAT: Duration = Duration::from_secs(20);

/// A stream's state between events.
struct Follow {
    watched: Watched,
    /// The version and status last sent.
    sent: Option<(i64, JobStatus)>,
    stop: tokio_util::sync::CancellationToken,
    done: bool,
    /// The key's stream slot, freed when the stream is dropped.
    _slot: crate::limits::StreamSlot,
}

impl Follow {
    /// The next state to send: one newer than the last sent; `None` when
    /// the stream is over.
    async fn next(&mut self) -> Option<std::sync::Arc<Versioned>> {
        loop {
            if self.done {
                return None;
            }
            let current = self.watched.borrow_and_update().clone();
            let Some(current) = current else {
                // The job is gone.
                return None;
            };
            if self
                .sent
                .is_none_or(|(version, _)| current.version > version)
            {
                return Some(current);
            }
            tokio::select! {
                changed = self.watched.changed() => changed.ok()?,
                () = self.stop.cancelled() => return None,
            }
        }
    }

    fn mark(&mut self, state: &Versioned) {
        self.sent = Some((state.version, state.job.status));
        self.done = state.job.status.is_terminal();
    }
}

async fn start(
    state: &AppState,
    digest: &[u8],
    organization: uuid::Uuid,
    connection: Option<uuid::Uuid>,
    job: uuid::Uuid,
) -> Result<Follow> {
    let limits = state.limits();
    let slot = limits
        .open_stream(digest)
        .ok_or_else(|| ApiError::TooManyStreams(limits.streams_cap()))?;
    let client = state.pool().get().await?;
    let current = find_versioned(&client, organization, connection, job)
        .await?
        .ok_or_else(|| ApiError::not_found("sync job"))?;
    Ok(Follow {
        watched: state.hub().watch(current),
        sent: None,
        stop: state.streams_stop().clone(),
        done: false,
        _slot: slot,
    })
}

fn job_event(state: &Versioned, previous: Option<(i64, JobStatus)>) -> Event {
    let kind = if state.job.status.is_terminal() {
        "end"
    } else if previous.is_none_or(|(_, status)| status != state.job.status) {
        "status"
    } else {
        "progress"
    };
    Event::default()
        .id(state.version.to_string())
        .event(kind)
        .json_data(&state.job)
        .unwrap_or_else(|_| Event::default().event(kind))
}

/// `GET /source-connections/{id}/jobs/{job_id}/events`
async fn events(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
    Extension(KeyDigest(digest)): Extension<KeyDigest>,
    params: PathParams,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    let connection = path_uuid(&params, "source_connection_id")?;
    let job = path_uuid(&params, "job_id")?;
    let mut follow = start(&state, &digest, organization, Some(connection), job).await?;
    // Resuming: what the client saw last. The current state is sent again
    // only when it is newer (or terminal: the stream must end with `end`).
    let last_seen = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<i64>().ok());
    if let Some(seen) = last_seen {
        let current = follow.watched.borrow().clone();
        if let Some(current) = current.filter(|c| !c.job.status.is_terminal() && c.version <= seen)
        {
            follow.sent = Some((seen, current.job.status));
        }
    }
    let stream = futures_util::stream::unfold(follow, |mut follow| async move {
        let next = follow.next().await?;
        let event = job_event(&next, follow.sent);
        follow.mark(&next);
        Some((Ok(event), follow))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Airweave's progress object.
fn airweave_progress(state: &Versioned) -> serde_json::Value {
    let job = &state.job;
    json!({
        "inserted": job.entities_inserted,
        "updated": job.entities_updated,
        "deleted": job.entities_deleted,
        "kept": 0,
        "skipped": job.entities_failed,
        "entities_encountered": {},
        "status": job.status.is_terminal().then(|| job.status.to_string()),
        "last_update_timestamp": chrono::Utc::now(),
    })
}

/// `GET /sync/job/{job_id}/subscribe` (Airweave's path and payloads).
async fn subscribe(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
    Extension(KeyDigest(digest)): Extension<KeyDigest>,
    params: PathParams,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    let job = path_uuid(&params, "job_id")?;
    let follow = start(&state, &digest, organization, None, job).await?;
    let connected = json!({"type": "connected", "job_id": job});
    let first =
        futures_util::stream::once(async move { Ok(Event::default().data(connected.to_string())) });
    let updates = futures_util::stream::unfold(follow, |mut follow| async move {
        let event = tokio::select! {
            next = follow.next() => {
                let next = next?;
                follow.mark(&next);
                Event::default().data(airweave_progress(&next).to_string())
            }
            () = tokio::time::sleep(HEARTBEAT) => {
                Event::default().data(json!({"type": "heartbeat"}).to_string())
            }
        };
        Some((Ok(event), follow))
    });
    Ok(Sse::new(futures_util::StreamExt::chain(first, updates)))
}
