//! The `mysql` connector: one table or view of a MySQL (5.7+, 8) or
//! MariaDB (10.5+) database.
//!
//! One entity per row: the id is the primary key as text, the payload the
//! row as JSON ([`value`] maps each type). A sync reads inside one
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY`, in keyset pages
//! of `batch_size` rows ordered by (cursor, key) or by key alone, each page
//! continuing after the last row read: no OFFSET, so a page costs the same
//! at the end of the table as at the start. A background task owns the
//! connection and hands batches over a channel of one; dropping the source
//! ends the task and the transaction. A page whose payloads pass the batch
//! byte budget ends its batch early; the next page starts after the last
//! row kept.
//!
//! The cursor follows the `postgres` connector's rule: each batch's cursor
//! is its last row's value, and an incremental sync reads rows whose cursor
//! is at or after the stored one, minus `lookback_seconds` for time
//! cursors (rows re-read are unchanged by hash and count nothing). Rows
//! whose cursor is NULL sort first and are read by full syncs only.
//!
//! Identifiers come from the configuration and are always quoted; the
//! table and columns are checked against `information_schema` first, so a
//! missing one is a clear permanent error.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Row, Value as Mysql};
use serde_json::{Map, Value};
use syncway_model::{ErrorCategory, MysqlConfig};

use crate::reader::{Sender, TaskSource};
use crate::{EntityBatch, Limits, SourceEntity, SourceError, SyncStart};

mod connect;
pub mod value;

use value::Kind;

/// The `mysql` source.
pub struct MysqlSource;

impl MysqlSource {
    /// Starts reading. The connection's `schedule.cursor_field` is the
    /// cursor column when the config names none.
    pub fn open(config: &MysqlConfig, start: &SyncStart) -> Result<TaskSource, SourceError> {
        let target = connect::target(start.credentials.as_ref())?;
        let policy = start.policy.clone();
        let plan = Plan {
            config: config.clone(),
            cursor_column: config
                .cursor_column
                .clone()
                .or_else(|| start.cursor_field.clone()),
            cursor: start.cursor.clone(),
            limits: start.limits,
        };
        Ok(TaskSource::spawn("mysql", move |sender| async move {
            let mut conn = connect::connect(&target, &policy, &plan.limits).await?;
            let result = read(&mut conn, &plan, &sender).await;
            let _ = conn.disconnect().await;
            result
        }))
    }
}

struct Plan {
    config: MysqlConfig,
    cursor_column: Option<String>,
    cursor: Option<Value>,
    limits: Limits,
}

/// A back-quoted MySQL identifier.
fn quote(identifier: &str) -> String {
    format!("`{}`", identifier.replace('`', "``"))
}

/// How a driver error bears on the job.
pub(crate) fn classify(error: mysql_async::Error, doing: &str) -> SourceError {
    match error {
        mysql_async::Error::Server(server) => {
            let message = format!("{doing}: {}", server.message);
            match server.code {
                // Access denied (password, user, database).
                1044 | 1045 | 1698 | 1862 | 1820 => SourceError::Credentials {
                    category: ErrorCategory::ApiKeyInvalid,
                    message,
                },
                // Too many connections, lock wait timeout, deadlock,
                // server shutting down, query interrupted.
                1040 | 1205 | 1213 | 1053 | 1317 | 2013 => SourceError::Transient {
                    message,
                    retry_after: None,
                },
                _ => SourceError::Permanent(message),
            }
        }
        mysql_async::Error::Io(mysql_async::IoError::Tls(tls)) => {
            SourceError::Permanent(format!("{doing}: TLS failed: {tls}"))
        }
        mysql_async::Error::Io(io) => SourceError::Transient {
            message: format!("{doing}: {io}"),
            retry_after: None,
        },
        mysql_async::Error::Url(_) => {
            SourceError::Permanent(format!("{doing}: credentials.url is not valid"))
        }
        other => SourceError::Transient {
            message: format!("{doing}: {other}"),
            retry_after: None,
        },
    }
}

/// The columns the sync reads by name, as `information_schema` has them.
struct Columns {
    table: String,
    primary_key: String,
    cursor: Option<String>,
    cursor_is_time: bool,
    deleted: Option<String>,
    /// Columns declared JSON (MariaDB: a `json_valid` check).
    json: Vec<String>,
}

