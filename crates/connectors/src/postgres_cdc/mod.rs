//! The `postgres_cdc` connector: tables of a PostgreSQL database read
//! through logical decoding, so that a row deleted at the source is deleted
//! by the next incremental sync, not the next full one.
//!
//! A full sync ([`snapshot`]) reads every row from one snapshot taken after
//! the slot's start; an incremental one ([`stream`]) reads the slot's
//! changes since the stored position (the cursor: the LSN after the last
//! commit stored, and while it matters the snapshot's visibility, so that
//! a transaction both in the snapshot and in the stream is applied once).
//! Everything goes over an ordinary connection (the SQL interface to
//! logical decoding): tokio-postgres has no replication protocol, and the
//! SQL functions need none. Connections go where the egress policy allows,
//! as the `postgres` connector's do ([`crate::postgres`]).
//!
//! The entity id is `schema.table:` and the key (replica identity); the
//! payload is the row as JSON ([`rows`]). Deleting the connection drops its
//! slot ([`release`]).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use syncway_egress::Policy;
use syncway_model::PostgresCdcConfig;

use crate::postgres::connect;
pub(crate) use crate::postgres::{FETCH_ROWS, NO_PARAMETERS};
use crate::reader::{Sender, TaskSource};
use crate::{EntityBatch, Limits, SourceEntity, SourceError, StoredIds, SyncStart};

pub mod pgoutput;
mod reread;
pub mod rows;
mod setup;
mod snapshot;
mod stream;

use rows::{Cursor, Shape};
use setup::Names;

/// The `postgres_cdc` source.
pub struct PostgresCdcSource;

/// What a run reads with.
pub(crate) struct Plan {
    pub config: PostgresCdcConfig,
    pub limits: Limits,
    pub stored: Option<Arc<dyn StoredIds>>,
}

impl PostgresCdcSource {
    pub fn open(config: &PostgresCdcConfig, start: &SyncStart) -> Result<TaskSource, SourceError> {
        let target = connect::target(start.credentials.as_ref())?;
        let names = Names::of(config, &start.connection)?;
        let cursor = start
            .cursor
            .as_ref()
            .map(setup::stored_cursor)
            .transpose()?;
        let policy = start.policy.clone();
        let plan = Plan {
            config: config.clone(),
            limits: start.limits,
            stored: start.stored.clone(),
        };
        Ok(TaskSource::spawn(
            "postgres_cdc",
            move |sender| async move { read(target, &policy, &plan, &names, cursor, &sender).await },
        ))
    }
}

async fn read(
    target: connect::Target,
    policy: &Policy,
    plan: &Plan,
    names: &Names,
    cursor: Option<Cursor>,
    sender: &Sender,
) -> Result<(), SourceError> {
    let second = target.clone();
    let (mut client, connection) = connect::connect(target, policy, &plan.limits).await?;
    let result = async {
        setup::check_source(&client).await?;
        setup::prepare_session(&client).await?;
        let shapes = setup::shapes(&client, &plan.config).await?;
        match cursor {
            Some(cursor) if cursor.complete && cursor.slot == names.slot => {
                let rereader = stream::Rereader::new(second, policy, &plan.limits);
                stream::read(&mut client, plan, names, cursor, rereader, sender).await
            }
            // The first run, a full one, or one after a full sync that did
            // not finish (a first sync taken over from a dead worker resumes
            // with its partial cursor) or after the slot was renamed.
            _ => snapshot::read(&mut client, plan, names, &shapes, sender).await,
        }
    }
    .await;
    drop(client);
    let _ = connection.await;
    result
}

/// Drops what syncway made for a deleted connection: its slot (which
/// would otherwise hold the source's WAL for ever) and the publication,
/// when syncway named it.
pub async fn release(
    config: &PostgresCdcConfig,
    credentials: Option<&Value>,
    connection_id: &str,
    policy: &Policy,
    limits: &Limits,
) -> Result<(), SourceError> {
    let target = connect::target(credentials)?;
    let names = Names::of(config, connection_id)?;
    let (client, connection) = connect::connect(target, policy, limits).await?;
    let result = async {
        setup::drop_slot(&client, &names.slot).await?;
        if names.own_publication {
            let sql = format!(
                "DROP PUBLICATION IF EXISTS {}",
                setup::quote(&names.publication)
            );
            client
                .batch_execute(&sql)
                .await
                .map_err(|error| crate::postgres::classify(error, "dropping the publication"))?;
        }
        Ok(())
    }
    .await;
    drop(client);
    let _ = connection.await;
    result
}

/// Changes read but not yet sent, one state per id (the last one wins),
/// in the order first seen.
#[derive(Default)]
pub(crate) struct Pending {
    order: Vec<String>,
    latest: HashMap<String, Option<Value>>,
    bytes: u64,
    failed: EntityBatch,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.order.is_empty() && self.failed.failed == 0
    }

    /// Whether to send now: at a commit once a batch is full; inside a
    /// transaction only once it is twice that (or over the byte budget).
    pub fn is_over(&self, plan: &Plan, at_commit: bool) -> bool {
        let size = plan.config.batch_size as usize;
        let full = if at_commit { size } else { size * 2 };
        self.order.len() >= full || self.bytes >= plan.limits.max_batch_bytes
    }

    fn touch(&mut self, id: &str) {
        if !self.latest.contains_key(id) {
            self.order.push(id.to_owned());
        }
    }

    pub fn upsert(&mut self, shape: &Shape, values: &[pgoutput::Datum], limits: &Limits) {
        let Some(id) = shape.entity_id(values) else {
            self.fail("", format!("a row of {} without its key", shape.prefix()));
            return;
        };
        let Some(payload) = shape.payload(values) else {
            self.fail(id, "a value of the row was not sent");
            return;
        };
        let size = serde_json::to_vec(&payload).map_or(u64::MAX, |bytes| bytes.len() as u64);
        if size > limits.max_entity_bytes {
            self.fail(
                id,
                format!("the row is {size} bytes as JSON, over the entity limit"),
            );
            return;
        }
        self.bytes += size;
        self.touch(&id);
        self.latest.insert(id, Some(payload));
    }

    pub fn delete(&mut self, id: String) {
        self.touch(&id);
        self.latest.insert(id, None);
    }

    pub fn fail(&mut self, id: impl Into<String>, reason: impl Into<String>) {
        self.failed.fail(id, reason);
    }

    /// Sends what is pending with `cursor`; false when the job stopped
    /// reading.
    pub async fn flush(&mut self, sender: &Sender, cursor: Option<&Cursor>) -> bool {
        let mut batch = std::mem::take(&mut self.failed);
        for id in std::mem::take(&mut self.order) {
            match self.latest.remove(&id) {
                Some(Some(payload)) => batch.entities.push(SourceEntity { id, payload }),
                Some(None) => batch.deleted.push(id),
                None => {}
            }
        }
        self.bytes = 0;
        batch.cursor = cursor.and_then(|cursor| serde_json::to_value(cursor).ok());
        sender.send(Ok(Some(batch))).await.is_ok()
    }
}
