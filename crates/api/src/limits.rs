//! Request limits (CONTRACT.md §7), in memory per API process: a token
//! bucket per API key (by its digest, so that even the run route, which
//! authenticates in its own statement, is limited before it reaches the
//! database), and a budget of failed authentications per client address.
//! An address over that budget is answered 429 without a database lookup
//! until its budget refills.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::json;

use crate::AppState;

/// Marks a response answering an unknown, revoked or expired key (set by
/// [`crate::error::ApiError`]): it costs the client address a failed attempt.
#[derive(Debug, Clone, Copy)]
pub struct AuthFailed;

/// The limits' settings (`SYNCWAY_LIMITS__*`).
#[derive(Debug, Clone, Copy)]
pub struct LimitSettings {
    pub requests_per_second: u32,
    pub burst: u32,
    pub failed_auth_per_minute: u32,
}

pub struct Limits {
    per_key: DefaultKeyedRateLimiter<[u8; 32]>,
    failed_auth: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses out of failed attempts, and until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    clock: DefaultClock,
}

fn nonzero(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN)
}

impl Limits {
    pub fn new(settings: LimitSettings) -> Arc<Self> {
        let per_key = Quota::per_second(nonzero(settings.requests_per_second))
            .allow_burst(nonzero(settings.burst));
        let failed = Quota::per_minute(nonzero(settings.failed_auth_per_minute));
        Arc::new(Limits {
            per_key: RateLimiter::keyed(per_key),
            failed_auth: RateLimiter::keyed(failed),
            blocked: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        })
    }

    /// Takes a token of the key's bucket; how long to wait when it is empty.
    fn take_key_token(&self, digest: &[u8]) -> Option<Duration> {
        let key: [u8; 32] = digest.try_into().ok()?;
        self.per_key
            .check_key(&key)
            .err()
            .map(|until| until.wait_time_from(self.clock.now()))
    }

    /// How long `address` must wait, when it is out of failed attempts.
    fn blocked_for(&self, address: IpAddr) -> Option<Duration> {
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        let until = *blocked.get(&address)?;
        let now = Instant::now();
        if until > now {
            return Some(until - now);
        }
        blocked.remove(&address);
        None
    }

    /// Counts a failed attempt of `address`; how long it must now wait,
    /// when that was one too many.
    fn failed_attempt(&self, address: IpAddr) -> Option<Duration> {
        let until = self.failed_auth.check_key(&address).err()?;
        let wait = until.wait_time_from(self.clock.now());
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        blocked.insert(address, Instant::now() + wait);
        Some(wait)
    }

    /// Forgets buckets and blocks that no longer matter (bounded memory
    /// whatever the clients send). Run now and then.
    pub fn prune(&self) {
        self.per_key.retain_recent();
        self.per_key.shrink_to_fit();
        self.failed_auth.retain_recent();
        self.failed_auth.shrink_to_fit();
        let now = Instant::now();
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        blocked.retain(|_, until| *until > now);
        blocked.shrink_to_fit();
    }
}

/// The address a client's budget is kept under: IPv6 clients by their /64
/// (one host usually holds a whole /64), IPv4-mapped IPv6 as IPv4.
fn client_bucket(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(
                    segments[0],
                    segments[1],
                    segments[2],
                    segments[3],
                    0,
                    0,
                    0,
                    0,
                ))
            }
        },
    }
}

/// 429 with `Retry-After` (whole seconds, at least 1).
fn too_many(wait: Duration, detail: &str) -> Response {
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

/// Middleware on every route that takes a key.
pub async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let limits = state.limits().clone();
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| client_bucket(address.ip()));
    if let Some(wait) = address.and_then(|address| limits.blocked_for(address)) {
        return too_many(
            wait,
            "too many requests with invalid API keys from this address; retry later",
        );
    }
    // Without a usable key there is no bucket: authentication answers.
    if let Ok(digest) = crate::auth::key_digest(&request) {
        if let Some(wait) = limits.take_key_token(&digest) {
            return too_many(wait, "rate limit of this API key exceeded; retry later");
        }
        request
            .extensions_mut()
            .insert(crate::auth::KeyDigest(digest));
    }
    let response = next.run(request).await;
    if response.extensions().get::<AuthFailed>().is_some()
        && let Some(address) = address
        && let Some(wait) = limits.failed_attempt(address)
    {
        return too_many(
            wait,
            "too many requests with invalid API keys from this address; retry later",
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("address");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("address");
        assert_eq!(client_bucket(a), client_bucket(b));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("address");
        assert_eq!(
            client_bucket(mapped),
            "10.0.0.1".parse::<IpAddr>().expect("v4")
        );
    }

    #[test]
    fn a_key_is_limited_once_its_burst_is_spent() {
        let limits = Limits::new(LimitSettings {
            requests_per_second: 1,
            burst: 2,
            failed_auth_per_minute: 1,
        });
        let digest = [7u8; 32];
        assert!(limits.take_key_token(&digest).is_none());
        assert!(limits.take_key_token(&digest).is_none());
        let wait = limits
            .take_key_token(&digest)
            .expect("the third is over the burst");
        assert!(wait <= Duration::from_secs(1));
        let address: IpAddr = "192.0.2.1".parse().expect("address");
        assert!(limits.failed_attempt(address).is_none());
        assert!(limits.failed_attempt(address).is_some());
        assert!(limits.blocked_for(address).is_some());
        limits.prune();
        assert!(limits.blocked_for(address).is_some(), "still blocked");
    }
}
