//! An incremental sync: the slot's changes since the stored position, up
//! to the WAL position when the run started, read with
//! `pg_logical_slot_peek_binary_changes` through a cursor (one decoding
//! pass, fetched in chunks). Peeking consumes nothing: the slot is moved
//! up to the stored cursor at the start of the next run, so a run that
//! dies before its batches are stored reads them again.
//!
//! Inserts and updates are upserts; deletes (hard ones) are deletions; an
//! update that changes the key deletes the old id; a TRUNCATE deletes every
//! entity of its table (the stored ones, and those this run emitted).
//! Each batch ends at a commit, whose end is the batch's cursor; a
//! transaction larger than a batch is split, its parts carrying the
//! previous commit's cursor (replayed parts are unchanged by hash).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::TryStreamExt;
use tokio_postgres::Client;

use super::pgoutput::{self, Datum, Message};
pub use super::reread::Rereader;
use super::rows::{Cursor, Shape, Snapshot};
use super::{FETCH_ROWS, Names, Pending, Plan, Sender, setup};
use crate::postgres::classify;
use crate::{EntityBatch, SourceError};

pub async fn read(
    client: &mut Client,
    plan: &Plan,
    names: &Names,
    stored: Cursor,
    mut rereader: Rereader<'_>,
    sender: &Sender,
) -> Result<(), SourceError> {
    let again = "run a full sync (force_full_sync=true) to start again";
    if setup::slot_position(client, &names.slot).await?.is_none() {
        return Err(SourceError::Permanent(format!(
            "replication slot {} no longer exists; {again}",
            names.slot
        )));
    }
    setup::advance(client, &names.slot, &stored.lsn).await?;
    let lag = setup::lag_bytes(client, &names.slot).await?;
    if lag > i64::try_from(plan.config.max_lag_bytes).unwrap_or(i64::MAX) {
        let dropped = if plan.config.create_slot {
            setup::drop_slot(client, &names.slot).await?;
            "syncway dropped it so that the source's disk does not fill; "
        } else {
            ""
        };
        return Err(SourceError::Permanent(format!(
            "replication slot {} holds {lag} bytes of WAL, over max_lag_bytes ({}); \
             {dropped}{again}",
            names.slot, plan.config.max_lag_bytes
        )));
    }
    let filter = match (&stored.snapshot, &stored.snapshot_lsn) {
        (Some(snapshot), Some(lsn)) => Snapshot::parse(snapshot).zip(pgoutput::lsn_parse(lsn)),
        _ => None,
    };
    let transaction = client
        .transaction()
        .await
        .map_err(|error| classify(error, "starting to read changes"))?;
    transaction
        .execute(
            "DECLARE syncway_changes NO SCROLL CURSOR FOR
             SELECT data FROM pg_logical_slot_peek_binary_changes(
                 $1, pg_current_wal_lsn(), NULL,
                 'proto_version', '1', 'publication_names', $2)",
            &[&names.slot, &names.publication],
        )
        .await
        .map_err(|error| classify(error, "reading changes"))?;
    let wanted: HashSet<(String, String)> = plan
        .config
        .table_parts()
        .map(|(schema, name)| (schema.to_owned(), name.to_owned()))
        .collect();
    let mut state = State {
        cursor: stored,
        filter,
        relations: HashMap::new(),
        skipping: false,
        pending: Pending::default(),
        emitted: HashMap::new(),
        changed: false,
        at_commit: false,
    };
    let fetch = format!("FETCH {FETCH_ROWS} FROM syncway_changes");
    loop {
        let rows = transaction
            .query_raw(fetch.as_str(), super::NO_PARAMETERS)
            .await
            .map_err(|error| classify(error, "reading changes"))?;
        futures_util::pin_mut!(rows);
        let mut fetched = 0u64;
        while let Some(row) = rows
            .try_next()
            .await
            .map_err(|error| classify(error, "reading changes"))?
        {
            fetched += 1;
            let data: &[u8] = row.get(0);
            let message =
                pgoutput::parse(data).map_err(|error| SourceError::Permanent(error.to_string()))?;
            if let Step::Truncate(prefixes) =
                state.apply(message, plan, &wanted, &mut rereader).await?
                && !truncate(&mut state, plan, &prefixes, sender).await?
            {
                return Ok(());
            }
            if state.pending.is_over(plan, state.at_commit) && !state.flush(sender).await {
                return Ok(());
            }
        }
        if fetched < FETCH_ROWS {
            break;
        }
    }
    if !state.pending.is_empty() || state.changed {
        state.flush(sender).await;
    }
    Ok(())
}

enum Step {
    Done,
    /// The id prefixes of tables truncated.
    Truncate(Vec<String>),
}

struct State {
    /// The position after the last commit read.
    cursor: Cursor,
    filter: Option<(Snapshot, u64)>,
    relations: HashMap<u32, Option<Arc<Shape>>>,
    /// The current transaction was in the full sync's snapshot.
    skipping: bool,
    pending: Pending,
    /// Ids upserted in this run, per table prefix (for a TRUNCATE).
    emitted: HashMap<String, HashSet<String>>,
    /// The cursor moved since the last batch sent.
    changed: bool,
    /// The last message read was a commit.
    at_commit: bool,
}

