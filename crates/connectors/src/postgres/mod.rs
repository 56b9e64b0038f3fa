//! The `postgres` connector: one table of any PostgreSQL database.
//!
//! One entity per row: the id is the primary key as text, the payload the
//! row as JSON (`to_jsonb`). A sync reads inside one REPEATABLE READ, READ
//! ONLY transaction (one consistent snapshot) through a portal, `batch_size`
//! rows at a time, so memory stays bounded whatever the table's size. A
//! background task owns the connection and hands batches over a channel of
//! one; dropping the source (a cancelled job) ends the task and the
//! transaction.
//!
//! With a cursor column, rows are read in (cursor, primary key) order and
//! each batch's cursor is the last row's value: everything before it was
//! emitted. An incremental sync reads rows whose cursor is at or after the
//! stored one, minus `lookback_seconds` for time cursors, so that rows
//! committed late with an earlier timestamp are still read; re-read rows
//! are unchanged by hash and count nothing. Without a cursor column every
//! sync reads the whole table in primary key order.
//!
//! The connection goes only where the egress policy allows ([`connect`]).
//! Rows stream from a cursor (many per round trip; the driver reads no
//! further while a row waits to be taken, so memory stays bounded), and a
//! batch ends early once its payloads reach the batch byte budget; a row
//! whose payload is over the entity limit is not sent by the server at all
//! and counts as failed.
//!
//! Identifiers come from the configuration and are always quoted; the
//! table and columns are checked against the catalog before reading, so
//! that a missing one is a clear permanent error.

use futures_util::TryStreamExt;
use serde_json::Value;
use syncway_model::{ErrorCategory, PostgresConfig};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, IsolationLevel};

use crate::reader::{Sender, TaskSource};
use crate::{EntityBatch, Limits, SourceEntity, SourceError, SyncStart};

pub(crate) mod connect;

/// The `postgres` source.
pub struct PostgresSource;

impl PostgresSource {
    /// Starts reading. The connection's `schedule.cursor_field` is the
    /// cursor column when the config names none.
    pub fn open(config: &PostgresConfig, start: &SyncStart) -> Result<TaskSource, SourceError> {
        let target = connect::target(start.credentials.as_ref())?;
        let policy = start.policy.clone();
        let limits = start.limits;
        let plan = Plan {
            config: config.clone(),
            cursor_column: config
                .cursor_column
                .clone()
                .or_else(|| start.cursor_field.clone()),
            cursor: start.cursor.clone(),
            limits,
        };
        Ok(TaskSource::spawn("postgres", move |sender| async move {
            read(target, &policy, plan, &sender).await
        }))
    }
}

struct Plan {
    config: PostgresConfig,
    cursor_column: Option<String>,
    cursor: Option<Value>,
    limits: Limits,
}

/// A double-quoted SQL identifier.
pub(crate) fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// How a database error bears on the job.
pub(crate) fn classify(error: tokio_postgres::Error, doing: &str) -> SourceError {
    let Some(db) = error.as_db_error() else {
        // A certificate that does not verify, or a server that will not
        // speak TLS when it must: retrying cannot help.
        let text = error.to_string();
        if text.contains("TLS") || text.contains("does not support TLS") {
            let cause = std::error::Error::source(&error)
                .map(|cause| format!(": {cause}"))
                .unwrap_or_default();
            return SourceError::Permanent(format!("{doing}: TLS failed{cause}"));
        }
        // IO, refused connection, closed connection: try again later.
        return SourceError::Transient {
            message: format!("{doing}: {error}"),
            retry_after: None,
        };
    };
    let code = db.code();
    let message = format!("{doing}: {}", db.message());
    if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    {
        return SourceError::Credentials {
            category: ErrorCategory::ApiKeyInvalid,
            message,
        };
    }
    let class = code.code().get(..2).unwrap_or_default();
    // Connection exceptions, insufficient resources, operator intervention,
    // serialization failures: the database may answer later.
    if matches!(class, "08" | "53" | "57" | "40") {
        return SourceError::Transient {
            message,
            retry_after: None,
        };
    }
    SourceError::Permanent(message)
}