async fn inspect(conn: &mut Conn, plan: &Plan) -> Result<Columns, SourceError> {
    let (schema, name) = plan.config.table_parts();
    let table = match schema {
        Some(schema) => format!("{}.{}", quote(schema), quote(name)),
        None => quote(name),
    };
    let found: Vec<(String, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS
             WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
            (schema, name),
        )
        .await
        .map_err(|error| classify(error, "looking up the table"))?;
    if found.is_empty() {
        return Err(SourceError::Permanent(format!(
            "table {} does not exist (or is not visible to this user)",
            plan.config.table
        )));
    }
    let type_of = |column: &str| {
        found
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, kind)| kind.to_ascii_lowercase())
            .ok_or_else(|| {
                SourceError::Permanent(format!(
                    "column {column} does not exist in table {}",
                    plan.config.table
                ))
            })
    };
    type_of(&plan.config.primary_key)?;
    let cursor_is_time = match &plan.cursor_column {
        Some(column) => matches!(type_of(column)?.as_str(), "datetime" | "timestamp" | "date"),
        None => false,
    };
    if let Some(column) = &plan.config.deleted_column {
        let kind = type_of(column)?;
        if !matches!(kind.as_str(), "tinyint" | "bit" | "boolean") {
            return Err(SourceError::Permanent(format!(
                "deleted_column {column} is {kind}, not BOOLEAN (TINYINT(1)) or BIT(1)"
            )));
        }
    }
    let mut json: Vec<String> = found
        .iter()
        .filter(|(_, kind)| kind.eq_ignore_ascii_case("json"))
        .map(|(name, _)| name.clone())
        .collect();
    // MariaDB's JSON is LONGTEXT with a check; MySQL before 8.0.16 has no
    // CHECK_CONSTRAINTS view (and its JSON columns say so themselves).
    let checks: Vec<String> = conn
        .exec(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
             WHERE CONSTRAINT_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
            (schema, name),
        )
        .await
        .unwrap_or_default();
    for clause in checks {
        let clause = clause.replace(' ', "").to_ascii_lowercase();
        for (column, _) in &found {
            let check = format!("json_valid({})", quote(column)).to_ascii_lowercase();
            if clause == check && !json.contains(column) {
                json.push(column.clone());
            }
        }
    }
    Ok(Columns {
        table,
        primary_key: plan.config.primary_key.clone(),
        cursor: plan.cursor_column.clone(),
        cursor_is_time,
        deleted: plan.config.deleted_column.clone(),
        json,
    })
}

/// Where the next page starts: after the last row read, by its cursor and
/// key as the server sent them.
#[derive(Clone)]
struct After {
    cursor: Mysql,
    key: Mysql,
}

/// A page's query and its parameters.
fn page(columns: &Columns, plan: &Plan, after: Option<&After>, limit: usize) -> (String, Params) {
    let pk = quote(&columns.primary_key);
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    let order = match &columns.cursor {
        None => {
            if let Some(after) = after {
                conditions.push(format!("{pk} > ?"));
                params.push(after.key.clone());
            }
            pk.clone()
        }
        Some(column) => {
            let column = quote(column);
            if let Some(stored) = &plan.cursor {
                if columns.cursor_is_time {
                    conditions.push(format!(
                        "{column} >= CAST(? AS DATETIME(6)) - INTERVAL {} SECOND",
                        plan.config.lookback_seconds
                    ));
                } else {
                    conditions.push(format!("{column} >= ?"));
                }
                params.push(value::parameter(stored));
            }
            if let Some(after) = after {
                // NULL cursors sort first: after one, every non-NULL row.
                conditions.push(format!(
                    "({column} > ? OR ({column} <=> ? AND {pk} > ?) \
                     OR (? IS NULL AND {column} IS NOT NULL))"
                ));
                params.extend([
                    after.cursor.clone(),
                    after.cursor.clone(),
                    after.key.clone(),
                    after.cursor.clone(),
                ]);
            }
            format!("{column}, {pk}")
        }
    };
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT * FROM {table} {filter} ORDER BY {order} LIMIT {limit}",
        table = columns.table
    );
    (sql, Params::Positional(params))
}

