//! Event streams a key holds open in this process, capped at its share of
//! `limits.streams_per_key`. A slot is freed the moment its stream ends
//! (the slot is dropped with it), whatever ended it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

type Counts = Arc<Mutex<HashMap<[u8; 32], u32>>>;

pub struct StreamSlots {
    open: Counts,
    cap: AtomicU32,
}

/// One open stream of a key; frees its slot when dropped.
pub struct StreamSlot {
    open: Counts,
    digest: [u8; 32],
}

impl StreamSlots {
    pub fn new(cap: u32) -> Self {
        StreamSlots {
            open: Counts::default(),
            cap: AtomicU32::new(cap),
        }
    }

    pub fn cap(&self) -> u32 {
        self.cap.load(Ordering::Relaxed)
    }

    /// A new cap; streams open beyond it stay open, new ones wait for room.
    pub fn set_cap(&self, cap: u32) {
        self.cap.store(cap, Ordering::Relaxed);
    }

    /// A slot for the key with `digest`; `None` when it holds its cap.
    pub fn acquire(&self, digest: &[u8]) -> Option<StreamSlot> {
        let digest = <[u8; 32]>::try_from(digest).ok()?;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(digest).or_default();
        if *count >= self.cap() {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            open: self.open.clone(),
            digest,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.digest) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.digest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_its_cap_and_a_closed_stream_frees_its_slot() {
        let slots = StreamSlots::new(2);
        let a = [1u8; 32];
        let first = slots.acquire(&a).expect("one");
        let _second = slots.acquire(&a).expect("two");
        assert!(slots.acquire(&a).is_none(), "over the cap");
        assert!(slots.acquire(&[2u8; 32]).is_some(), "another key's own");
        drop(first);
        assert!(slots.acquire(&a).is_some(), "freed at once");
    }
}
