//! A source read by a task of its own (the database connectors): the task
//! owns the connection and hands batches over a channel of one, so reading
//! runs one batch ahead of the caller; dropping the source ends the task.

use std::future::Future;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use crate::{EntityBatch, Source, SourceError};

/// What the reading task hands over: a batch, the end (`Ok(None)`), or the
/// error that stopped it.
pub(crate) type Message = Result<Option<EntityBatch>, SourceError>;
/// Where a reading task sends its batches.
pub(crate) type Sender = mpsc::Sender<Message>;

pub struct TaskSource {
    /// The connector's name, for the error when its task dies unheard.
    name: &'static str,
    batches: mpsc::Receiver<Message>,
    ended: bool,
}

impl TaskSource {
    /// Spawns `read` with a sender for its batches; when it returns, its
    /// result (the end, or the error) is sent after them.
    pub(crate) fn spawn<F, Fut>(name: &'static str, read: F) -> Self
    where
        F: FnOnce(Sender) -> Fut,
        Fut: Future<Output = Result<(), SourceError>> + Send + 'static,
    {
        let (sender, batches) = mpsc::channel(1);
        let reading = read(sender.clone());
        tokio::spawn(async move {
            let last = reading.await.map(|()| None);
            // The receiver may be gone (the job stopped); nothing to do.
            let _ = sender.send(last).await;
        });
        TaskSource {
            name,
            batches,
            ended: false,
        }
    }
}

impl Source for TaskSource {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<EntityBatch>, SourceError>> {
        Box::pin(async move {
            if self.ended {
                return Ok(None);
            }
            match self.batches.recv().await {
                Some(Ok(Some(batch))) => Ok(Some(batch)),
                Some(Ok(None)) => {
                    self.ended = true;
                    Ok(None)
                }
                Some(Err(error)) => Err(error),
                // The task ended without saying so: never take that for the
                // end of the source (a full sync would delete the rest).
                None => Err(SourceError::Transient {
                    message: format!("the {} reader stopped unexpectedly", self.name),
                    retry_after: None,
                }),
            }
        })
    }
}
