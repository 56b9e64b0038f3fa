//! What tests read of the test database through the app, and the jobs
//! they make in numbers.

use serde_json::Value;
use uuid::Uuid;

use super::{DEADLINE, TestApp, eventually};

impl TestApp {
    /// The rows of a query on the test database as (key, JSON value) pairs.
    pub async fn pairs(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Vec<(String, Value)> {
        self.db()
            .await
            .query(sql, params)
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }

    /// How many entities the connection has stored.
    pub async fn entity_count(&self, connection: Uuid) -> i64 {
        self.db()
            .await
            .query_one(
                "SELECT count(*) FROM entities WHERE source_connection_id = $1",
                &[&connection],
            )
            .await
            .map(|row| row.get(0))
            .expect("counting entities")
    }

    /// `n` stub connections of `config` (full syncs), each with a job
    /// triggered: (connection, job).
    pub async fn stub_jobs(&self, n: usize, config: Value) -> Vec<(Uuid, Uuid)> {
        let mut jobs = Vec::new();
        for _ in 0..n {
            let connection = self.stub_connection(config.clone(), false).await;
            jobs.push((connection, self.run(connection, false).await));
        }
        jobs
    }

    /// Waits until the relays (the API's and the first worker's) have set
    /// aside `count` messages the broker refused, whichever relay took them.
    pub async fn outbox_refused(&self, count: f64) {
        eventually("the refused messages are counted", DEADLINE, || async {
            let refused = self.api.metric("syncway_api_outbox_refused_total").await
                + self.workers[0]
                    .metric("syncway_worker_outbox_refused_total")
                    .await;
            (refused == count).then_some(())
        })
        .await;
    }

    /// Waits until the outbox is empty: every committed message published
    /// (a row goes when its relay's transaction commits, just after the
    /// broker confirmed it).
    pub async fn outbox_empties(&self) {
        let db = self.db().await;
        eventually("the outbox empties", DEADLINE, || async {
            let left: i64 = db
                .query_one("SELECT count(*) FROM outbox", &[])
                .await
                .ok()?
                .get(0);
            (left == 0).then_some(())
        })
        .await;
    }

    /// How many times the job was claimed.
    pub async fn attempt(&self, job: Uuid) -> i32 {
        self.db()
            .await
            .query_one("SELECT attempt FROM sync_jobs WHERE id = $1", &[&job])
            .await
            .map(|row| row.get(0))
            .unwrap_or(-1)
    }
}
