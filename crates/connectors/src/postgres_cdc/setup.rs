//! What the source must offer before anything is read, checked with clear
//! errors: `wal_level=logical`, a role with REPLICATION, tables that have
//! a replica identity; and the publication and slot, created when missing
//! and allowed. Also the slot's bookkeeping: advance, lag, drop.

use serde_json::Value;
use syncway_model::PostgresCdcConfig;
use tokio_postgres::Client;

use super::rows::Shape;
use crate::SourceError;
use crate::postgres::classify;

pub(crate) use crate::postgres::quote;

/// The publication and slot names a connection uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub publication: String,
    pub slot: String,
    /// Whether syncway chose the publication's name (and so owns it).
    pub own_publication: bool,
}

impl Names {
    /// The configured names, or `syncway_<connection id>`.
    pub fn of(config: &PostgresCdcConfig, connection: &str) -> Result<Names, SourceError> {
        let default = format!("syncway_{}", connection.replace('-', ""));
        if connection.is_empty() && (config.publication.is_none() || config.slot.is_none()) {
            return Err(SourceError::Permanent(
                "postgres_cdc needs a publication and slot name outside a connection".into(),
            ));
        }
        Ok(Names {
            own_publication: config.publication.is_none(),
            publication: config
                .publication
                .clone()
                .unwrap_or_else(|| default.clone()),
            slot: config.slot.clone().unwrap_or(default),
        })
    }
}

async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(
    client: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    doing: &str,
) -> Result<Option<T>, SourceError> {
    let row = client
        .query_opt(sql, params)
        .await
        .map_err(|error| classify(error, doing))?;
    Ok(row.map(|row| row.get(0)))
}

/// `wal_level` and the role's REPLICATION attribute.
pub async fn check_source(client: &Client) -> Result<(), SourceError> {
    let level: Option<String> = one(client, "SHOW wal_level", &[], "reading wal_level").await?;
    if level.as_deref() != Some("logical") {
        return Err(SourceError::Permanent(format!(
            "the source's wal_level is {}; change data capture needs wal_level = logical \
             (set it in postgresql.conf and restart the server)",
            level.unwrap_or_default()
        )));
    }
    let allowed: Option<bool> = one(
        client,
        "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user",
        &[],
        "reading the role",
    )
    .await?;
    if allowed != Some(true) {
        return Err(SourceError::Permanent(
            "the source role lacks the REPLICATION attribute, which logical decoding \
             needs (ALTER ROLE ... REPLICATION)"
                .into(),
        ));
    }
    Ok(())
}

/// Each configured table's shape: its columns in order, with the replica
/// identity's columns marked as the key (all of them for REPLICA IDENTITY
/// FULL, as the stream marks them).
pub async fn shapes(
    client: &Client,
    config: &PostgresCdcConfig,
) -> Result<Vec<Shape>, SourceError> {
    let mut shapes = Vec::new();
    for (schema, name) in config.table_parts() {
        let named = format!("{}.{}", quote(schema), quote(name));
        let found = client
            .query_opt(
                "SELECT c.oid, c.relreplident::text FROM pg_class c
                 WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')",
                &[&named],
            )
            .await
            .map_err(|error| classify(error, "looking up a table"))?;
        let Some(found) = found else {
            return Err(SourceError::Permanent(format!(
                "table {schema}.{name} does not exist (or is not visible to this user)"
            )));
        };
        let oid: u32 = found.get(0);
        let identity: String = found.get(1);
        let rows = client
            .query(
                "SELECT a.attname::text, a.atttypid,
                        $2 = 'f' OR COALESCE(a.attnum = ANY (i.indkey), false)
                 FROM pg_attribute a
                 LEFT JOIN pg_index i ON i.indrelid = a.attrelid
                      AND CASE $2 WHEN 'd' THEN i.indisprimary
                                  WHEN 'i' THEN i.indisreplident ELSE false END
                 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
                       AND a.attgenerated = ''
                 ORDER BY a.attnum",
                &[&oid, &identity],
            )
            .await
            .map_err(|error| classify(error, "reading a table's columns"))?;
        let columns: Vec<(String, u32, bool)> = rows
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
        if identity == "n" || !columns.iter().any(|(_, _, key)| *key) {
            return Err(SourceError::Permanent(format!(
                "table {schema}.{name} has no replica identity (no primary key, and \
                 REPLICA IDENTITY is not FULL or USING INDEX): its deletes cannot be read; \
                 add a primary key or ALTER TABLE ... REPLICA IDENTITY FULL"
            )));
        }
        shapes.push(Shape {
            schema: schema.to_owned(),
            name: name.to_owned(),
            columns,
        });
    }
    Ok(shapes)
}

