//! What an active job is doing: its phase.
//!
//! The wire status says `pending`, `running` or `cancelling`; the phase says
//! who, if anyone, holds the job. It is derived, never stored, by ONE SQL
//! function, `job_phase(status, lease_owner, lease_expires_at, retry_at)`
//! (migration V5), which the claim, the cancel and the reaper all use:
//!
//! | status | lease_owner | lease_expires_at | retry_at | phase | claim | cancel | reaper |
//! |---|---|---|---|---|---|---|---|
//! | pending | NULL | | | `pending` | takes it | `cancelled` at once | re-enqueues it after `requeue_after` (its message may be lost) |
//! | running / cancelling | a worker | ≥ now | | `leased` | leaves it | `cancelling` (running), told through the control exchange | leaves it |
//! | running / cancelling | a worker | < now | | `expired` | takes it over (attempt + 1) | `cancelling` | after one lease of grace: re-enqueues it, fails it (attempts used up) or, cancelling, ends it `cancelled` |
//! | running | NULL | | > now + 1 s | `retry_wait` | leaves it (its delay-queue message comes back) | `cancelled` at once | leaves it until the wait is over |
//! | running / cancelling | NULL | | NULL or ≤ now + 1 s | `handed_back` | takes it at once (a handback or a retry that is due) | `cancelled` at once | re-enqueues it after the grace (its message may be lost) |
//! | completed / failed / cancelled | | | | `terminal` | answers `Finished` | refused (409) | never sees it |
//!
//! The second of slack on `retry_at` is for clocks: the delay queue's timer
//! is the broker's.

/// The phases `job_phase` returns.
pub const PHASES: [&str; 6] = [
    "pending",
    "leased",
    "expired",
    "retry_wait",
    "handed_back",
    "terminal",
];
