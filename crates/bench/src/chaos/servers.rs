//! A Postgres cluster the chaos bench owns, so that stopping or exhausting
//! it never touches the machine's shared one (its RabbitMQ nodes are in
//! [`super::rabbit`]). `e2e --statements` starts one too, with
//! pg_stat_statements loaded ([`crate::statements`]).

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;

use syncway_testkit::{free_port, run};

/// A Postgres cluster in a temporary directory (trust auth, user postgres),
/// run as the `postgres` system user when the bench runs as root.
pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

impl PrivatePostgres {
    pub fn start(max_connections: u32) -> anyhow::Result<Self> {
        Self::start_with(max_connections, "fsync = off\n")
    }

    /// [`Self::start`] with `settings` (lines of postgresql.conf) in place
    /// of the chaos bench's `fsync = off`.
    pub fn start_with(max_connections: u32, settings: &str) -> anyhow::Result<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .context("no PostgreSQL server binaries under /usr/lib/postgresql")?
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("bin"))
            .find(|bin| bin.join("initdb").exists())
            .context("no initdb under /usr/lib/postgresql/*/bin")?;
        let dir = std::env::temp_dir().join(format!("syncway-chaos-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let server = PrivatePostgres {
            dir,
            bin,
            port: free_port()?,
        };
        run(
            Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&server.dir),
            "chown",
        )?;
        run(
            server
                .as_postgres("initdb", &["-U", "postgres", "--auth=trust", "-D"])
                .arg(server.data()),
            "initdb",
        )?;
        let conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             max_connections = {max_connections}\n{settings}",
            server.port,
            server.dir.display()
        );
        std::fs::write(server.data().join("postgresql.auto.conf"), conf)?;
        server.up()?;
        Ok(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn as_postgres(&self, tool: &str, args: &[&str]) -> Command {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(tool))
            .args(args);
        command
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    pub fn up(&self) -> anyhow::Result<()> {
        let log = self.dir.join("log");
        run(
            self.as_postgres("pg_ctl", &["-w", "-D"])
                .arg(self.data())
                .arg("-l")
                .arg(&log)
                .arg("start"),
            "pg_ctl start",
        )
    }

    /// An immediate shutdown: every session dropped, as a crash would.
    pub fn down(&self) -> anyhow::Result<()> {
        run(
            self.as_postgres("pg_ctl", &["-w", "-m", "immediate", "-D"])
                .arg(self.data())
                .arg("stop"),
            "pg_ctl stop",
        )
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