/// Makes sure the publication exists and covers every table.
pub async fn ensure_publication(
    client: &Client,
    names: &Names,
    config: &PostgresCdcConfig,
) -> Result<(), SourceError> {
    let exists: Option<i32> = one(
        client,
        "SELECT 1 FROM pg_publication WHERE pubname = $1",
        &[&names.publication],
        "looking up the publication",
    )
    .await?;
    let tables: Vec<String> = config
        .table_parts()
        .map(|(schema, name)| format!("{}.{}", quote(schema), quote(name)))
        .collect();
    if exists.is_none() {
        if !config.create_slot {
            return Err(SourceError::Permanent(format!(
                "publication {} does not exist, and create_slot is false",
                names.publication
            )));
        }
        let sql = format!(
            "CREATE PUBLICATION {} FOR TABLE {}",
            quote(&names.publication),
            tables.join(", ")
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(|error| classify(error, "creating the publication"))?;
        return Ok(());
    }
    for (schema, name) in config.table_parts() {
        let covered: Option<i32> = one(
            client,
            "SELECT 1 FROM pg_publication_tables
             WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
            &[&names.publication, &schema, &name],
            "reading the publication",
        )
        .await?;
        if covered.is_some() {
            continue;
        }
        if !(config.create_slot && names.own_publication) {
            return Err(SourceError::Permanent(format!(
                "publication {} does not include table {schema}.{name}",
                names.publication
            )));
        }
        let sql = format!(
            "ALTER PUBLICATION {} ADD TABLE {}.{}",
            quote(&names.publication),
            quote(schema),
            quote(name)
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(|error| classify(error, "adding a table to the publication"))?;
    }
    Ok(())
}

/// The slot's confirmed position, or `None` when it does not exist.
pub async fn slot_position(client: &Client, slot: &str) -> Result<Option<String>, SourceError> {
    let row = client
        .query_opt(
            "SELECT confirmed_flush_lsn::text, plugin::text, COALESCE(wal_status, '')
             FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()",
            &[&slot],
        )
        .await
        .map_err(|error| classify(error, "looking up the replication slot"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let plugin: Option<String> = row.get(1);
    if plugin.as_deref() != Some("pgoutput") {
        return Err(SourceError::Permanent(format!(
            "replication slot {slot} is not a pgoutput logical slot"
        )));
    }
    let status: String = row.get(2);
    if status == "lost" {
        return Err(SourceError::Permanent(format!(
            "replication slot {slot} lost the WAL it needed (the source's \
             max_slot_wal_keep_size); run a full sync (force_full_sync=true) to start again"
        )));
    }
    Ok(row.get(0))
}

/// Creates the slot; returns its starting position.
pub async fn create_slot(client: &Client, slot: &str) -> Result<String, SourceError> {
    let lsn: Option<String> = one(
        client,
        "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
        &[&slot],
        "creating the replication slot",
    )
    .await?;
    lsn.ok_or_else(|| SourceError::Permanent("the new slot reported no position".into()))
}

/// Drops the slot if it exists.
pub async fn drop_slot(client: &Client, slot: &str) -> Result<(), SourceError> {
    client
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
             WHERE slot_name = $1 AND database = current_database()",
            &[&slot],
        )
        .await
        .map_err(|error| classify(error, "dropping the replication slot"))?;
    Ok(())
}

/// Moves the slot up to `lsn` (what syncway has stored), if it is behind.
pub async fn advance(client: &Client, slot: &str, lsn: &str) -> Result<(), SourceError> {
    client
        .execute(
            "SELECT pg_replication_slot_advance(slot_name, $2::text::pg_lsn)
             FROM pg_replication_slots
             WHERE slot_name = $1 AND confirmed_flush_lsn < $2::text::pg_lsn",
            &[&slot, &lsn],
        )
        .await
        .map_err(|error| classify(error, "advancing the replication slot"))?;
    Ok(())
}

/// Bytes of WAL the slot holds back.
pub async fn lag_bytes(client: &Client, slot: &str) -> Result<i64, SourceError> {
    let lag: Option<Option<i64>> = one(
        client,
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint
         FROM pg_replication_slots WHERE slot_name = $1",
        &[&slot],
        "reading the slot's lag",
    )
    .await?;
    Ok(lag.flatten().unwrap_or(0))
}

/// The session as both read paths need it: values printed alike.
pub async fn prepare_session(client: &Client) -> Result<(), SourceError> {
    client
        .batch_execute(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'iso_8601';
             SET extra_float_digits = 1; SET bytea_output = 'hex'",
        )
        .await
        .map_err(|error| classify(error, "configuring the source session"))
}

/// A stored cursor, read.
pub fn stored_cursor(cursor: &Value) -> Result<super::rows::Cursor, SourceError> {
    serde_json::from_value(cursor.clone()).map_err(|_| {
        SourceError::Permanent(
            "the stored cursor is not a postgres_cdc position; run a full sync \
             (force_full_sync=true)"
                .into(),
        )
    })
}