/// The columns the sync needs, as the catalog has them.
struct Columns {
    table: String,
    primary_key: String,
    /// The cursor column and its type, as `format_type` spells it.
    cursor: Option<(String, String)>,
    deleted: Option<String>,
}

async fn inspect(client: &Client, plan: &Plan) -> Result<Columns, SourceError> {
    let (schema, name) = plan.config.table_parts();
    let table = match schema {
        Some(schema) => format!("{}.{}", quote(schema), quote(name)),
        None => quote(name),
    };
    let exists = client
        .query_opt("SELECT to_regclass($1)::oid", &[&table])
        .await
        .map_err(|error| classify(error, "looking up the table"))?
        .and_then(|row| row.get::<_, Option<u32>>(0));
    let Some(oid) = exists else {
        return Err(SourceError::Permanent(format!(
            "table {} does not exist (or is not visible to this user)",
            plan.config.table
        )));
    };
    let column_type = |column: String| async move {
        let row = client
            .query_opt(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                 WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped",
                &[&oid, &column],
            )
            .await
            .map_err(|error| classify(error, "looking up a column"))?;
        match row {
            Some(row) => Ok((column, row.get::<_, String>(0))),
            None => Err(SourceError::Permanent(format!(
                "column {column} does not exist in table {}",
                plan.config.table
            ))),
        }
    };
    let (primary_key, _) = column_type(plan.config.primary_key.clone()).await?;
    let cursor = match &plan.cursor_column {
        Some(column) => Some(column_type(column.clone()).await?),
        None => None,
    };
    let deleted = match &plan.config.deleted_column {
        Some(column) => {
            let (column, kind) = column_type(column.clone()).await?;
            if kind != "boolean" {
                return Err(SourceError::Permanent(format!(
                    "deleted_column {column} is {kind}, not boolean"
                )));
            }
            Some(column)
        }
        None => None,
    };
    Ok(Columns {
        table,
        primary_key,
        cursor,
        deleted,
    })
}

fn is_time(kind: &str) -> bool {
    kind.starts_with("timestamp") || kind == "date"
}

/// The query, and whether it takes the stored cursor as `$1`.
fn query(columns: &Columns, plan: &Plan) -> (String, bool) {
    let pk = quote(&columns.primary_key);
    let deleted = match &columns.deleted {
        Some(column) => format!("COALESCE(t.{}, false)", quote(column)),
        None => "false".to_owned(),
    };
    let (cursor_select, filter, order) = match &columns.cursor {
        None => ("NULL::text".to_owned(), String::new(), format!("t.{pk}")),
        Some((column, kind)) => {
            let column = quote(column);
            let filter = match &plan.cursor {
                None => String::new(),
                Some(_) if is_time(kind) => format!(
                    "WHERE t.{column} >= $1::text::{kind} - make_interval(secs => {})",
                    plan.config.lookback_seconds
                ),
                Some(_) => format!("WHERE t.{column} >= $1::text::{kind}"),
            };
            (
                format!("t.{column}::text"),
                filter,
                format!("t.{column}, t.{pk}"),
            )
        }
    };
    let takes_cursor = !filter.is_empty();
    // The ordered subquery is not flattened, so each row's document is
    // built once; one over the entity limit is not sent, only its size.
    let max = plan.limits.max_entity_bytes;
    (
        format!(
            "SELECT id, CASE WHEN octet_length(doc) <= {max} THEN doc END, octet_length(doc),
                    cursor, deleted
             FROM (SELECT t.{pk}::text AS id, to_jsonb(t)::text AS doc,
                          {cursor_select} AS cursor, {deleted} AS deleted
                   FROM {table} t {filter} ORDER BY {order}) r",
            table = columns.table,
        ),
        takes_cursor,
    )
}

