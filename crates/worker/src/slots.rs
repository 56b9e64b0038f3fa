//! Job slots: a worker runs at most `concurrency` jobs, whatever happens to
//! its broker connection. A slot is taken before a delivery is taken from
//! the consumer and held until that delivery is settled.
//!
//! When the broker closes the consumer's channel (a restart, RabbitMQ's
//! `consumer_timeout` on a long sync) the jobs it delivered keep running,
//! and the next channel must not bring more than the slots left: its
//! prefetch is `concurrency` minus the jobs still running from earlier
//! channels, raised as they end. (The broker hands those jobs' messages to
//! other consumers, which find them held by this worker's claims.)

use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

pub(crate) struct Slots {
    permits: Arc<Semaphore>,
    concurrency: u16,
    book: Mutex<Book>,
    /// An earlier channel's job ended: the prefetch may rise.
    earlier_ended: Notify,
}

#[derive(Debug, Default)]
struct Book {
    /// The consumer channel slots are taken for now.
    generation: u64,
    /// Slots taken, in all.
    taken: usize,
    /// Of those, taken for earlier channels.
    earlier: usize,
}

/// One slot, freed when dropped.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    generation: u64,
    _permit: OwnedSemaphorePermit,
}

impl Slots {
    pub fn new(concurrency: u16) -> Arc<Self> {
        Arc::new(Slots {
            permits: Arc::new(Semaphore::new(usize::from(concurrency))),
            concurrency,
            book: Mutex::default(),
            earlier_ended: Notify::new(),
        })
    }

    /// A new consumer channel: the slots taken so far belong to earlier
    /// ones. Returns its prefetch (0: no slot is free yet).
    pub fn new_channel(&self) -> u16 {
        let Ok(mut book) = self.book.lock() else {
            return 0;
        };
        book.generation += 1;
        book.earlier = book.taken;
        self.room(&book)
    }

    /// The prefetch the current channel may have now.
    pub fn prefetch(&self) -> u16 {
        self.book.lock().map_or(0, |book| self.room(&book))
    }

    fn room(&self, book: &Book) -> u16 {
        let earlier = u16::try_from(book.earlier).unwrap_or(u16::MAX);
        self.concurrency.saturating_sub(earlier)
    }

    /// Waits until an earlier channel's job has ended.
    pub async fn earlier_ended(&self) {
        self.earlier_ended.notified().await;
    }

    /// Waits for a free slot and takes it for the current channel.
    pub async fn take(self: &Arc<Self>) -> Slot {
        let permit = match self.permits.clone().acquire_owned().await {
            Ok(permit) => permit,
            // The semaphore is never closed.
            Err(_) => std::future::pending().await,
        };
        let generation = match self.book.lock() {
            Ok(mut book) => {
                book.taken += 1;
                book.generation
            }
            Err(_) => 0,
        };
        Slot {
            slots: self.clone(),
            generation,
            _permit: permit,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Ok(mut book) = self.slots.book.lock() else {
            return;
        };
        book.taken = book.taken.saturating_sub(1);
        if book.generation != self.generation {
            book.earlier = book.earlier.saturating_sub(1);
            self.slots.earlier_ended.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Slots;

    #[tokio::test]
    async fn a_new_channel_gets_only_the_slots_earlier_jobs_left() {
        let slots = Slots::new(3);
        assert_eq!(slots.new_channel(), 3);
        let first = slots.take().await;
        let second = slots.take().await;
        // The channel closes while two jobs run: the next may bring one.
        assert_eq!(slots.new_channel(), 1);
        let third = slots.take().await;
        // All three slots are taken: a fourth waits.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), slots.take());
        assert!(waiting.await.is_err());
        // An earlier job ends: the channel may bring one more.
        drop(first);
        slots.earlier_ended().await;
        assert_eq!(slots.prefetch(), 2);
        let fourth = slots.take().await;
        // A job of this channel ending changes nothing of its prefetch.
        drop(third);
        assert_eq!(slots.prefetch(), 2);
        drop(second);
        slots.earlier_ended().await;
        assert_eq!(slots.prefetch(), 3);
        drop(fourth);
        assert_eq!(slots.new_channel(), 3);
    }
}
