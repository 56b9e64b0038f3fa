//! The failed-authentication budget of a client address. It judges failing
//! attempts only: a valid key is never refused for others' bad ones, even
//! from an address (a NAT, an ingress) that sends many.
//!
//! An address over its budget is "blocked": until its budget refills,
//! - requests without a key go on (authentication answers 401 with no
//!   lookup);
//! - keys this process has seen succeed recently go on;
//! - any other key is looked up, at most [`PROBATION`] at a time per
//!   process, and answered 429 if it fails (or if no lookup is free).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Lookups of not-yet-known keys from blocked addresses at once.
pub const PROBATION: usize = 4;
/// How long a key that succeeded stays known good without another success.
const KNOWN_GOOD_FOR: Duration = Duration::from_secs(600);
/// Most known-good keys remembered (beyond it, the oldest are forgotten).
const MAX_KNOWN_GOOD: usize = 100_000;

pub struct FailedAuth {
    budget: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses out of failed attempts, and until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    /// Digests of keys that recently succeeded here, and when.
    known_good: Mutex<HashMap<[u8; 32], Instant>>,
    probation: std::sync::Arc<Semaphore>,
    clock: DefaultClock,
}

/// What a blocked address's request may do.
pub enum Admission {
    /// Not blocked, or a key known good: as usual.
    Go,
    /// A key on probation: holds one of the few lookups.
    Probation(OwnedSemaphorePermit),
    /// No lookup free: 429 now.
    Refuse(Duration),
}

impl FailedAuth {
    pub fn new(per_minute: NonZeroU32) -> Self {
        FailedAuth {
            budget: RateLimiter::keyed(Quota::per_minute(per_minute)),
            blocked: Mutex::new(HashMap::new()),
            known_good: Mutex::new(HashMap::new()),
            probation: std::sync::Arc::new(Semaphore::new(PROBATION)),
            clock: DefaultClock::default(),
        }
    }

    /// How long `address` stays blocked, when it is.
    pub fn blocked_for(&self, address: IpAddr) -> Option<Duration> {
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        let until = *blocked.get(&address)?;
        let now = Instant::now();
        if until > now {
            return Some(until - now);
        }
        blocked.remove(&address);
        None
    }

    /// Whether a request from `address` with a key of `digest` (if any)
    /// goes on.
    pub fn admit(&self, address: Option<IpAddr>, digest: Option<&[u8]>) -> Admission {
        let Some(wait) = address.and_then(|address| self.blocked_for(address)) else {
            return Admission::Go;
        };
        let Some(digest) = digest else {
            return Admission::Go;
        };
        if self.is_known_good(digest) {
            return Admission::Go;
        }
        match self.probation.clone().try_acquire_owned() {
            Ok(permit) => Admission::Probation(permit),
            Err(_) => Admission::Refuse(wait),
        }
    }

    fn is_known_good(&self, digest: &[u8]) -> bool {
        let Ok(digest) = <[u8; 32]>::try_from(digest) else {
            return false;
        };
        let known = self.known_good.lock().unwrap_or_else(|e| e.into_inner());
        known
            .get(&digest)
            .is_some_and(|at| at.elapsed() < KNOWN_GOOD_FOR)
    }

    /// A request with this key was authenticated.
    pub fn succeeded(&self, digest: &[u8]) {
        let Ok(digest) = <[u8; 32]>::try_from(digest) else {
            return;
        };
        let now = Instant::now();
        let mut known = self.known_good.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= MAX_KNOWN_GOOD && !known.contains_key(&digest) {
            known.retain(|_, at| now.duration_since(*at) < KNOWN_GOOD_FOR);
            if known.len() >= MAX_KNOWN_GOOD {
                return;
            }
        }
        known.insert(digest, now);
    }

    /// Counts a failed attempt of `address`; how long it must now wait,
    /// when it is over its budget.
    pub fn failed(&self, address: IpAddr) -> Option<Duration> {
        let until = self.budget.check_key(&address).err()?;
        let wait = until.wait_time_from(self.clock.now());
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        blocked.insert(address, Instant::now() + wait);
        Some(wait)
    }

    /// Forgets what no longer matters (bounded memory).
    pub fn prune(&self) {
        self.budget.retain_recent();
        self.budget.shrink_to_fit();
        let now = Instant::now();
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        blocked.retain(|_, until| *until > now);
        blocked.shrink_to_fit();
        drop(blocked);
        let mut known = self.known_good.lock().unwrap_or_else(|e| e.into_inner());
        known.retain(|_, at| now.duration_since(*at) < KNOWN_GOOD_FOR);
        known.shrink_to_fit();
    }
}

/// The address a client's budget is kept under: IPv6 clients by their /64
/// (one host usually holds a whole /64), IPv4-mapped IPv6 as IPv4.
pub fn client_bucket(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
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
    fn a_blocked_address_keeps_its_good_keys_and_few_lookups() {
        let auth = FailedAuth::new(NonZeroU32::MIN);
        let address: IpAddr = "192.0.2.1".parse().expect("address");
        let good = [1u8; 32];
        auth.succeeded(&good);
        assert!(auth.failed(address).is_none(), "within the budget");
        assert!(auth.failed(address).is_some(), "over it");
        assert!(auth.blocked_for(address).is_some());
        assert!(matches!(
            auth.admit(Some(address), Some(&good)),
            Admission::Go
        ));
        assert!(matches!(auth.admit(Some(address), None), Admission::Go));
        let held: Vec<_> = (0..PROBATION)
            .map(
                |i| match auth.admit(Some(address), Some(&[i as u8 + 2; 32])) {
                    Admission::Probation(permit) => permit,
                    _ => panic!("a lookup should be free"),
                },
            )
            .collect();
        assert!(matches!(
            auth.admit(Some(address), Some(&[99u8; 32])),
            Admission::Refuse(_)
        ));
        drop(held);
        assert!(matches!(
            auth.admit(Some(address), Some(&[99u8; 32])),
            Admission::Probation(_)
        ));
        let other: IpAddr = "192.0.2.2".parse().expect("address");
        assert!(matches!(
            auth.admit(Some(other), Some(&[99u8; 32])),
            Admission::Go
        ));
        auth.prune();
        assert!(auth.blocked_for(address).is_some(), "still blocked");
    }
}