impl State {
    async fn apply(
        &mut self,
        message: Message,
        plan: &Plan,
        wanted: &HashSet<(String, String)>,
        rereader: &mut Rereader<'_>,
    ) -> Result<Step, SourceError> {
        self.at_commit = false;
        match message {
            Message::Begin { final_lsn, xid } => {
                self.skipping = self
                    .filter
                    .as_ref()
                    .is_some_and(|(snapshot, lsn)| final_lsn < *lsn && snapshot.saw(xid));
            }
            Message::Commit { end_lsn } => {
                self.cursor.lsn = pgoutput::lsn_text(end_lsn);
                if self.filter.as_ref().is_some_and(|(_, lsn)| end_lsn >= *lsn) {
                    self.filter = None;
                    self.cursor.snapshot = None;
                    self.cursor.snapshot_lsn = None;
                }
                self.changed = true;
                self.at_commit = true;
                return Ok(Step::Done);
            }
            Message::Relation(relation) => {
                let shape = wanted
                    .contains(&(relation.schema.clone(), relation.name.clone()))
                    .then(|| {
                        Arc::new(Shape {
                            schema: relation.schema,
                            name: relation.name,
                            columns: relation
                                .columns
                                .into_iter()
                                .map(|c| (c.name, c.type_oid, c.key))
                                .collect(),
                        })
                    });
                self.relations.insert(relation.id, shape);
            }
            Message::Insert { relation, new } => {
                if let Some(shape) = self.shape(relation) {
                    self.upsert(&shape, new, plan, rereader).await?;
                }
            }
            Message::Update { relation, old, new } => {
                if let Some(shape) = self.shape(relation) {
                    let old_id = old.as_deref().and_then(|old| shape.entity_id(old));
                    if let Some(old_id) =
                        old_id.filter(|id| Some(id) != shape.entity_id(&new).as_ref())
                    {
                        self.pending.delete(old_id);
                    }
                    // An unchanged TOASTed value: the old row has it (REPLICA
                    // IDENTITY FULL), or the table does.
                    let new = match old {
                        Some(old) if old.len() == new.len() => new
                            .into_iter()
                            .zip(old)
                            .map(|(new, old)| if new == Datum::Unchanged { old } else { new })
                            .collect(),
                        _ => new,
                    };
                    self.upsert(&shape, new, plan, rereader).await?;
                }
            }
            Message::Delete { relation, old } => {
                if let Some(shape) = self.shape(relation) {
                    match shape.entity_id(&old) {
                        Some(id) => self.pending.delete(id),
                        None => self.pending.fail("", "a deleted row without its key"),
                    }
                }
            }
            Message::Truncate { relations } => {
                let prefixes: Vec<String> = relations
                    .iter()
                    .filter_map(|id| self.shape(*id))
                    .map(|shape| shape.prefix())
                    .collect();
                if !prefixes.is_empty() {
                    return Ok(Step::Truncate(prefixes));
                }
            }
            Message::Other => {}
        }
        Ok(Step::Done)
    }

    /// The shape of a table to sync, unless the change is to be skipped.
    fn shape(&self, relation: u32) -> Option<Arc<Shape>> {
        if self.skipping {
            return None;
        }
        self.relations.get(&relation).cloned().flatten()
    }

    async fn upsert(
        &mut self,
        shape: &Shape,
        values: Vec<Datum>,
        plan: &Plan,
        rereader: &mut Rereader<'_>,
    ) -> Result<(), SourceError> {
        let values = if values.contains(&Datum::Unchanged) {
            match rereader.row(shape, &values).await? {
                Some(current) => current,
                // Gone since: a later delete in the stream says so.
                None => return Ok(()),
            }
        } else {
            values
        };
        if let Some(id) = shape.entity_id(&values) {
            self.emitted.entry(shape.prefix()).or_default().insert(id);
        }
        self.pending.upsert(shape, &values, &plan.limits);
        Ok(())
    }

    async fn flush(&mut self, sender: &Sender) -> bool {
        self.changed = false;
        self.pending.flush(sender, Some(&self.cursor)).await
    }
}

/// A TRUNCATE: what is pending goes first, then a deletion of every stored
/// entity of the tables and of every one this run emitted. False when the
/// job stopped reading.
async fn truncate(
    state: &mut State,
    plan: &Plan,
    prefixes: &[String],
    sender: &Sender,
) -> Result<bool, SourceError> {
    let Some(stored) = plan.stored.clone() else {
        return Err(SourceError::Permanent(
            "a TRUNCATE needs the stored entities' ids, which this run cannot read".into(),
        ));
    };
    let cursor = state.cursor.clone();
    if !state.pending.is_empty() && !state.pending.flush(sender, Some(&cursor)).await {
        return Ok(false);
    }
    let batch_size = plan.config.batch_size as usize;
    for prefix in prefixes {
        let mut ids: Vec<String> = state
            .emitted
            .remove(prefix)
            .map(|ids| ids.into_iter().collect())
            .unwrap_or_default();
        let mut after: Option<String> = None;
        loop {
            let page = stored.page(prefix, after.as_deref(), batch_size).await?;
            let last = page.last().cloned();
            ids.extend(page);
            if ids.len() >= batch_size || last.is_none() {
                let batch = EntityBatch {
                    deleted: std::mem::take(&mut ids),
                    cursor: serde_json::to_value(&cursor).ok(),
                    ..EntityBatch::default()
                };
                if !batch.deleted.is_empty() && sender.send(Ok(Some(batch))).await.is_err() {
                    return Ok(false);
                }
            }
            match last {
                Some(last) => after = Some(last),
                None => break,
            }
        }
    }
    Ok(true)
}
