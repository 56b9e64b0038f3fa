//! A private PostgreSQL server for `postgres_cdc` sources: `initdb` into a
//! temporary directory and `postgres` on a free port of its own with
//! `wal_level=logical` (the shared server runs `replica`, and a test must
//! never change it). Commits are synchronous: logical decoding reads only
//! flushed WAL. Run as the `postgres` user when the tests run as root
//! (the server refuses root). Stopped and removed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually, free_port};

/// The server's binaries: `SYNCWAY_TEST_PG_BINDIR`, else `pg_config
/// --bindir`, else Debian's newest under /usr/lib/postgresql.
fn bindir() -> PathBuf {
    if let Ok(dir) = std::env::var("SYNCWAY_TEST_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|dir| dir.join("initdb").exists());
    if let Some(dir) = from_pg_config {
        return dir;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(|d| d.ok().map(|d| d.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .filter(|dir| dir.join("initdb").exists())
        .expect("PostgreSQL's server binaries (initdb, postgres): scripts/setup test installs them")
}

fn as_root() -> bool {
    // The effective uid, from /proc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// `program` with `args`, as the `postgres` user when we are root.
fn command(program: PathBuf, args: &[&str]) -> Command {
    if as_root() {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args);
        command
    } else {
        let mut command = Command::new(program);
        command.args(args);
        command
    }
}

pub struct PgCluster {
    dir: PathBuf,
    pub port: u16,
    server: Child,
}

impl PgCluster {
    pub async fn start() -> Self {
        let dir =
            std::env::temp_dir().join(format!("syncway-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("the cluster's directory");
        if as_root() {
            let chown = Command::new("chown")
                .args(["postgres:", &dir.display().to_string()])
                .status()
                .expect("chown");
            assert!(chown.success(), "chown the cluster's directory to postgres");
        }
        let data = dir.join("data");
        let data_text = data.display().to_string();
        let initdb = command(
            bindir().join("initdb"),
            &[
                "-D",
                &data_text,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("running initdb");
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = free_port();
        let port_text = port.to_string();
        let socket_dir = dir.display().to_string();
        let server = command(
            bindir().join("postgres"),
            &[
                "-D",
                &data_text,
                "-p",
                &port_text,
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                &format!("unix_socket_directories={socket_dir}"),
                "-c",
                "wal_level=logical",
                "-c",
                "max_replication_slots=10",
                "-c",
                "max_wal_senders=10",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "shared_buffers=32MB",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting postgres");
        let cluster = PgCluster { dir, port, server };
        let url = cluster.url("postgres");
        eventually(
            "the private cluster to accept connections",
            Duration::from_secs(30),
            || {
                let url = url.clone();
                async move {
                    tokio_postgres::connect(&url, tokio_postgres::NoTls)
                        .await
                        .ok()
                        .map(|_| ())
                }
            },
        )
        .await;
        cluster
    }

    /// A URL of `database` as the superuser `postgres`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
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

impl Drop for PgCluster {
    fn drop(&mut self) {
        // SIGQUIT to the postmaster (under runuser, the child is runuser):
        // immediate shutdown, nothing to keep.
        let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned))
            .unwrap_or_else(|| self.server.id().to_string());
        let _ = Command::new("kill").args(["-QUIT", &pid]).status();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
