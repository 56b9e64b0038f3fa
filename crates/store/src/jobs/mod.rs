//! Sync jobs: one module per operation, each with its SQL in a `.sql` file
//! beside it. API side: [`trigger`] (and the batched [`trigger_many`]),
//! [`find`], [`list`], [`cancel`]. Worker side: [`claim_many`] (or
//! [`claim_many_fairly`] under a fair share), [`heartbeat`], [`release`],
//! [`schedule_retry`], [`commit_many`] (and [`commit_bulk`] for a large
//! batch); the reaper's [`reap`]; the relay's
//! [`fail_unpublishable`].
//!
//! Every worker write is fenced by the lease: it matches only while the
//! worker still owns the job. Who holds an active job is its phase, derived
//! by one SQL function for claim, cancel and reaper alike ([`phase`]).

mod bulk;
mod cancel;
mod claim;
mod commit;
mod held;
mod lease;
pub mod phase;
mod read;
mod reap;
mod retry;
pub mod search;
mod trigger;
pub mod watch;

pub use bulk::{BULK_ENTITIES, Bulk, Probe, commit_bulk};
pub use cancel::{Cancelled, cancel, cancel_many};
pub use claim::{
    Claim, ClaimLimits, ClaimedJob, SyncSource, claim, claim_many, claim_many_limited,
};
pub use commit::{Batch, Commit, Counts, EntityWrite, Outcome, commit_batch, commit_many};
pub use held::{
    release_held, release_room, release_source_type, release_unpaused, source_type_room,
};
pub use lease::{heartbeat, release};
pub use read::{find, find_any, list, was_deleted};
pub use reap::{Reaped, pending_published, reap, terminate_stuck};
pub use retry::{fail_unpublishable, schedule_retry};
pub use search::{JobFilter, Keyset, search};
pub(crate) use trigger::with_trigger_rule;
pub use trigger::{TriggerRequest, Triggered, trigger, trigger_many};
