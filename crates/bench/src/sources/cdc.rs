//! The `postgres_cdc` source: a private PostgreSQL server
//! (`wal_level=logical`) with a table of `rows` rows; its own read rates
//! are a plain `SELECT *` streamed to its end (the full sync's snapshot)
//! and a peek of the slot's changes (the incremental sync's stream).

use std::time::Instant;

use anyhow::Context;
use futures_util::{StreamExt, pin_mut};
use serde_json::json;
use syncway_testkit::PgCluster;
use tokio_postgres::NoTls;

use super::{Increment, Prepared};

pub struct Source {
    cluster: PgCluster,
}

async fn client(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

const INSERT: &str = "INSERT INTO items SELECT i, 'item ' || i, i / 100.0, now(), repeat('x', 200)
                      FROM generate_series($1::int, $2::int) i";

impl Source {
    pub async fn create(rows: u64) -> anyhow::Result<Self> {
        let cluster = tokio::task::spawn_blocking(PgCluster::start).await??;
        let db = client(&cluster.url("postgres")).await?;
        db.batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(12,2),
                                 updated_at timestamptz NOT NULL, body text NOT NULL)",
        )
        .await?;
        let last = i32::try_from(rows).context("rows")?;
        db.execute(INSERT, &[&1i32, &last]).await?;
        Ok(Source { cluster })
    }

    pub async fn prepare(&self) -> anyhow::Result<Prepared> {
        let db = client(&self.cluster.url("postgres")).await?;
        let started = Instant::now();
        let rows = db
            .query_raw("SELECT * FROM items", std::iter::empty::<i32>())
            .await?;
        pin_mut!(rows);
        let mut read = 0u64;
        while let Some(row) = rows.next().await {
            std::hint::black_box(row?);
            read += 1;
        }
        Ok(Prepared {
            short_name: "postgres_cdc",
            config: json!({"tables": ["items"]}),
            credentials: json!({"url": self.cluster.url("postgres"), "sslmode": "disable"}),
            own_rate: read as f64 / started.elapsed().as_secs_f64(),
            own_read: "SELECT * streamed",
        })
    }

    /// `rows` new rows, in transactions of 1,000; the rate of a peek of
    /// syncway's slot that decodes them (a peek consumes nothing).
    pub async fn increment(&self, rows: u64) -> anyhow::Result<Increment> {
        let db = client(&self.cluster.url("postgres")).await?;
        let first: i32 = db
            .query_one("SELECT max(id) + 1 FROM items", &[])
            .await?
            .get(0);
        let mut start = first;
        let end = first + i32::try_from(rows).context("rows")?;
        while start < end {
            let last = (start + 999).min(end - 1);
            db.execute(INSERT, &[&start, &last]).await?;
            start = last + 1;
        }
        let slot: String = db
            .query_one(
                "SELECT slot_name::text FROM pg_replication_slots LIMIT 1",
                &[],
            )
            .await?
            .get(0);
        let started = Instant::now();
        let changes: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_logical_slot_peek_binary_changes(
                     $1::text::name, NULL, NULL, 'proto_version', '1', 'publication_names', $1::text)",
                &[&slot],
            )
            .await?
            .get(0);
        let took = started.elapsed();
        anyhow::ensure!(changes as u64 >= rows, "the peek decoded {changes} changes");
        Ok(Increment {
            rows,
            own_rate: rows as f64 / took.as_secs_f64(),
        })
    }
}
