//! The retry policy of transient failures: how long to wait before the
//! next attempt (`retry.*` settings). Whether there is a next attempt is
//! [`syncway_model::attempts`]'s to say.

use std::time::Duration;

/// Backoff of transient failures (`retry.*` settings).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub max_attempts: i32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The wait before the attempt after `attempt`: the base delay doubled
    /// for each attempt made, capped, then scaled by a random factor in
    /// [0.5, 1] so that jobs failing together do not retry together.
    pub fn delay(&self, attempt: i32) -> Duration {
        let doublings = u32::try_from(attempt.saturating_sub(1))
            .unwrap_or(0)
            .min(30);
        let delay = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.max_delay);
        delay.mul_f64(rand::random_range(0.5..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::RetryPolicy;
    use std::time::Duration;

    #[test]
    fn retry_delays_double_up_to_the_cap_with_jitter() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(1000),
            max_delay: Duration::from_millis(5000),
        };
        for (attempt, full) in [(1, 1000), (2, 2000), (3, 4000), (4, 5000), (40, 5000)] {
            for _ in 0..50 {
                let delay = policy.delay(attempt).as_millis();
                assert!(
                    (full / 2..=full).contains(&delay),
                    "attempt {attempt}: {delay} ms"
                );
            }
        }
    }
}
