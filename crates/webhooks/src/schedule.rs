//! When a failed delivery is tried again: Svix's schedule. The first
//! attempt is at once; after a failure the next follows 5 s, 5 min, 30 min,
//! 2 h, 5 h, 10 h and 10 h later, each ±20%; after the eighth attempt the
//! delivery has failed. A `Retry-After` the endpoint sent (on 429 or 503)
//! replaces the schedule's delay, kept within the schedule's bounds.

use std::time::Duration;

use rand::Rng;

/// The pause after each failed attempt (the first is after attempt 1).
pub const DELAYS: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// Attempts a delivery gets in all.
pub const ATTEMPTS: u32 = DELAYS.len() as u32 + 1;

/// The pause before the next attempt after `attempts_made` attempts all
/// failed, or `None` when none is left.
pub fn next_delay(attempts_made: u32, retry_after: Option<Duration>) -> Option<Duration> {
    let index = usize::try_from(attempts_made.checked_sub(1)?).ok()?;
    let scheduled = *DELAYS.get(index)?;
    let (shortest, longest) = (DELAYS[0], DELAYS[DELAYS.len() - 1]);
    Some(match retry_after {
        Some(asked) => asked.clamp(shortest, longest),
        None => scheduled.mul_f64(rand::rng().random_range(0.8..=1.2)),
    })
}

/// A `Retry-After` header's seconds (the HTTP-date form is not used by the
/// endpoints that matter here, and is ignored).
pub fn retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_svixs_with_jitter_and_ends() {
        for (made, base) in (1..).zip(DELAYS) {
            let delay = next_delay(made, None).expect("a retry is left");
            assert!(delay >= base.mul_f64(0.8) && delay <= base.mul_f64(1.2));
        }
        assert_eq!(next_delay(ATTEMPTS, None), None);
        assert_eq!(next_delay(0, None), None);
        assert_eq!(ATTEMPTS, 8);
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let asked = |s| next_delay(1, Some(Duration::from_secs(s)));
        assert_eq!(asked(60), Some(Duration::from_secs(60)));
        assert_eq!(asked(1), Some(Duration::from_secs(5)));
        assert_eq!(asked(86_400 * 7), Some(Duration::from_secs(36_000)));
        assert_eq!(retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
