//! A network namespace joined to the host by a veth pair, and nftables
//! rules on the host's end that drop a port's traffic both ways.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::bail;

use crate::command::run;

/// A network namespace with a veth pair to the host and a nftables table
/// of its own; all of it removed when dropped.
#[derive(Debug)]
pub struct Partition {
    namespace: String,
    host_if: String,
    table: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
}

/// `ip` or `nft` with `args`.
fn net(program: &str, args: &[&str]) -> anyhow::Result<()> {
    run(
        Command::new(program).args(args),
        &format!("{program} {}", args.join(" ")),
    )
}

/// Whether this process runs as root (what a partition needs).
pub fn root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

impl Partition {
    /// A namespace with its link to the host up, on a /30 of its own in
    /// 10.200.0.0/14 (chosen by chance; another when it is taken).
    pub fn new() -> anyhow::Result<Self> {
        if !root() {
            bail!("a network partition needs root (network namespaces, nftables)");
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut last = None;
        for attempt in 0..8u8 {
            let [a, b, ..] = uuid::Uuid::new_v4().into_bytes();
            let host_ip = Ipv4Addr::new(10, 200 + (a & 3), b, ((a >> 2) & 0x3c) | 1);
            let partition = Partition {
                namespace: format!("swp-{}", &id[..12]),
                host_if: format!("swp{}{attempt}", &id[..10]),
                table: format!("syncway_partition_{}", &id[..12]),
                host_ip,
                ns_ip: Ipv4Addr::from(u32::from(host_ip) + 1),
            };
            match partition.make() {
                Ok(()) => return Ok(partition),
                Err(error) => {
                    partition.unmake();
                    last = Some(error);
                }
            }
        }
        Err(last
            .unwrap_or_else(|| anyhow::anyhow!("no subnet"))
            .context("making a network namespace"))
    }

    fn make(&self) -> anyhow::Result<()> {
        let (ns, host_if) = (self.namespace.as_str(), self.host_if.as_str());
        let peer = format!("{host_if}n");
        let peer = peer.as_str();
        let host_cidr = format!("{}/30", self.host_ip);
        let ns_cidr = format!("{}/30", self.ns_ip);
        net("ip", &["netns", "add", ns])?;
        net(
            "ip",
            &["link", "add", host_if, "type", "veth", "peer", "name", peer],
        )?;
        net("ip", &["link", "set", peer, "netns", ns])?;
        net("ip", &["addr", "add", host_cidr.as_str(), "dev", host_if])?;
        net("ip", &["link", "set", host_if, "up"])?;
        net(
            "ip",
            &[
                "netns",
                "exec",
                ns,
                "ip",
                "addr",
                "add",
                ns_cidr.as_str(),
                "dev",
                peer,
            ],
        )?;
        net(
            "ip",
            &["netns", "exec", ns, "ip", "link", "set", peer, "up"],
        )?;
        net(
            "ip",
            &["netns", "exec", ns, "ip", "link", "set", "lo", "up"],
        )?;
        let table = self.table.as_str();
        net("nft", &["add", "table", "inet", table])?;
        for hook in ["input", "output"] {
            let spec = format!("{{ type filter hook {hook} priority -10; }}");
            net("nft", &["add", "chain", "inet", table, hook, spec.as_str()])?;
        }
        Ok(())
    }

    fn unmake(&self) {
        let _ = net("nft", &["delete", "table", "inet", &self.table]);
        let _ = net("ip", &["link", "del", &self.host_if]);
        let _ = net("ip", &["netns", "del", &self.namespace]);
    }

    /// The host's address on the link (where proxies listen).
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// The namespace's address on the link (where its processes listen).
    pub fn ns_ip(&self) -> Ipv4Addr {
        self.ns_ip
    }

    /// The command that runs a program inside the namespace, in its place:
    /// `ip netns exec NAME`.
    pub fn prefix(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.namespace]
    }

    /// Drops every packet between the namespace and the host's `port`
    /// (a proxy's), both ways.
    pub fn cut(&self, port: u16) -> anyhow::Result<()> {
        let port = port.to_string();
        let (table, host_if) = (self.table.as_str(), self.host_if.as_str());
        for (chain, direction, side) in [
            ("input", "iifname", "dport"),
            ("output", "oifname", "sport"),
        ] {
            net(
                "nft",
                &[
                    "add",
                    "rule",
                    "inet",
                    table,
                    chain,
                    direction,
                    host_if,
                    "tcp",
                    side,
                    port.as_str(),
                    "drop",
                ],
            )?;
        }
        Ok(())
    }

    /// Lets everything through again.
    pub fn restore(&self) -> anyhow::Result<()> {
        for chain in ["input", "output"] {
            net("nft", &["flush", "chain", "inet", &self.table, chain])?;
        }
        Ok(())
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.unmake();
    }
}
