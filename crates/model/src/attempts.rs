//! How many times a job may run: decided here, and only here, for the
//! worker (retry or fail after a transient failure; refuse a takeover past
//! the limit) and the reaper (fail a job whose worker died on its last
//! attempt) alike.
//!
//! A job's `attempt` counts its runs that count against the limit
//! (`retry.max_attempts`): each claim adds one, a shutdown handback takes
//! its one back.

/// Whether a job that has made `runs` runs, none of which finished, may
/// run again.
pub fn may_run_again(runs: i32, max_attempts: i32) -> bool {
    runs < max_attempts
}

/// The error of a job that gave up because its attempts were used up.
pub fn exhausted(attempts: i32) -> String {
    format!(
        "gave up after {attempts} attempts: each stopped without finishing (its worker died \
         or lost the database)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_runs_at_most_max_attempts_times() {
        assert!(may_run_again(0, 1));
        assert!(!may_run_again(1, 1));
        assert!(may_run_again(4, 5));
        assert!(!may_run_again(5, 5));
        assert!(exhausted(3).contains("3 attempts"));
    }
}
