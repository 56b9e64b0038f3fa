//! Natural batching of database round trips.
//!
//! Every statement costs Postgres (and the caller) a fixed price on top of
//! its rows: a network round trip, a parse/bind/execute, a snapshot and a
//! commit. When many requests want the same statement at once, a
//! [`Batcher`] sends them as one: each of its lanes takes every request that
//! is waiting when it becomes free and runs them together. An idle system
//! answers a lone request at once; under load (the lane's last batch had
//! company) a lane may also wait a moment, its linger, for more to join.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::Instant;

/// The batcher's lanes are gone (the process is stopping) or a batch
/// returned fewer results than it was given (a bug in the batch function).
#[derive(Debug, thiserror::Error)]
#[error("the {0} batcher did not answer")]
pub struct BatcherGone(&'static str);

struct Request<T, R> {
    item: T,
    reply: oneshot::Sender<R>,
}

/// Submits items to a batch function; see the module documentation.
pub struct Batcher<T, R> {
    name: &'static str,
    sender: mpsc::Sender<Request<T, R>>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Batcher {
            name: self.name,
            sender: self.sender.clone(),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Spawns `lanes` tasks that each run `run` on up to `max_batch` waiting
    /// items at a time. `run` must return one result per item, in order.
    /// The lanes end when every clone of the batcher is dropped. See
    /// [`Shape`] for `linger`.
    pub fn spawn<F, Fut>(name: &'static str, shape: Shape, run: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let shape = Shape {
            lanes: shape.lanes.max(1),
            max_batch: shape.max_batch.max(1),
            linger: shape.linger,
        };
        let (sender, receiver) = mpsc::channel(shape.max_batch * shape.lanes);
        let receiver = Arc::new(Mutex::new(receiver));
        let run = Arc::new(run);
        for _ in 0..shape.lanes {
            tokio::spawn(lane(receiver.clone(), run.clone(), shape));
        }
        Batcher { name, sender }
    }

    /// Runs `item` in the next batch and returns its result.
    pub async fn submit(&self, item: T) -> Result<R, BatcherGone> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Request { item, reply })
            .await
            .map_err(|_| BatcherGone(self.name))?;
        answer.await.map_err(|_| BatcherGone(self.name))
    }
}

/// How a [`Batcher`] runs its batches.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Batches in flight at once.
    pub lanes: usize,
    /// Items in one batch at most.
    pub max_batch: usize,
    /// Under load only (the lane's previous batch had company): how long
    /// a lane waits after a batch's first item for more to join it. Zero:
    /// a batch is whatever has queued when a lane becomes free. A lone
    /// request after a lone request never waits.
    pub linger: Duration,
}

