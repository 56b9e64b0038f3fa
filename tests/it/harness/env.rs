//! One test's private environment: a fresh database (migrated) and an AMQP
//! namespace, both removed on drop, even when the test panics.

use syncway_queue::Broker;
use syncway_runtime::{Role, Settings};
use tokio_postgres::NoTls;
use uuid::Uuid;

/// The Postgres server the tests make their databases on, unless
/// `SYNCWAY_TEST_POSTGRES_URL` names another (`scripts/test` sets it to the
/// role it made where the local server asks for a password).
const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn server_url() -> url::Url {
    let configured = std::env::var("SYNCWAY_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.trim().is_empty());
    let text = configured.as_deref().unwrap_or(DEFAULT_POSTGRES);
    url::Url::parse(text.trim()).expect("SYNCWAY_TEST_POSTGRES_URL is a postgres:// URL")
}

/// The URL of `database` on the tests' Postgres server.
pub fn postgres_url(database: &str) -> String {
    let mut url = server_url();
    url.set_path(&format!("/{database}"));
    url.to_string()
}

/// The URL of `database` on the tests' Postgres server, reached through
/// `address` (a proxy in front of it) with the same login.
pub fn postgres_url_via(address: std::net::SocketAddr, database: &str) -> String {
    let mut url = url::Url::parse(&postgres_url(database)).expect("a URL");
    url.set_ip_host(address.ip())
        .expect("a postgres URL takes a host");
    url.set_port(Some(address.port()))
        .expect("a postgres URL takes a port");
    url.to_string()
}

/// The tests' Postgres server's address.
pub fn postgres_address() -> std::net::SocketAddr {
    let url = server_url();
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url.port().unwrap_or(5432);
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .ok()
        .and_then(|mut found| found.next())
        .expect("the tests' Postgres host resolves")
}

/// A URL without its password, for messages.
fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => "(an unreadable URL)".to_owned(),
    }
}
pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub struct TestEnv {
    pub database: String,
    pub namespace: String,
    /// `connectors.allow_cidrs` of every process started on this
    /// environment (the default policy denies loopback, where the tests'
    /// sources live).
    pub allow_cidrs: Vec<String>,
    /// `connectors.allow_hosts` likewise.
    pub allow_hosts: Vec<String>,
    /// `connectors.local_files.roots` likewise.
    pub local_files_roots: Vec<String>,
    /// A second database for `postgres` sources, made on first use:
    /// syncway's own database is never a source.
    source: tokio::sync::OnceCell<String>,
}

impl TestEnv {
    pub async fn new() -> Self {
        init_logging();
        // Before any HTTP client is built (see the function).
        syncway_connectors::install_tls_provider();
        let id = Uuid::new_v4().simple().to_string();
        let env = TestEnv {
            database: format!("syncway_test_{id}"),
            namespace: format!("test-{id}"),
            allow_cidrs: Vec::new(),
            allow_hosts: Vec::new(),
            local_files_roots: Vec::new(),
            source: tokio::sync::OnceCell::new(),
        };
        let admin = admin().await;
        admin
            .batch_execute(&format!("CREATE DATABASE {}", env.database))
            .await
            .expect("creating the test database");
        syncway_store::migrate(&env.database_url())
            .await
            .expect("migrating the test database");
        connect(&env.database_url())
            .await
            .batch_execute(&transition_guard())
            .await
            .expect("installing the status-transition guard");
        env
    }

    pub fn database_url(&self) -> String {
        postgres_url(&self.database)
    }

    /// Lets connectors reach 127.0.0.1 (the tests' mock APIs and source
    /// databases), as an operator would with `ALLOW_CIDRS`.
    pub fn allowing_loopback(mut self) -> Self {
        self.allow_cidrs = vec!["127.0.0.1/32".into()];
        self
    }

    /// Lets `local_files` read under the system temp directory.
    pub fn allowing_temp_files(mut self) -> Self {
        self.local_files_roots = vec![std::env::temp_dir().display().to_string()];
        self
    }

    /// The URL of this test's source database (created on first use).
    pub async fn source_url(&self) -> String {
        let name = self
            .source
            .get_or_init(|| async {
                let name = format!("{}_src", self.database);
                admin()
                    .await
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("creating the source database");
                name
            })
            .await;
        postgres_url(name)
    }

