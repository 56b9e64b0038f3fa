//! The `stub` connector: deterministic synthetic data, append-only.
//!
//! Entity `i` is `stub-{i}`; its content depends only on (seed, i,
//! payload_bytes). The cursor is the highest index emitted, so an incremental
//! sync emits the indices above it. `fail_after` makes the source fail once it
//! has emitted that many entities in a run; `delay_ms_per_entity` slows it
//! down (for tests that need a job to be running).

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::json;
use syncway_model::{ErrorCategory, StubConfig, StubFailKind};

use crate::{EntityBatch, Source, SourceEntity, SourceError, SyncStart};

/// Entities per batch when the source is not slowed down.
const BATCH_SIZE: u64 = 5000;
/// A slowed-down source still emits a batch about this often, so that counts
/// grow visibly while the job runs.
const SLOW_BATCH_MILLIS: u64 = 200;

#[derive(Debug)]
pub struct StubSource {
    config: StubConfig,
    next_index: u64,
    emitted: u64,
    batch_size: u64,
}

impl StubSource {
    pub fn new(config: &StubConfig, start: &SyncStart) -> Result<Self, SourceError> {
        let next_index = match &start.cursor {
            None => 0,
            Some(cursor) => cursor
                .as_u64()
                .ok_or_else(|| {
                    SourceError::Permanent(format!(
                        "stored cursor {cursor} is not a stub index; run a full sync"
                    ))
                })?
                .saturating_add(1),
        };
        let batch_size = match config.delay_ms_per_entity {
            0 => BATCH_SIZE,
            delay => (SLOW_BATCH_MILLIS / delay).clamp(1, BATCH_SIZE),
        };
        // Batches stay within the batch byte budget (an entity is its body
        // plus about 100 bytes).
        let per_entity = u64::from(config.payload_bytes) + 100;
        let batch_size = batch_size.min((start.limits.max_batch_bytes / per_entity).max(1));
        Ok(StubSource {
            config: config.clone(),
            next_index,
            emitted: 0,
            batch_size,
        })
    }

    fn failure(&self) -> SourceError {
        let message = format!(
            "stub source failed after {} entities (fail_after)",
            self.emitted
        );
        match self.config.fail_kind {
            StubFailKind::Transient => SourceError::Transient {
                message,
                retry_after: None,
            },
            StubFailKind::Credentials => SourceError::Credentials {
                category: ErrorCategory::ApiKeyInvalid,
                message: "stub source rejected its credentials (fail_kind = credentials)".into(),
            },
        }
    }
}

impl Source for StubSource {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<EntityBatch>, SourceError>> {
        Box::pin(async move {
            let remaining = self.config.entity_count.saturating_sub(self.next_index);
            let mut size = remaining.min(self.batch_size);
            if let Some(fail_after) = self.config.fail_after {
                let allowed = fail_after.saturating_sub(self.emitted);
                if allowed == 0 && remaining > 0 {
                    return Err(self.failure());
                }
                size = size.min(allowed);
            }
            if size == 0 {
                return Ok(None);
            }
            if self.config.delay_ms_per_entity > 0 {
                tokio::time::sleep(Duration::from_millis(
                    self.config.delay_ms_per_entity * size,
                ))
                .await;
            }
            let first = self.next_index;
            let entities = (first..first + size)
                .map(|index| entity(&self.config, index))
                .collect();
            self.next_index += size;
            self.emitted += size;
            Ok(Some(EntityBatch {
                entities,
                cursor: Some(json!(self.next_index - 1)),
                ..EntityBatch::default()
            }))
        })
    }
}

/// The content of entity `index`: a function of (seed, index, payload_bytes) only.
pub fn entity(config: &StubConfig, index: u64) -> SourceEntity {
    let id = format!("stub-{index}");
    let payload = json!({
        "id": id,
        "index": index,
        "title": format!("Stub entity {index}"),
        "body": body(config.seed, index, config.payload_bytes as usize),
    });
    SourceEntity { id, payload }
}

