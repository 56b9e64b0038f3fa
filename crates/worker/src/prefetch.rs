//! The read-ahead: the source's batches read and prepared (hashed,
//! de-duplicated, checked against the entity limits) in a task of their
//! own, one batch ahead of the writes, each holding its share of the
//! process's memory budget ([`crate::memory`]) until it is committed.

use std::collections::HashMap;
use std::sync::Arc;

use syncway_connectors::{EntityBatch, EntityFailure, MAX_FAILURE_REASONS, SourceError};
use syncway_store::jobs::EntityWrite;
use tokio::sync::watch;

use crate::memory::{MemoryBudget, READ_FACTOR, Reservation, WRITE_FACTOR};

/// A source batch, hashed and de-duplicated, ready to write.
#[derive(Debug, Default)]
pub(crate) struct PreparedBatch {
    pub entities: Vec<EntityWrite>,
    pub deleted: Vec<String>,
    pub failed: i64,
    pub cursor: Option<serde_json::Value>,
    /// Why some of the failed entities failed.
    pub failures: Vec<EntityFailure>,
    /// The batch's share of the memory budget, given back when the batch
    /// is dropped (after its commit).
    pub reservation: Option<Reservation>,
}

/// Entity ids longer than this cannot be stored (the primary key's index
/// entries are bounded) and count as failed.
const MAX_ENTITY_ID_BYTES: usize = 1024;

/// Why Postgres could not store this id or payload text, if it could not.
fn unstorable(entity_id: &str) -> Option<&'static str> {
    if entity_id.is_empty() {
        Some("an empty entity id")
    } else if entity_id.len() > MAX_ENTITY_ID_BYTES {
        Some("an entity id over 1024 bytes")
    } else if entity_id.contains('\0') {
        Some("an entity id with a NUL character")
    } else {
        None
    }
}

impl PreparedBatch {
    /// Hashes each entity; a later duplicate of an id replaces the earlier
    /// one, and an id both written and deleted is written. An entity whose
    /// payload serializes to more than `max_entity_bytes`, or whose id
    /// Postgres cannot store, counts as failed.
    fn new(batch: EntityBatch, max_entity_bytes: u64) -> Self {
        let mut positions: HashMap<String, usize> = HashMap::with_capacity(batch.entities.len());
        let mut entities: Vec<EntityWrite> = Vec::with_capacity(batch.entities.len());
        let mut failed = batch.failed as i64;
        let mut failures = batch.failures;
        let mut fail = |failed: &mut i64, entity_id: String, reason: String| {
            *failed += 1;
            if failures.len() < MAX_FAILURE_REASONS {
                failures.push(EntityFailure { entity_id, reason });
            }
        };
        for entity in batch.entities {
            if let Some(reason) = unstorable(&entity.id) {
                let shown: String = entity.id.chars().take(64).filter(|c| *c != '\0').collect();
                fail(&mut failed, shown, reason.into());
                continue;
            }
            let Ok((payload, content_hash)) = syncway_model::canonical_json(&entity.payload) else {
                // Not representable as JSON: counted as failed, like any
                // entity the source could not produce.
                fail(
                    &mut failed,
                    entity.id,
                    "the payload is not representable as JSON".into(),
                );
                continue;
            };
            let write = EntityWrite {
                entity_id: entity.id,
                content_hash,
                payload,
            };
            if write.payload.len() as u64 > max_entity_bytes {
                let reason = format!(
                    "the payload is {} bytes, over the limit of {max_entity_bytes} \
                     (SYNCWAY_CONNECTORS__MAX_ENTITY_BYTES)",
                    write.payload.len()
                );
                fail(&mut failed, write.entity_id, reason);
                continue;
            }
            match positions.get(&write.entity_id) {
                Some(&at) => entities[at] = write,
                None => {
                    positions.insert(write.entity_id.clone(), entities.len());
                    entities.push(write);
                }
            }
        }
        let mut deleted = batch.deleted;
        deleted.retain(|id| !positions.contains_key(id) && unstorable(id).is_none());
        deleted.sort_unstable();
        deleted.dedup();
        PreparedBatch {
            entities,
            deleted,
            failed,
            cursor: batch.cursor,
            failures,
            reservation: None,
        }
    }

    /// The bytes the batch holds (its ids, hashes and payloads, roughly).
    fn bytes(&self) -> u64 {
        let entities: usize = self
            .entities
            .iter()
            .map(|e| e.payload.capacity() + e.entity_id.capacity() + e.content_hash.len() + 64)
            .sum();
        let deleted: usize = self.deleted.iter().map(|id| id.len() + 24).sum();
        (entities + deleted) as u64
    }
}

