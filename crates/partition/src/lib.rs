//! Network partitions for the tests and the chaos bench, as the kernel
//! makes them: a network namespace joined to the host by a veth pair, and
//! nftables rules on the host's end that drop a port's traffic both ways
//! (packets vanish: no reset, no error, as on a cut link). A process in the
//! namespace reaches the host's services through [`Proxy`]s listening on
//! the host's end. Making one needs root (`ip`, `nft`).

mod proxy;

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

pub use proxy::Proxy;

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
    pub fn new() -> Result<Self, String> {
        if !root() {
            return Err("a network partition needs root (network namespaces, nftables)".into());
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut last = String::new();
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
                    last = error;
                }
            }
        }
        Err(format!("making a network namespace: {last}"))
    }

    fn make(&self) -> Result<(), String> {
        let (ns, host_if) = (self.namespace.as_str(), self.host_if.as_str());
        let peer = format!("{host_if}n");
        let peer = peer.as_str();
        let host_cidr = format!("{}/30", self.host_ip);
        let ns_cidr = format!("{}/30", self.ns_ip);
        run("ip", &["netns", "add", ns])?;
        run(
            "ip",
            &["link", "add", host_if, "type", "veth", "peer", "name", peer],
        )?;
        run("ip", &["link", "set", peer, "netns", ns])?;
        run("ip", &["addr", "add", host_cidr.as_str(), "dev", host_if])?;
        run("ip", &["link", "set", host_if, "up"])?;
        run(
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
        run(
            "ip",
            &["netns", "exec", ns, "ip", "link", "set", peer, "up"],
        )?;
        run(
            "ip",
            &["netns", "exec", ns, "ip", "link", "set", "lo", "up"],
        )?;
        let table = self.table.as_str();
        run("nft", &["add", "table", "inet", table])?;
        for hook in ["input", "output"] {
            let spec = format!("{{ type filter hook {hook} priority -10; }}");
            run("nft", &["add", "chain", "inet", table, hook, spec.as_str()])?;
        }
        Ok(())
    }

    fn unmake(&self) {
        let _ = run("nft", &["delete", "table", "inet", &self.table]);
        let _ = run("ip", &["link", "del", &self.host_if]);
        let _ = run("ip", &["netns", "del", &self.namespace]);
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
    pub fn cut(&self, port: u16) -> Result<(), String> {
        let port = port.to_string();
        let (table, host_if) = (self.table.as_str(), self.host_if.as_str());
        for (chain, direction, side) in [
            ("input", "iifname", "dport"),
            ("output", "oifname", "sport"),
        ] {
            run(
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
    pub fn restore(&self) -> Result<(), String> {
        for chain in ["input", "output"] {
            run("nft", &["flush", "chain", "inet", &self.table, chain])?;
        }
        Ok(())
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.unmake();
    }
}
