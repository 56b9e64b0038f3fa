//! Request limits (CONTRACT.md §7): a token bucket per API key (by its
//! digest, so that even the run route, which authenticates in its own
//! statement, is limited before it reaches the database), a cap on a key's
//! open event streams, and a budget of failed authentications per client
//! address ([`failed_auth`]).
//!
//! The per-key rate, burst and stream cap hold for the deployment: each API
//! process enforces its share, 1/n of each, n being the live API processes
//! in the registry ([`share`]).

mod failed_auth;
pub mod share;
mod streams;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::json;

use self::failed_auth::{Admission, FailedAuth, client_bucket};
pub use self::streams::StreamSlot;
use self::streams::StreamSlots;
use crate::AppState;
use crate::client_address::ClientAddress;

/// Marks a response answering an unknown, revoked or expired key (set by
/// [`crate::error::ApiError`]): it costs the client address a failed attempt.
#[derive(Debug, Clone, Copy)]
pub struct AuthFailed;

/// The limits' settings (`SYNCWAY_LIMITS__*`), for the whole deployment.
#[derive(Debug, Clone, Copy)]
pub struct LimitSettings {
    pub requests_per_second: u32,
    pub burst: u32,
    pub failed_auth_per_minute: u32,
    pub streams_per_key: u32,
}

pub struct Limits {
    settings: LimitSettings,
    /// Live API processes sharing the per-key limits (at least 1).
    processes: AtomicU32,
    per_key: RwLock<Arc<DefaultKeyedRateLimiter<[u8; 32]>>>,
    streams: StreamSlots,
    failed_auth: FailedAuth,
    clock: DefaultClock,
}

fn nonzero(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN)
}

/// A process's share of a deployment-wide figure: at least 1.
fn share_of(total: u32, processes: u32) -> NonZeroU32 {
    nonzero(total / processes.max(1))
}

fn key_buckets(settings: &LimitSettings, processes: u32) -> DefaultKeyedRateLimiter<[u8; 32]> {
    let quota = Quota::per_second(share_of(settings.requests_per_second, processes))
        .allow_burst(share_of(settings.burst, processes));
    RateLimiter::keyed(quota)
}

impl Limits {
    pub fn new(settings: LimitSettings) -> Arc<Self> {
        Arc::new(Limits {
            processes: AtomicU32::new(1),
            per_key: RwLock::new(Arc::new(key_buckets(&settings, 1))),
            streams: StreamSlots::new(share_of(settings.streams_per_key, 1).get()),
            failed_auth: FailedAuth::new(nonzero(settings.failed_auth_per_minute)),
            clock: DefaultClock::default(),
            settings,
        })
    }

    /// The live API processes now sharing the limits. When their number
    /// changes, this process's buckets are made again at its new share
    /// (each key starts from a full bucket of that share).
    pub fn set_processes(&self, processes: u32) {
        let processes = processes.max(1);
        if self.processes.swap(processes, Ordering::Relaxed) == processes {
            return;
        }
        let buckets = Arc::new(key_buckets(&self.settings, processes));
        *self.per_key.write().unwrap_or_else(|e| e.into_inner()) = buckets;
        self.streams
            .set_cap(share_of(self.settings.streams_per_key, processes).get());
    }

    /// Takes a token of the key's bucket; how long to wait when it is empty.
    fn take_key_token(&self, digest: &[u8]) -> Option<Duration> {
        let key: [u8; 32] = digest.try_into().ok()?;
        let buckets = self
            .per_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        buckets
            .check_key(&key)
            .err()
            .map(|until| until.wait_time_from(self.clock.now()))
    }

    /// One of the key's stream slots, held until dropped; `None` when the
    /// key holds its share already.
    pub fn open_stream(self: &Arc<Self>, digest: &[u8]) -> Option<StreamSlot> {
        self.streams.acquire(digest)
    }

    /// The stream cap this process enforces per key now.
    pub fn streams_cap(&self) -> u32 {
        self.streams.cap()
    }

    /// Forgets buckets and blocks that no longer matter (bounded memory
    /// whatever the clients send). Run now and then.
    pub fn prune(&self) {
        let buckets = self
            .per_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        buckets.retain_recent();
        buckets.shrink_to_fit();
        self.failed_auth.prune();
    }
}

/// 429 with `Retry-After` (whole seconds, at least 1).
pub(crate) fn too_many(wait: Duration, detail: &str) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(json!({ "detail": detail })),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

const BLOCKED: &str = "too many requests with invalid API keys from this address; retry later";

/// Middleware on every route that takes a key.
pub async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let limits = state.limits().clone();
    let address: Option<IpAddr> = request
        .extensions()
        .get::<ClientAddress>()
        .map(|ClientAddress(address)| client_bucket(*address));
    // Without a usable key there is no bucket: authentication answers.
    let digest = crate::auth::key_digest(&request).ok();
    let _probation = match limits.failed_auth.admit(address, digest.as_deref()) {
        Admission::Go => None,
        Admission::Probation(permit) => Some(permit),
        Admission::Refuse(wait) => return too_many(wait, BLOCKED),
    };
    if let Some(digest) = &digest {
        if let Some(wait) = limits.take_key_token(digest) {
            return too_many(wait, "rate limit of this API key exceeded; retry later");
        }
        request
            .extensions_mut()
            .insert(crate::auth::KeyDigest(digest.clone()));
    }
    let response = next.run(request).await;
    if response.extensions().get::<AuthFailed>().is_some() {
        if let Some(address) = address
            && let Some(wait) = limits.failed_auth.failed(address)
        {
            return too_many(wait, BLOCKED);
        }
    } else if let Some(digest) = &digest
        && !response.status().is_server_error()
    {
        limits.failed_auth.succeeded(digest);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rate: u32, burst: u32, streams: u32) -> LimitSettings {
        LimitSettings {
            requests_per_second: rate,
            burst,
            failed_auth_per_minute: 1,
            streams_per_key: streams,
        }
    }

    #[test]
    fn a_key_is_limited_once_its_burst_is_spent() {
        let limits = Limits::new(settings(1, 2, 100));
        let digest = [7u8; 32];
        assert!(limits.take_key_token(&digest).is_none());
        assert!(limits.take_key_token(&digest).is_none());
        let wait = limits
            .take_key_token(&digest)
            .expect("the third is over the burst");
        assert!(wait <= Duration::from_secs(1));
    }

    #[test]
    fn each_process_enforces_its_share() {
        let limits = Limits::new(settings(100, 10, 100));
        limits.set_processes(2);
        let digest = [8u8; 32];
        let taken = (0..10)
            .take_while(|_| limits.take_key_token(&digest).is_none())
            .count();
        assert_eq!(taken, 5, "half the burst");
        assert_eq!(limits.streams_cap(), 50);
        // Never below one.
        limits.set_processes(1000);
        assert_eq!(limits.streams_cap(), 1);
        assert!(limits.take_key_token(&digest).is_none());
    }
}