async fn read(conn: &mut Conn, plan: &Plan, sender: &Sender) -> Result<(), SourceError> {
    let columns = inspect(conn, plan).await?;
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .map_err(|error| classify(error, "starting the read"))?;
    let batch_size = plan.config.batch_size as usize;
    let mut after: Option<After> = None;
    let mut last_cursor = plan.cursor.clone();
    loop {
        let (sql, params) = page(&columns, plan, after.as_ref(), batch_size);
        let mut result = conn
            .exec_iter(sql, params)
            .await
            .map_err(|error| classify(error, "reading the table"))?;
        let mut batch = EntityBatch::default();
        let mut rows = 0usize;
        let mut bytes = 0u64;
        let mut full_page = true;
        while let Some(row) = result
            .next()
            .await
            .map_err(|error| classify(error, "reading the table"))?
        {
            rows += 1;
            let read = entity(&columns, &plan.limits, row, &mut batch);
            if let Some(position) = read.after {
                if let Some(cursor) = read.cursor {
                    last_cursor = Some(cursor);
                }
                after = Some(position);
            }
            bytes += read.bytes;
            if bytes >= plan.limits.max_batch_bytes && rows < batch_size {
                // The rest of the page is read again by the next one.
                full_page = false;
                break;
            }
        }
        drop(result);
        if full_page && rows < batch_size {
            if rows > 0 {
                batch.cursor = last_cursor;
                let _ = sender.send(Ok(Some(batch))).await;
            }
            return Ok(());
        }
        batch.cursor = last_cursor.clone();
        if sender.send(Ok(Some(batch))).await.is_err() {
            return Ok(());
        }
    }
}

/// What one row added to the batch.
struct Read {
    after: Option<After>,
    cursor: Option<Value>,
    bytes: u64,
}

/// Maps one row into the batch: an entity, a deletion or a failure.
fn entity(columns: &Columns, limits: &Limits, row: Row, batch: &mut EntityBatch) -> Read {
    let meta = row.columns();
    let values = row.unwrap();
    let mut payload = Map::new();
    let mut key = Mysql::NULL;
    let mut cursor_raw = Mysql::NULL;
    let mut id = None;
    let mut cursor = None;
    let mut deleted = false;
    let mut unmappable = None;
    for (column, raw) in meta.iter().zip(values) {
        let name = column.name_str();
        let json = columns.json.iter().any(|json| *json == name);
        let kind = Kind::of(column.column_type(), column.character_set(), json);
        let mapped = match value::to_json(&raw, kind) {
            Ok(mapped) => mapped,
            Err(why) => {
                unmappable.get_or_insert(format!("column {name}: {}", why.0));
                Value::Null
            }
        };
        if name == columns.primary_key {
            id = value::id_text(&mapped);
            key = raw.clone();
        }
        if columns.cursor.as_deref() == Some(&*name) {
            cursor = Some(mapped.clone()).filter(|value| !value.is_null());
            cursor_raw = raw.clone();
        }
        if columns.deleted.as_deref() == Some(&*name) {
            deleted = match &raw {
                Mysql::Int(value) => *value != 0,
                Mysql::UInt(value) => *value != 0,
                Mysql::Bytes(bytes) => bytes.iter().any(|byte| *byte != 0),
                _ => false,
            };
        }
        payload.insert(name.into_owned(), mapped);
    }
    let after = Some(After {
        cursor: cursor_raw,
        key,
    });
    let Some(id) = id else {
        batch.fail("", "a row whose primary key is NULL");
        return Read {
            after,
            cursor,
            bytes: 0,
        };
    };
    if deleted {
        batch.deleted.push(id);
        return Read {
            after,
            cursor,
            bytes: 0,
        };
    }
    if let Some(why) = unmappable {
        batch.fail(id, why);
        return Read {
            after,
            cursor,
            bytes: 0,
        };
    }
    let payload = Value::Object(payload);
    let size = serde_json::to_vec(&payload).map_or(u64::MAX, |bytes| bytes.len() as u64);
    if size > limits.max_entity_bytes {
        batch.fail(
            id,
            format!("the row is {size} bytes as JSON, over the entity limit"),
        );
        return Read {
            after,
            cursor,
            bytes: 0,
        };
    }
    batch.entities.push(SourceEntity { id, payload });
    Read {
        after,
        cursor,
        bytes: size,
    }
}
