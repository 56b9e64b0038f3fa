//! A private PostgreSQL server for `postgres_cdc` sources
//! ([`syncway_testkit::PgCluster`]: `wal_level=logical`, its own port;
//! the shared server is never changed), with clients for the test.

pub struct PgCluster {
    inner: syncway_testkit::PgCluster,
    pub port: u16,
}

impl PgCluster {
    pub async fn start() -> Self {
        let inner = tokio::task::spawn_blocking(syncway_testkit::PgCluster::start)
            .await
            .expect("the start-up task")
            .expect("starting a private PostgreSQL server");
        PgCluster {
            port: inner.port,
            inner,
        }
    }

    /// A URL of `database` as the superuser `postgres`.
    pub fn url(&self, database: &str) -> String {
        self.inner.url(database)
    }

    /// A client of `database`.
    pub async fn client(&self, database: &str) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.url(database), tokio_postgres::NoTls)
                .await
                .expect("connecting to the private cluster");
        tokio::spawn(connection);
        client
    }

    /// Runs SQL in the `postgres` database.
    pub async fn sql(&self, sql: &str) {
        self.client("postgres")
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
    }
}
