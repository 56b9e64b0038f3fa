//! RabbitMQ nodes of one's own: one node, or a cluster of three on this one
//! host, each with its own node name, ports and directories, so that
//! stopping or killing one never touches the machine's shared broker.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{free_port, run};

/// An `advanced.config` under which the node closes the channel of a
/// consumer that holds a delivery unacknowledged for more than 3 s
/// (RabbitMQ's `consumer_timeout`, 30 minutes by default), checked every
/// second (`channel_tick_interval`, a minute by default).
pub const SHORT_CONSUMER_TIMEOUT: &str =
    "[{rabbit, [{consumer_timeout, 3000}, {channel_tick_interval, 1000}]}].\n";

/// One node of one's own (no plugins).
pub struct PrivateRabbit {
    dir: PathBuf,
    node: String,
    port: u16,
    dist_port: u16,
}

impl PrivateRabbit {
    /// Starts a node named after `tag`, with `advanced` as its
    /// `advanced.config` if given, and waits until it runs.
    pub fn start(tag: &str, advanced: Option<&str>) -> anyhow::Result<Self> {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("syncway-{}-{tag}-{}", std::process::id(), &unique[..6]);
        let dir = std::env::temp_dir().join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        // RabbitMQ reads `advanced.config` only under that extension.
        std::fs::write(dir.join("advanced.config"), advanced.unwrap_or("[].\n"))?;
        // Debian's rabbitmq-server runs the node as the rabbitmq user, whose
        // Erlang cookie every node of the cluster then shares.
        let _ = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(&dir)
            .status();
        let rabbit = PrivateRabbit {
            dir,
            node: format!("{name}@localhost"),
            port: free_port()?,
            dist_port: free_port()?,
        };
        rabbit.up()?;
        Ok(rabbit)
    }

    fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new("rabbitmqctl")
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .output()
            .context("running rabbitmqctl")?;
        if !output.status.success() {
            bail!(
                "rabbitmqctl {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn await_startup(&self) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if self.ctl(&["await_startup", "--timeout", "10"]).is_ok() {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(90) {
                bail!("the private RabbitMQ node {} did not start", self.node);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Starts the node's Erlang VM (it rejoins its cluster, if it had one).
    fn up(&self) -> anyhow::Result<()> {
        let mut command = Command::new("rabbitmq-server");
        command
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
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
                self.dir.join("advanced.config"),
            );
        run(command.arg("-detached"), "rabbitmq-server")?;
        self.await_startup()
    }

    /// Stops the broker application: its listeners close, every client
    /// connection drops; the VM stays up.
    pub fn stop_app(&self) -> anyhow::Result<()> {
        self.ctl(&["stop_app"]).map(drop)
    }

    pub fn start_app(&self) -> anyhow::Result<()> {
        self.ctl(&["start_app"])?;
        self.await_startup()
    }

    /// SIGKILL to the node's VM, as a machine failure would.
    fn kill(&self) -> anyhow::Result<()> {
        let pid = std::fs::read_to_string(self.dir.join("pid"))
            .with_context(|| format!("no pid file for {}", self.node))?;
        run(Command::new("kill").args(["-KILL", pid.trim()]), "kill")
    }

    fn join(&self, first: &PrivateRabbit) -> anyhow::Result<()> {
        self.ctl(&["stop_app"])?;
        self.ctl(&["join_cluster", &first.node])?;
        self.start_app()
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        if self.ctl(&["stop"]).is_err() {
            let _ = self.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three nodes joined in one cluster on this host.
pub struct PrivateCluster {
    nodes: Vec<PrivateRabbit>,
    /// The node killed by [`PrivateCluster::kill_leader`], until restarted.
    killed: std::sync::Mutex<Option<usize>>,
}

impl PrivateCluster {
    pub fn start() -> anyhow::Result<Self> {
        let first = PrivateRabbit::start("a", None)?;
        let mut nodes = vec![first];
        for tag in ["b", "c"] {
            let node = PrivateRabbit::start(tag, None)?;
            node.join(&nodes[0])?;
            nodes.push(node);
        }
        Ok(PrivateCluster {
            nodes,
            killed: std::sync::Mutex::new(None),
        })
    }

    /// Every node's URL, comma-separated (`SYNCWAY_AMQP__URL`'s list).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(PrivateRabbit::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node that leads `queue` (a quorum queue), asked of any node
    /// that answers.
    fn leader_of(&self, queue: &str) -> anyhow::Result<usize> {
        let listing = self
            .nodes
            .iter()
            .find_map(|node| {
                node.ctl(&["list_queues", "name", "leader", "--formatter", "json"])
                    .ok()
            })
            .context("no node of the cluster answers")?;
        let queues: Vec<serde_json::Value> =
            serde_json::from_str(&listing).context("rabbitmqctl list_queues gave no JSON")?;
        let leader = queues
            .iter()
            .find(|entry| entry["name"] == queue)
            .and_then(|entry| entry["leader"].as_str())
            .with_context(|| format!("no leader for {queue}"))?;
        self.nodes
            .iter()
            .position(|node| node.node == leader)
            .with_context(|| format!("{queue}'s leader {leader} is not one of the bench's nodes"))
    }

    /// Kills (SIGKILL) the node leading `queue`; returns its name.
    pub fn kill_leader(&self, queue: &str) -> anyhow::Result<String> {
        let leader = self.leader_of(queue)?;
        self.nodes[leader].kill()?;
        *self
            .killed
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))? = Some(leader);
        Ok(self.nodes[leader].node.clone())
    }

    /// Starts the killed node again; it rejoins the cluster.
    pub fn restart_killed(&self) -> anyhow::Result<()> {
        let killed = self
            .killed
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .take();
        match killed {
            Some(node) => self.nodes[node].up(),
            None => Ok(()),
        }
    }
}
