//! Postgres and RabbitMQ for `syncway dev`: found where the settings say,
//! the locally installed servers started when they do not answer (as
//! `scripts/services` does), and stopped again when `dev` ends — only the
//! ones `dev` itself started.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a server that was just started may take to answer.
const START_WAIT: Duration = Duration::from_secs(60);

/// A local server `syncway dev` can start and stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Postgres,
    RabbitMq,
}

/// A server `syncway dev` started, to stop when it ends.
#[derive(Debug)]
pub struct Started {
    service: Service,
    /// The PostgreSQL cluster's version (Debian's `pg_ctlcluster`).
    cluster: Option<String>,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Postgres => "PostgreSQL",
            Service::RabbitMq => "RabbitMQ",
        }
    }
}

/// `host:port` of a URL (the first of a comma-separated list), with the
/// scheme's default port.
pub fn address(url: &str, default_port: u16) -> anyhow::Result<(String, u16)> {
    let first = url.split(',').next().unwrap_or(url).trim();
    let parsed = url::Url::parse(first).with_context(|| "reading a service URL".to_owned())?;
    let host = parsed.host_str().unwrap_or("127.0.0.1").to_owned();
    Ok((host, parsed.port().unwrap_or(default_port)))
}

async fn answers(host: &str, port: u16) -> bool {
    let connect = tokio::net::TcpStream::connect((host, port));
    matches!(
        tokio::time::timeout(Duration::from_secs(2), connect).await,
        Ok(Ok(_))
    )
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Runs a server's control command, quietly unless it fails.
fn control(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Starts the local PostgreSQL cluster (Debian's `pg_ctlcluster`).
fn start_postgres() -> anyhow::Result<Started> {
    if !installed("pg_ctlcluster") {
        bail!(
            "PostgreSQL does not answer and is not installed here: install it \
             (Debian/Ubuntu: apt-get install postgresql, or run scripts/dev from \
             syncway's source tree, which installs it; macOS: brew install postgresql) \
             or point SYNCWAY_DATABASE__URL at a running server"
        );
    }
    let clusters = Command::new("pg_lsclusters").arg("-h").output()?;
    let listing = String::from_utf8_lossy(&clusters.stdout);
    let Some(version) = listing.split_whitespace().next() else {
        bail!("PostgreSQL is installed but has no cluster: run pg_createcluster first");
    };
    eprintln!("starting the local PostgreSQL {version}");
    control(
        "pg_ctlcluster",
        &["--skip-systemctl-redirect", version, "main", "start"],
    )?;
    Ok(Started {
        service: Service::Postgres,
        cluster: Some(version.to_owned()),
    })
}

/// Starts the local RabbitMQ (detached).
fn start_rabbitmq() -> anyhow::Result<Started> {
    if !installed("rabbitmq-server") {
        bail!(
            "RabbitMQ does not answer and is not installed here: install it \
             (Debian/Ubuntu: apt-get install rabbitmq-server, or run scripts/dev from \
             syncway's source tree, which installs it; macOS: brew install rabbitmq) \
             or point SYNCWAY_AMQP__URL at a running broker"
        );
    }
    eprintln!("starting the local RabbitMQ");
    control("rabbitmq-server", &["-detached"])?;
    Ok(Started {
        service: Service::RabbitMq,
        cluster: None,
    })
}

/// Makes sure a service answers at `(host, port)`, starting the local one
/// when it does not. Returns what it started.
pub async fn ensure(
    service: Service,
    (host, port): (String, u16),
) -> anyhow::Result<Option<Started>> {
    if answers(&host, port).await {
        return Ok(None);
    }
    let what = service.name();
    let local = matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1");
    if !local {
        bail!("{what} does not answer on {host}:{port}");
    }
    let started = match service {
        Service::Postgres => start_postgres()?,
        Service::RabbitMq => start_rabbitmq()?,
    };
    let since = Instant::now();
    while !answers(&host, port).await {
        if since.elapsed() > START_WAIT {
            // Stop what was started rather than leave it half up.
            started.stop();
            bail!("{what} was started but does not answer on {host}:{port} after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(Some(started))
}

impl Started {
    pub fn name(&self) -> &'static str {
        self.service.name()
    }

    /// Stops the server again, saying so.
    pub fn stop(&self) {
        let what = self.service.name();
        eprintln!("stopping the local {what} that syncway dev started");
        let stopped = match (self.service, &self.cluster) {
            (Service::Postgres, Some(version)) => control(
                "pg_ctlcluster",
                &["--skip-systemctl-redirect", version, "main", "stop"],
            ),
            (Service::Postgres, None) => Ok(()),
            // `shutdown` waits until the node has stopped.
            (Service::RabbitMq, _) => control("rabbitmqctl", &["shutdown"]),
        };
        if let Err(error) = stopped {
            eprintln!("could not stop {what}: {error:#}; it is still running");
        }
    }
}
