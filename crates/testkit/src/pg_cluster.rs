//! A private PostgreSQL server (for `postgres_cdc` sources): `initdb` into
//! a temporary directory, `postgres` on a free port of its own with
//! `wal_level=logical` (a test or bench never changes the shared server).
//! Commits stay synchronous: logical decoding reads only flushed WAL. Run
//! as the `postgres` user under root (the server refuses root). Stopped
//! (immediate shutdown) and removed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{free_port, root, run};

/// The server's binaries: `SYNCWAY_TEST_PG_BINDIR`, else `pg_config
/// --bindir`, else Debian's newest under /usr/lib/postgresql.
fn bindir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("SYNCWAY_TEST_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|dir| dir.join("initdb").exists());
    if let Some(dir) = from_pg_config {
        return Ok(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(|dir| dir.ok().map(|dir| dir.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .filter(|dir| dir.join("initdb").exists())
        .context("PostgreSQL's server binaries (initdb, postgres): install Debian's postgresql")
}

/// `program` with `args`, as the `postgres` user under root.
fn command(program: PathBuf, args: &[&str]) -> Command {
    if root() {
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
    /// Starts one, and waits until it takes connections (up to 60 s).
    pub fn start() -> anyhow::Result<Self> {
        let bin = bindir()?;
        let dir =
            std::env::temp_dir().join(format!("syncway-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).context("the cluster's directory")?;
        if root() {
            run(
                Command::new("chown").arg("postgres:").arg(&dir),
                "chown the cluster's directory",
            )?;
        }
        let data = dir.join("data").display().to_string();
        run(
            &mut command(
                bin.join("initdb"),
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
            ),
            "initdb",
        )?;
        let port = free_port()?;
        let port_text = port.to_string();
        let sockets = format!("unix_socket_directories={}", dir.display());
        let settings = [
            "listen_addresses=127.0.0.1",
            sockets.as_str(),
            "wal_level=logical",
            "max_replication_slots=10",
            "max_wal_senders=10",
            "fsync=off",
            "full_page_writes=off",
            "shared_buffers=64MB",
        ];
        let mut args = vec!["-D", data.as_str(), "-p", port_text.as_str()];
        for setting in &settings {
            args.extend(["-c", setting]);
        }
        let server = command(bin.join("postgres"), &args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting postgres")?;
        let cluster = PgCluster { dir, port, server };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port_text, "-U", "postgres"])
                .status()
                .is_ok_and(|status| status.success());
            if ready {
                return Ok(cluster);
            }
            if Instant::now() > deadline {
                bail!("the private PostgreSQL server did not start within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A URL of `database` as the superuser `postgres`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // SIGQUIT to the postmaster (under runuser, the child is runuser).
        let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned))
            .unwrap_or_else(|| self.server.id().to_string());
        let _ = Command::new("kill").args(["-QUIT", &pid]).status();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