async fn lane<T, R, F, Fut>(
    receiver: Arc<Mutex<mpsc::Receiver<Request<T, R>>>>,
    run: Arc<F>,
    shape: Shape,
) where
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = Vec<R>>,
{
    let max_batch = shape.max_batch;
    let mut batch = Vec::with_capacity(max_batch);
    let mut busy = false;
    loop {
        {
            // One lane gathers at a time: it waits for the first request,
            // then takes whatever else is already queued...
            let mut receiver = receiver.lock().await;
            if receiver.recv_many(&mut batch, max_batch).await == 0 {
                return;
            }
            // ...and, under load, what arrives within the linger.
            if busy && !shape.linger.is_zero() {
                let deadline = Instant::now() + shape.linger;
                while batch.len() < max_batch {
                    let room = max_batch - batch.len();
                    match tokio::time::timeout_at(deadline, receiver.recv_many(&mut batch, room))
                        .await
                    {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            }
        }
        busy = batch.len() > 1;
        let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) = batch
            .drain(..)
            .map(|request| (request.item, request.reply))
            .unzip();
        let results = run(items).await;
        for (reply, result) in replies.into_iter().zip(results) {
            // The caller may have gone away (a closed HTTP connection).
            let _ = reply.send(result);
        }
    }
}

/// For batch functions that fail as a whole (one statement): runs `run` on
/// all `items`, and when that fails, on each item alone, so that every item
/// gets its own answer and one bad item cannot fail the others. `short`
/// makes the error for a run that returned fewer results than items.
pub async fn all_or_each<T, R, E, F, Fut>(
    name: &str,
    items: Vec<T>,
    run: F,
    short: impl Fn() -> E,
) -> Vec<Result<R, E>>
where
    T: Clone,
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = Result<Vec<R>, E>>,
    E: std::fmt::Debug,
{
    let size = items.len();
    let error = match run(items.clone()).await {
        Ok(results) if results.len() == size => return results.into_iter().map(Ok).collect(),
        Ok(_) => short(),
        Err(error) => error,
    };
    if size == 1 {
        return vec![Err(error)];
    }
    tracing::warn!(
        ?error,
        size,
        "a batch of {name} failed; running its items one by one"
    );
    let mut results = Vec::with_capacity(size);
    for item in items {
        results.push(match run(vec![item]).await {
            Ok(mut one) if one.len() == 1 => one.pop().ok_or_else(&short),
            Ok(_) => Err(short()),
            Err(error) => Err(error),
        });
    }
    results
}

/// A [`Batcher`] whose batches are one database statement: `run` gets a
/// pooled connection and the batch's items, and returns one result per item
/// in order. A batch that fails as a whole is run item by item
/// ([`all_or_each`]), so that every item gets its own answer.
pub fn spawn_on_pool<T, R, F, Fut>(
    name: &'static str,
    shape: Shape,
    pool: crate::Pool,
    run: F,
) -> Batcher<T, Result<R, crate::StoreError>>
where
    T: Clone + Send + 'static,
    R: Send + 'static,
    F: Fn(deadpool_postgres::Object, Vec<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<R>, crate::StoreError>> + Send + 'static,
{
    let run = Arc::new(run);
    Batcher::spawn(name, shape, move |items| {
        let pool = pool.clone();
        let run = run.clone();
        async move {
            let once = |items: Vec<T>| {
                let pool = pool.clone();
                let run = run.clone();
                async move { run(pool.get().await?, items).await }
            };
            all_or_each(name, items, once, || {
                crate::StoreError::Corrupt(format!("a batch of {name} returned too few results"))
            })
            .await
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A linger no test waits out: a lingering batch ends by filling up.
    const TEN_MINUTES: Duration = Duration::from_secs(600);

    fn shape(lanes: usize, max_batch: usize, linger: Duration) -> Shape {
        Shape {
            lanes,
            max_batch,
            linger,
        }
    }

    #[tokio::test]
    async fn every_item_gets_its_own_result() {
        let shape = shape(2, 8, Duration::ZERO);
        let batcher = Batcher::spawn("test", shape, |items: Vec<u32>| async move {
            items.into_iter().map(|item| item * 10).collect::<Vec<_>>()
        });
        let handles: Vec<_> = (0..100)
            .map(|item| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.submit(item).await.ok() })
            })
            .collect();
        for (item, handle) in (0..100).zip(handles) {
            assert_eq!(handle.await.ok().flatten(), Some(item * 10));
        }
    }

    #[tokio::test]
    async fn a_failed_batch_is_retried_item_by_item() {
        // Odd items make any run that holds them fail.
        let run = |items: Vec<u32>| async move {
            if items.iter().any(|item| item % 2 == 1) {
                Err(format!("{items:?} holds an odd item"))
            } else {
                Ok(items.iter().map(|item| item + 100).collect::<Vec<_>>())
            }
        };
        let results = all_or_each("test", vec![2, 3, 4], run, || "short".to_string()).await;
        assert_eq!(
            results,
            [Ok(102), Err("[3] holds an odd item".to_string()), Ok(104)]
        );
        let results = all_or_each("test", vec![2, 4], run, || "short".to_string()).await;
        assert_eq!(results, [Ok(102), Ok(104)]);
        let short = |items: Vec<u32>| async move { Ok::<_, String>(items[1..].to_vec()) };
        let results = all_or_each("test", vec![7, 8], short, || "short".to_string()).await;
        assert_eq!(
            results,
            [Err("short".to_string()), Err("short".to_string())]
        );
    }

    #[tokio::test]
    async fn requests_queued_behind_a_busy_lane_share_a_batch() {
        let batches = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let counter = batches.clone();
        let batcher = Batcher::spawn(
            "test",
            shape(1, 64, Duration::ZERO),
            move |items: Vec<u32>| {
                let counter = counter.clone();
                let mut released = released.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    // The first batch holds the only lane until released.
                    let _ = released.wait_for(|released| *released).await;
                    items
                }
            },
        );
        let first = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.submit(0).await.ok() }
        });
        // Wait until the lane is busy with the first batch.
        while batches.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (1..=10)
            .map(|item| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.submit(item).await.ok() })
            })
            .collect();
        // Let the ten queue up behind the busy lane, then release it.
        while batcher.sender.capacity() > 64 - 10 {
            tokio::task::yield_now().await;
        }
        let _ = release.send(true);
        assert_eq!(first.await.ok().flatten(), Some(0));
        for (item, handle) in (1..=10).zip(rest) {
            assert_eq!(handle.await.ok().flatten(), Some(item));
        }
        assert_eq!(batches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn under_load_a_batch_waits_its_linger_for_company() {
        let batches = Arc::new(std::sync::Mutex::new(Vec::<Vec<u32>>::new()));
        let (release, released) = tokio::sync::watch::channel(false);
        let seen = batches.clone();
        let batcher = Batcher::spawn("test", shape(1, 2, TEN_MINUTES), move |items: Vec<u32>| {
            let seen = seen.clone();
            let mut released = released.clone();
            async move {
                if let Ok(mut seen) = seen.lock() {
                    seen.push(items.clone());
                }
                let _ = released.wait_for(|released| *released).await;
                items
            }
        });
        let submit = |item: u32| {
            let batcher = batcher.clone();
            tokio::spawn(async move { batcher.submit(item).await.ok() })
        };
        let count = || batches.lock().map(|b| b.len()).unwrap_or(0);
        // A lone first request goes at once; two queue behind it and go
        // together: the lane is under load.
        let first = submit(0);
        while count() == 0 {
            tokio::task::yield_now().await;
        }
        let queued = [submit(1), submit(2)];
        while batcher.sender.capacity() > 2 - 2 {
            tokio::task::yield_now().await;
        }
        let _ = release.send(true);
        assert_eq!(first.await.ok().flatten(), Some(0));
        for (item, handle) in (1..=2).zip(queued) {
            assert_eq!(handle.await.ok().flatten(), Some(item));
        }
        // The next request waits for company (here: until its batch is
        // full; its linger is ten minutes) instead of going alone.
        let third = submit(3);
        while batcher.sender.capacity() < 2 {
            tokio::task::yield_now().await;
        }
        let fourth = submit(4);
        assert_eq!(third.await.ok().flatten(), Some(3));
        assert_eq!(fourth.await.ok().flatten(), Some(4));
        let batches = batches.lock().map(|b| b.clone()).unwrap_or_default();
        assert_eq!(batches, [vec![0], vec![1, 2], vec![3, 4]]);
    }

    #[tokio::test]
    async fn a_lone_request_after_a_lone_request_never_lingers() {
        let batcher = Batcher::spawn(
            "test",
            shape(1, 64, TEN_MINUTES),
            |items: Vec<u32>| async move { items },
        );
        for item in 0..3 {
            let answer = tokio::time::timeout(Duration::from_secs(30), batcher.submit(item))
                .await
                .expect("a lone request waited for company");
            assert_eq!(answer.ok(), Some(item));
        }
    }
}