/// The stored cursor as the text the query casts back.
fn cursor_text(cursor: &Value) -> String {
    match cursor {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

async fn read(
    target: connect::Target,
    policy: &syncway_egress::Policy,
    plan: Plan,
    sender: &Sender,
) -> Result<(), SourceError> {
    let (mut client, connection) = connect::connect(target, policy, &plan.limits).await?;
    let result = stream(&mut client, &plan, sender).await;
    drop(client);
    let _ = connection.await;
    result
}

async fn stream(client: &mut Client, plan: &Plan, sender: &Sender) -> Result<(), SourceError> {
    let columns = inspect(client, plan).await?;
    let (sql, takes_cursor) = query(&columns, plan);
    let transaction = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|error| classify(error, "starting the read"))?;
    // A cursor (not a portal): Postgres plans it to return its first rows
    // fast (`cursor_tuple_fraction`), so with an index on the order columns
    // rows stream from the table instead of waiting for a sort of all of it.
    let declare = format!("DECLARE syncway_read NO SCROLL CURSOR FOR {sql}");
    let cursor = plan.cursor.as_ref().map(cursor_text);
    if takes_cursor {
        transaction.execute(declare.as_str(), &[&cursor]).await
    } else {
        transaction.execute(declare.as_str(), &[]).await
    }
    .map_err(|error| classify(error, "reading the table"))?;
    let batch_size = plan.config.batch_size as usize;
    let limits = &plan.limits;
    let fetch = format!("FETCH {FETCH_ROWS} FROM syncway_read");
    // The cursor so far: a batch without rows keeps the stored one.
    let mut last_cursor = plan.cursor.clone();
    let mut batch = Batch::default();
    loop {
        let rows = transaction
            .query_raw(fetch.as_str(), NO_PARAMETERS)
            .await
            .map_err(|error| classify(error, "reading the table"))?;
        futures_util::pin_mut!(rows);
        let mut fetched = 0u64;
        while let Some(row) = rows
            .try_next()
            .await
            .map_err(|error| classify(error, "reading the table"))?
        {
            fetched += 1;
            batch.add(&row, &mut last_cursor);
            if batch.rows >= batch_size || batch.bytes >= limits.max_batch_bytes {
                let mut full = std::mem::take(&mut batch).entities;
                full.cursor = last_cursor.clone();
                if sender.send(Ok(Some(full))).await.is_err() {
                    // The job stopped reading.
                    return Ok(());
                }
            }
        }
        if fetched < FETCH_ROWS {
            break;
        }
    }
    if batch.rows > 0 {
        let mut last = batch.entities;
        last.cursor = last_cursor;
        let _ = sender.send(Ok(Some(last))).await;
    }
    Ok(())
}

/// Rows per FETCH. Rows are streamed to the reader as they arrive (the
/// driver reads no further while one waits to be taken), so a chunk bounds
/// round trips, not memory: a table is read in few statements, each short
/// enough for the session's `statement_timeout`.
pub(crate) const FETCH_ROWS: u64 = 10_000;

/// The parameters of a statement that takes none, for `query_raw`.
pub(crate) const NO_PARAMETERS: [&(dyn tokio_postgres::types::ToSql + Sync); 0] = [];

/// The batch being filled: its rows so far and their payloads' bytes.
#[derive(Default)]
struct Batch {
    entities: EntityBatch,
    rows: usize,
    bytes: u64,
}

impl Batch {
    /// One row of the read (id, payload or NULL when over the limit, its
    /// size, cursor text, deleted flag) into the batch.
    fn add(&mut self, row: &tokio_postgres::Row, last_cursor: &mut Option<Value>) {
        self.rows += 1;
        let batch = &mut self.entities;
        let id: Option<String> = row.get(0);
        let Some(id) = id else {
            // A row without a key cannot be stored; count it.
            batch.fail("", "a row whose primary key is NULL");
            return;
        };
        if let Some(cursor) = row.get::<_, Option<String>>(3) {
            *last_cursor = Some(Value::String(cursor));
        }
        if row.get::<_, bool>(4) {
            batch.deleted.push(id);
            return;
        }
        let Some(doc) = row.get::<_, Option<&str>>(1) else {
            let size: i32 = row.get(2);
            batch.fail(
                id,
                format!("the row is {size} bytes as JSON, over the entity limit"),
            );
            return;
        };
        self.bytes += doc.len() as u64;
        match serde_json::from_str(doc) {
            Ok(payload) => batch.entities.push(SourceEntity { id, payload }),
            Err(_) => batch.fail(id, "the row does not convert to JSON"),
        }
    }
}
