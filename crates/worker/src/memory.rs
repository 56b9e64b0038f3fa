//! The worker's memory budget (`worker.memory_budget_bytes`): what the
//! batches of all its jobs may hold at once, from the moment a batch starts
//! being read until it is committed. A job that would go over it waits
//! (its reader does) rather than fails, and a job whose reader waits writes
//! the batch it holds at once, so that the budget always frees up.
//!
//! A batch is reserved at [`READ_FACTOR`] times the most its source may
//! read into one batch (the raw bytes and their parsed form) and, once
//! prepared, kept at [`WRITE_FACTOR`] times its entities' bytes (the
//! serialized payloads and the statement's copy of them).

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A batch being read may hold this many times its byte bound.
pub const READ_FACTOR: u64 = 4;
/// A prepared batch holds this many times its entities' bytes until it
/// is committed.
pub const WRITE_FACTOR: u64 = 3;
/// The budget counts in units of this many bytes.
const UNIT: u64 = 1024;

/// The process's budget, shared by its jobs.
pub struct MemoryBudget {
    units: Arc<Semaphore>,
    total_units: u32,
    reserved: Gauge,
    waits: Counter,
}

/// Bytes held of the budget; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    permit: OwnedSemaphorePermit,
    reserved: Gauge,
}

fn units(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

impl MemoryBudget {
    /// A budget of `bytes`; `reserved` and `waits` are its metrics.
    pub fn new(bytes: u64, reserved: Gauge, waits: Counter) -> Self {
        // tokio's semaphores hold at most usize::MAX >> 3 permits.
        let total_units = units(bytes).clamp(1, u32::MAX >> 3);
        MemoryBudget {
            units: Arc::new(Semaphore::new(total_units as usize)),
            total_units,
            reserved,
            waits,
        }
    }

    /// Whether `bytes` could be reserved now without waiting.
    pub fn would_wait(&self, bytes: u64) -> bool {
        self.units.available_permits() < self.capped(bytes) as usize
    }

    fn capped(&self, bytes: u64) -> u32 {
        units(bytes).clamp(1, self.total_units)
    }

    /// Reserves `bytes` (at most the whole budget: a batch larger than the
    /// budget runs alone), waiting for room. `None` only if the budget were
    /// closed, which nothing does.
    pub async fn reserve(&self, bytes: u64) -> Option<Reservation> {
        let wanted = self.capped(bytes);
        let permit = match self.units.clone().try_acquire_many_owned(wanted) {
            Ok(permit) => permit,
            Err(_) => {
                self.waits.inc();
                self.units.clone().acquire_many_owned(wanted).await.ok()?
            }
        };
        self.reserved.inc_by(i64::from(wanted) * UNIT as i64);
        Some(Reservation {
            permit,
            reserved: self.reserved.clone(),
        })
    }
}

impl Reservation {
    /// Gives back all but `bytes` (at least one unit is kept).
    pub fn shrink_to(&mut self, bytes: u64) {
        let keep = units(bytes).max(1);
        let held = self.permit.num_permits() as u32;
        if held > keep
            && let Some(extra) = self.permit.split((held - keep) as usize)
        {
            self.reserved.dec_by(i64::from(held - keep) * UNIT as i64);
            drop(extra);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.reserved
            .dec_by(self.permit.num_permits() as i64 * UNIT as i64);
    }
}

/// Says once, at start, when glibc's malloc keeps its dynamic mmap
/// threshold: after a large buffer is freed it raises the threshold (up to
/// 32 MiB) and then keeps such buffers' memory in its heaps, so the
/// process's resident memory grows well past the budget (measured: twice
/// it). `MALLOC_MMAP_THRESHOLD_=131072` fixes the threshold; deploy/ sets it.
pub fn warn_of_malloc() {
    let fixed = std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("mmap_threshold"));
    if !fixed {
        tracing::warn!(
            "MALLOC_MMAP_THRESHOLD_ is not set: glibc's malloc keeps large freed buffers and \
             the worker's memory may grow past its budget; set MALLOC_MMAP_THRESHOLD_=131072 \
             (as deploy/ does)"
        );
    }
}

/// The default budget: half the cgroup's memory limit when there is one
/// (the rest is the process's own: runtime, pools, connectors' buffers),
/// else 1 GiB.
pub fn default_budget() -> u64 {
    syncway_runtime::cgroup_memory_limit().map_or(1 << 30, |limit| limit / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(bytes: u64) -> MemoryBudget {
        MemoryBudget::new(bytes, Gauge::default(), Counter::default())
    }

    #[tokio::test]
    async fn reservations_wait_for_room_and_shrink() {
        let budget = budget(10 * UNIT);
        let mut first = budget.reserve(8 * UNIT).await.expect("open");
        assert!(budget.would_wait(4 * UNIT));
        first.shrink_to(2 * UNIT);
        assert_eq!(first.permit.num_permits(), 2);
        assert!(!budget.would_wait(8 * UNIT));
        let second = budget.reserve(8 * UNIT).await.expect("open");
        assert_eq!(budget.reserved.get(), 10 * UNIT as i64);
        // Larger than the budget: capped, and waits for all of it.
        let waiting = tokio::spawn({
            let units = budget.units.clone();
            async move { units.acquire_many_owned(10).await.map(|p| p.num_permits()) }
        });
        drop(first);
        drop(second);
        assert_eq!(waiting.await.ok().and_then(Result::ok), Some(10));
        assert_eq!(budget.capped(u64::MAX), 10);
        assert_eq!(budget.reserved.get(), 0);
    }
}