/// Reads and prepares (hashes) the source's batches in a task of its own,
/// one batch ahead, so that the next batch is read while the current one is
/// written. At most four batches of a job are in memory (one being written,
/// one the run holds back to commit with the job's end, one ready, one
/// being read), and all of them within the memory budget: the reader
/// reserves its batch before reading it and says when it waits for room
/// ([`Prefetch::hungry`]), so that the run writes the batch it holds back.
pub(crate) struct Prefetch {
    batches: tokio::sync::mpsc::Receiver<Result<Option<PreparedBatch>, SourceError>>,
    hungry: watch::Receiver<bool>,
    task: tokio::task::AbortHandle,
    ended: bool,
}

/// How the reader treats memory.
pub(crate) struct ReadBudget {
    pub memory: Arc<MemoryBudget>,
    /// The most the source may read into one batch.
    pub batch_bytes: u64,
}

impl Prefetch {
    pub fn spawn(
        mut source: Box<dyn syncway_connectors::Source>,
        max_entity_bytes: u64,
        budget: ReadBudget,
    ) -> Self {
        let (sender, batches) = tokio::sync::mpsc::channel(1);
        let (hungry_tx, hungry) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let wanted = READ_FACTOR * budget.batch_bytes;
                if budget.memory.would_wait(wanted) {
                    hungry_tx.send_replace(true);
                }
                let reservation = budget.memory.reserve(wanted).await;
                hungry_tx.send_replace(false);
                let next = match source.next_batch().await {
                    Ok(Some(batch)) => {
                        let mut prepared = PreparedBatch::new(batch, max_entity_bytes);
                        prepared.reservation = reservation.map(|mut reservation| {
                            reservation.shrink_to(WRITE_FACTOR * prepared.bytes());
                            reservation
                        });
                        Ok(Some(prepared))
                    }
                    Ok(None) => Ok(None),
                    Err(error) => Err(error),
                };
                let more = matches!(next, Ok(Some(_)));
                if sender.send(next).await.is_err() || !more {
                    return;
                }
            }
        })
        .abort_handle();
        Prefetch {
            batches,
            hungry,
            task,
            ended: false,
        }
    }

    /// True while the reader waits for room in the memory budget (the run
    /// should then write the batch it holds back).
    pub fn hunger(&self) -> watch::Receiver<bool> {
        self.hungry.clone()
    }

    pub async fn next(&mut self) -> Result<Option<PreparedBatch>, SourceError> {
        if self.ended {
            return Ok(None);
        }
        match self.batches.recv().await {
            Some(Ok(None)) => {
                self.ended = true;
                Ok(None)
            }
            Some(next) => next,
            // The reading task died (a panic in a connector): that is not
            // the end of the source, or a full sync would delete the rest.
            None => Err(SourceError::Transient {
                message: "the source reader stopped unexpectedly".into(),
                retry_after: None,
            }),
        }
    }
}

/// Resolves true when the reader waits for memory (false once it is gone).
pub(crate) async fn until_hungry(hunger: &mut watch::Receiver<bool>) -> bool {
    hunger.wait_for(|hungry| *hungry).await.is_ok()
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use syncway_connectors::SourceEntity;

    #[test]
    fn a_batch_keeps_the_last_copy_of_an_id_and_drops_deletes_it_writes() {
        let entity = |id: &str, v: i64| SourceEntity {
            id: id.into(),
            payload: json!({ "v": v }),
        };
        let batch = PreparedBatch::new(
            EntityBatch {
                entities: vec![entity("a", 1), entity("b", 1), entity("a", 2)],
                deleted: vec!["b".into(), "c".into(), "c".into()],
                failed: 2,
                cursor: Some(json!(9)),
                ..EntityBatch::default()
            },
            1 << 20,
        );
        let ids: Vec<&str> = batch
            .entities
            .iter()
            .map(|e| e.entity_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(batch.entities[0].payload, r#"{"v":2}"#);
        assert_eq!(batch.deleted, ["c"]);
        assert_eq!(batch.failed, 2);
    }

    #[test]
    fn oversized_and_unstorable_entities_fail_with_their_reason() {
        let batch = PreparedBatch::new(
            EntityBatch {
                entities: vec![
                    SourceEntity {
                        id: "big".into(),
                        payload: json!({"body": "x".repeat(2000)}),
                    },
                    SourceEntity {
                        id: "nul\0id".into(),
                        payload: json!({}),
                    },
                    SourceEntity {
                        id: "k".repeat(2000),
                        payload: json!({}),
                    },
                    SourceEntity {
                        id: "ok".into(),
                        payload: json!({"body": "x"}),
                    },
                ],
                ..EntityBatch::default()
            },
            1024,
        );
        let ids: Vec<&str> = batch
            .entities
            .iter()
            .map(|e| e.entity_id.as_str())
            .collect();
        assert_eq!(ids, ["ok"]);
        assert_eq!(batch.failed, 3);
        let reasons: Vec<&str> = batch.failures.iter().map(|f| f.reason.as_str()).collect();
        assert!(reasons[0].contains("over the limit of 1024"), "{reasons:?}");
        assert!(reasons[1].contains("NUL"), "{reasons:?}");
        assert!(reasons[2].contains("1024 bytes"), "{reasons:?}");
    }
}
