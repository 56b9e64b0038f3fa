//! A network partition, as the kernel makes it: a worker process in a
//! network namespace of its own, joined to the host by a veth pair, reaching
//! Postgres and RabbitMQ through proxies on the host's end; nftables drops
//! its traffic to either (both ways) and lets it through again. Needs root
//! (namespaces, nftables): [`Partition::new`] says so and returns `None`
//! elsewhere, and the tests using it skip with that message.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};

use super::TcpProxy;
use super::env::{self, TestEnv};
use super::process::WorkerProcess;

/// Which of the worker's links a cut drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Postgres,
    Broker,
}

pub struct Partition {
    namespace: String,
    host_if: String,
    table: String,
    host_ip: Ipv4Addr,
    postgres: SocketAddr,
    broker: SocketAddr,
    _proxies: Vec<TcpProxy>,
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("{program}: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

impl Partition {
    /// A namespace with proxies to the test's Postgres and RabbitMQ; `None`
    /// (with the reason printed) where namespaces cannot be made.
    pub async fn new() -> Option<Self> {
        if !root() {
            eprintln!("skipped: a network partition needs root (network namespaces, nftables)");
            return None;
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        // A /30 of its own in 10.200.0.0/14, by chance; tried again if taken.
        for attempt in 0..8 {
            let [a, b, ..] = uuid::Uuid::new_v4().into_bytes();
            let host_ip = Ipv4Addr::new(10, 200 + (a & 3), b, ((a >> 2) & 0x3c) | 1);
            let ns_ip = Ipv4Addr::from(u32::from(host_ip) + 1);
            let partition = Partition {
                namespace: format!("swp-{}", &id[..12]),
                host_if: format!("swp{}{attempt}", &id[..10]),
                table: format!("syncway_partition_{}", &id[..12]),
                host_ip,
                postgres: SocketAddr::from((host_ip, 0)),
                broker: SocketAddr::from((host_ip, 0)),
                _proxies: Vec::new(),
            };
            match partition.make(ns_ip) {
                Ok(()) => return Some(partition.with_proxies().await),
                Err(error) if attempt < 7 => {
                    eprintln!("partition: {error}; another subnet");
                    partition.unmake();
                }
                Err(error) => panic!("making a network namespace: {error}"),
            }
        }
        None
    }

    fn make(&self, ns_ip: Ipv4Addr) -> Result<(), String> {
        let (ns, host_if) = (self.namespace.as_str(), self.host_if.as_str());
        let peer = format!("{host_if}n");
        let host_cidr = format!("{}/30", self.host_ip);
        let ns_cidr = format!("{ns_ip}/30");
        run("ip", &["netns", "add", ns])?;
        run(
            "ip",
            &[
                "link", "add", host_if, "type", "veth", "peer", "name", &peer,
            ],
        )?;
        run("ip", &["link", "set", &peer, "netns", ns])?;
        run("ip", &["addr", "add", &host_cidr, "dev", host_if])?;
        run("ip", &["link", "set", host_if, "up"])?;
        let inside = ["netns", "exec", ns, "ip"];
        run(
            "ip",
            &[&inside[..], &["addr", "add", &ns_cidr, "dev", &peer]].concat(),
        )?;
        run("ip", &[&inside[..], &["link", "set", &peer, "up"]].concat())?;
        run("ip", &[&inside[..], &["link", "set", "lo", "up"]].concat())?;
        let table = self.table.as_str();
        run("nft", &["add", "table", "inet", table])?;
        for (chain, hook) in [("input", "input"), ("output", "output")] {
            let spec = format!("{{ type filter hook {hook} priority -10; }}");
            run("nft", &["add", "chain", "inet", table, chain, &spec])?;
        }
        Ok(())
    }

    fn unmake(&self) {
        let _ = run("nft", &["delete", "table", "inet", &self.table]);
        let _ = run("ip", &["link", "del", &self.host_if]);
        let _ = run("ip", &["netns", "del", &self.namespace]);
    }

    async fn with_proxies(mut self) -> Self {
        let postgres = SocketAddr::from((self.host_ip, super::free_port()));
        let broker = SocketAddr::from((self.host_ip, super::free_port()));
        let amqp: SocketAddr = "127.0.0.1:5672".parse().expect("an address");
        self._proxies = vec![
            TcpProxy::start(postgres, env::postgres_address()).await,
            TcpProxy::start(broker, amqp).await,
        ];
        self.postgres = postgres;
        self.broker = broker;
        self
    }

    /// A worker process inside the namespace, on `env`, reaching the
    /// services through the proxies.
    pub fn worker(
        &self,
        env: &TestEnv,
        lease_seconds: u64,
        vars: &[(&str, String)],
    ) -> WorkerProcess {
        let mut vars = vars.to_vec();
        vars.push((
            "SYNCWAY_DATABASE__URL",
            env::postgres_url_via(self.postgres, &env.database),
        ));
        vars.push((
            "SYNCWAY_AMQP__URL",
            format!("amqp://guest:guest@{}/%2f", self.broker),
        ));
        WorkerProcess::start_in(
            &["ip", "netns", "exec", &self.namespace],
            env,
            lease_seconds,
            &vars,
        )
    }

    /// Drops every packet between the worker and `link`, both ways.
    pub fn cut(&self, link: Link) {
        let port = self.port(link).to_string();
        let (table, host_if) = (self.table.as_str(), self.host_if.as_str());
        for (chain, direction, side) in [
            ("input", "iifname", "dport"),
            ("output", "oifname", "sport"),
        ] {
            run(
                "nft",
                &[
                    "add", "rule", "inet", table, chain, direction, host_if, "tcp", side, &port,
                    "drop",
                ],
            )
            .unwrap_or_else(|error| panic!("cutting {link:?}: {error}"));
        }
    }

    /// Lets everything through again.
    pub fn restore(&self) {
        for chain in ["input", "output"] {
            run("nft", &["flush", "chain", "inet", &self.table, chain])
                .unwrap_or_else(|error| panic!("restoring: {error}"));
        }
    }

    fn port(&self, link: Link) -> u16 {
        match link {
            Link::Postgres => self.postgres.port(),
            Link::Broker => self.broker.port(),
        }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.unmake();
    }
}