/// `len` pseudo-random lowercase letters and digits from splitmix64.
fn body(seed: u64, index: u64, len: usize) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz012345";
    let mut state = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = String::with_capacity(len);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        for shift in (0..60).step_by(5) {
            if out.len() == len {
                break;
            }
            out.push(ALPHABET[((z >> shift) & 31) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(entity_count: u64) -> StubConfig {
        StubConfig {
            entity_count,
            ..StubConfig::default()
        }
    }

    async fn drain(source: &mut StubSource) -> Result<Vec<EntityBatch>, SourceError> {
        let mut batches = Vec::new();
        while let Some(batch) = source.next_batch().await? {
            batches.push(batch);
        }
        Ok(batches)
    }

    #[tokio::test]
    async fn full_sync_emits_every_entity_in_order_with_a_covering_cursor() {
        let mut source = StubSource::new(&config(2500), &SyncStart::default()).unwrap();
        let batches = drain(&mut source).await.unwrap();
        let ids: Vec<String> = batches
            .iter()
            .flat_map(|b| b.entities.iter().map(|e| e.id.clone()))
            .collect();
        assert_eq!(ids.len(), 2500);
        assert_eq!(ids[0], "stub-0");
        assert_eq!(ids[2499], "stub-2499");
        assert_eq!(
            batches.last().and_then(|b| b.cursor.clone()),
            Some(json!(2499))
        );
    }

    #[tokio::test]
    async fn incremental_sync_starts_after_the_cursor() {
        let start = SyncStart {
            cursor: Some(json!(97)),
            ..SyncStart::default()
        };
        let mut source = StubSource::new(&config(100), &start).unwrap();
        let batches = drain(&mut source).await.unwrap();
        let ids: Vec<&str> = batches
            .iter()
            .flat_map(|b| b.entities.iter().map(|e| e.id.as_str()))
            .collect();
        assert_eq!(ids, ["stub-98", "stub-99"]);
        let start = SyncStart {
            cursor: Some(json!(99)),
            ..SyncStart::default()
        };
        let mut source = StubSource::new(&config(100), &start).unwrap();
        assert!(drain(&mut source).await.unwrap_or_default().is_empty());
    }

    #[tokio::test]
    async fn batches_stay_within_the_batch_byte_budget() {
        let start = SyncStart {
            limits: crate::Limits {
                max_batch_bytes: 10_000,
                ..crate::Limits::default()
            },
            ..SyncStart::default()
        };
        let config = StubConfig {
            entity_count: 100,
            payload_bytes: 900,
            ..StubConfig::default()
        };
        let mut source = StubSource::new(&config, &start).expect("a stub source");
        let batches = drain(&mut source).await.expect("batches");
        // 10,000 bytes hold ten entities of 900 bytes and their metadata.
        let sizes: Vec<usize> = batches.iter().map(|b| b.entities.len()).collect();
        assert_eq!(sizes, [10; 10]);
    }

    #[test]
    fn content_depends_only_on_seed_index_and_size() {
        let a = StubConfig {
            seed: 7,
            payload_bytes: 512,
            ..StubConfig::default()
        };
        assert_eq!(entity(&a, 3), entity(&a, 3));
        assert_ne!(entity(&a, 3).payload, entity(&a, 4).payload);
        let other_seed = StubConfig {
            seed: 8,
            ..a.clone()
        };
        assert_ne!(entity(&a, 3).payload, entity(&other_seed, 3).payload);
        let body = entity(&a, 3).payload["body"].as_str().map(str::len);
        assert_eq!(body, Some(512));
    }

    #[tokio::test]
    async fn fail_after_emits_exactly_that_many_then_fails() {
        let failing = StubConfig {
            entity_count: 2500,
            fail_after: Some(1200),
            ..StubConfig::default()
        };
        let mut source = StubSource::new(&failing, &SyncStart::default()).unwrap();
        let mut emitted = 0;
        let error = loop {
            match source.next_batch().await {
                Ok(Some(batch)) => emitted += batch.entities.len(),
                Ok(None) => panic!("source ended without failing"),
                Err(error) => break error,
            }
        };
        assert_eq!(emitted, 1200);
        assert_eq!(error.kind(), "transient");

        let credentials = StubConfig {
            fail_kind: StubFailKind::Credentials,
            fail_after: Some(0),
            ..failing
        };
        let mut source = StubSource::new(&credentials, &SyncStart::default()).unwrap();
        assert!(matches!(
            source.next_batch().await,
            Err(SourceError::Credentials {
                category: ErrorCategory::ApiKeyInvalid,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn fail_after_beyond_the_data_never_fails() {
        let failing = StubConfig {
            entity_count: 10,
            fail_after: Some(10),
            ..StubConfig::default()
        };
        let mut source = StubSource::new(&failing, &SyncStart::default()).unwrap();
        assert_eq!(drain(&mut source).await.map(|b| b.len()), Ok(1));
    }
}
