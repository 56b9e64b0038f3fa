//! Servers the chaos bench owns, so that stopping or exhausting one never
//! touches the machine's shared ones: a private Postgres cluster and a
//! private RabbitMQ node, each on its own ports and data directory.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A Postgres cluster in a temporary directory (trust auth, user postgres),
/// run as the `postgres` system user when the bench runs as root.
pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

impl PrivatePostgres {
    pub fn start(max_connections: u32) -> anyhow::Result<Self> {
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
             max_connections = {max_connections}\nfsync = off\n",
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

/// A RabbitMQ node of the bench's own (its own node name, ports and
/// directories; no plugins).
pub struct PrivateRabbit {
    dir: PathBuf,
    node: String,
    pub port: u16,
}

impl PrivateRabbit {
    pub fn start() -> anyhow::Result<Self> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("syncway-chaos-mq-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        // Debian's rabbitmq-server runs the node as the rabbitmq user.
        let _ = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(&dir)
            .status();
        let node = format!("syncway-chaos-{}@localhost", std::process::id());
        let rabbit = PrivateRabbit { dir, node, port };
        let mut command = Command::new("rabbitmq-server");
        rabbit.environment(&mut command);
        run(command.arg("-detached"), "rabbitmq-server")?;
        rabbit.await_startup()?;
        Ok(rabbit)
    }

    fn environment(&self, command: &mut Command) {
        let dist = self.port as u32 + 20000;
        command
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_PID_FILE", self.dir.join("pid"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.dir.join("enabled_plugins"),
            )
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("none"))
            .env(
                "RABBITMQ_ADVANCED_CONFIG_FILE",
                self.dir.join("none.config"),
            );
    }

    fn ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        run(
            Command::new("rabbitmqctl")
                .arg("-n")
                .arg(&self.node)
                .args(args),
            &format!("rabbitmqctl {}", args.join(" ")),
        )
    }

    fn await_startup(&self) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if self.ctl(&["await_startup", "--timeout", "10"]).is_ok() {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(90) {
                bail!("the private RabbitMQ node did not start");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Stops the broker (its listeners close, every connection drops).
    pub fn down(&self) -> anyhow::Result<()> {
        self.ctl(&["stop_app"])
    }

    pub fn up(&self) -> anyhow::Result<()> {
        self.ctl(&["start_app"])?;
        self.await_startup()
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        let _ = self.ctl(&["stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
