//! The `mysql` source: a table of `rows` rows in a database of the bench's
//! own on the MariaDB/MySQL server; its own read rate is a plain `SELECT *`
//! streamed to its end.

use std::time::Instant;

use anyhow::Context;
use mysql_async::prelude::Queryable;
use serde_json::json;

use super::Prepared;

pub struct Source {
    server: url::Url,
    database: String,
}

impl Source {
    pub async fn create(server: &str, rows: u64) -> anyhow::Result<Self> {
        let server = url::Url::parse(server).context("--mysql is not a mysql:// URL")?;
        let database = format!(
            "syncway_bench_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let source = Source { server, database };
        let mut admin = mysql_async::Conn::from_url(source.server.as_str()).await?;
        admin
            .query_drop(format!("CREATE DATABASE `{}`", source.database))
            .await?;
        let mut conn = source.conn().await?;
        conn.query_drop(
            "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL,
                 price DECIMAL(12,2) NOT NULL, updated_at DATETIME(6) NOT NULL,
                 body TEXT NOT NULL, INDEX (updated_at, id))",
        )
        .await?;
        // In chunks of 50,000: one statement each.
        let mut start = 1;
        while start <= rows {
            let end = (start + 49_999).min(rows);
            conn.query_drop(format!(
                "INSERT INTO items SELECT seq, CONCAT('item ', seq), seq / 100,
                     NOW(6) - INTERVAL seq SECOND, REPEAT('x', 200)
                 FROM seq_{start}_to_{end}"
            ))
            .await?;
            start = end + 1;
        }
        Ok(source)
    }

    fn url(&self) -> String {
        let mut url = self.server.clone();
        url.set_path(&format!("/{}", self.database));
        url.to_string()
    }

    async fn conn(&self) -> anyhow::Result<mysql_async::Conn> {
        Ok(mysql_async::Conn::from_url(self.url()).await?)
    }

    pub async fn prepare(&self) -> anyhow::Result<Prepared> {
        let mut conn = self.conn().await?;
        let started = Instant::now();
        let mut result = conn
            .query_iter("SELECT * FROM items ORDER BY updated_at, id")
            .await?;
        let mut read = 0u64;
        while let Some(row) = result.next().await? {
            std::hint::black_box(row);
            read += 1;
        }
        drop(result);
        let own_rate = read as f64 / started.elapsed().as_secs_f64();
        Ok(Prepared {
            short_name: "mysql",
            config: json!({"table": "items", "cursor_column": "updated_at"}),
            credentials: json!({"url": self.url(), "ssl_mode": "disabled"}),
            own_rate,
            own_read: "SELECT * streamed",
        })
    }

    pub async fn drop_database(&self) {
        if let Ok(mut admin) = mysql_async::Conn::from_url(self.server.as_str()).await {
            let _ = admin
                .query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.database))
                .await;
        }
    }
}