    /// A client of the source database.
    pub async fn source_db(&self) -> tokio_postgres::Client {
        connect(&self.source_url().await).await
    }

    /// Settings pointing at this environment, migrations already applied.
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::load(Role::Api, None).expect("default settings");
        settings.database.url = self.database_url();
        settings.database.migrate = false;
        settings.database.pool_size = 8;
        // Tests store no real credentials (tests/it/secrets.rs sets keys).
        settings.security.allow_development_key = true;
        settings.amqp.url = AMQP.to_owned();
        settings.amqp.namespace = self.namespace.clone();
        settings.worker.concurrency = 4;
        settings.worker.shutdown_grace_seconds = 10;
        // Schedules run only where a test asks for them (tests/it/schedules.rs):
        // a tick could otherwise add a job to any test's continuous connection.
        settings.scheduler.enabled = false;
        // A transient failure ends the job at once unless a test turns
        // retries on (tests/it/faults.rs): the default backoff is seconds.
        settings.retry.max_attempts = 1;
        // A deleted connection's leftovers go within a second or two, not a
        // minute (tests/it/history.rs).
        settings.retention.interval_seconds = 1;
        settings.connectors.allow_cidrs = self.allow_cidrs.clone();
        settings.connectors.allow_hosts = self.allow_hosts.clone();
        settings.connectors.local_files.roots = self.local_files_roots.clone();
        settings
    }

    /// A pooled client, usable with the store's functions.
    pub async fn db(&self) -> deadpool_postgres::Object {
        let pool =
            syncway_store::connect(&syncway_store::PoolSettings::new(&self.database_url(), 1))
                .expect("test database pool");
        pool.get().await.expect("connecting to the test database")
    }

    pub async fn broker(&self) -> Broker {
        Broker::connect(AMQP, &self.namespace, "syncway-test")
            .await
            .expect("connecting to RabbitMQ")
    }

    /// Deletes a queue of this namespace (`sync_jobs.delay.3`, say): a
    /// message routed there comes back unroutable, however often it is
    /// published.
    pub async fn delete_queue(&self, queue: &str) {
        let amqp = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default())
            .await
            .expect("connecting to RabbitMQ");
        let channel = amqp.create_channel().await.expect("a channel");
        channel
            .queue_delete(
                format!("{}.{queue}", self.namespace).as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await
            .expect("deleting the queue");
        let _ = amqp.close(200, "queue deleted".into()).await;
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let database = self.database.clone();
        let source = self.source.get().cloned();
        let namespace = self.namespace.clone();
        // Drop runs inside the test's runtime; clean up on a thread of our own.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Err(failures) = syncway_queue::delete_namespace(AMQP, &namespace).await {
                    eprintln!("could not delete AMQP namespace {namespace}: {failures:?}");
                }
                let admin = admin().await;
                for database in std::iter::once(database).chain(source) {
                    if let Err(error) = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                        .await
                    {
                        eprintln!("could not drop test database {database}: {error}");
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A trigger (test databases only) that rejects every job status change
/// `JobStatus::can_transition_to` forbids, and a job inserted in any status
/// but `pending`: every integration test checks invariant 6 as it runs.
fn transition_guard() -> String {
    let legal: Vec<String> = syncway_model::JobStatus::transitions()
        .map(|(from, to)| format!("('{from}', '{to}')"))
        .collect();
    format!(
        "CREATE FUNCTION syncway_test_guard_transition() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF TG_OP = 'INSERT' THEN
                 IF NEW.status <> 'pending' THEN
                     RAISE EXCEPTION 'job % inserted as %, not pending', NEW.id, NEW.status;
                 END IF;
             ELSIF NEW.status IS DISTINCT FROM OLD.status
                   AND (OLD.status, NEW.status) NOT IN (VALUES {legal}) THEN
                 RAISE EXCEPTION 'illegal job status transition % -> % (job %)',
                     OLD.status, NEW.status, NEW.id;
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER syncway_test_guard_transition
             BEFORE INSERT OR UPDATE OF status ON sync_jobs
             FOR EACH ROW EXECUTE FUNCTION syncway_test_guard_transition();",
        legal = legal.join(", ")
    )
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|error| panic!("connecting to {}: {error}", shown(url)));
    tokio::spawn(connection);
    client
}

async fn admin() -> tokio_postgres::Client {
    connect(&postgres_url("postgres")).await
}

fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
