//! What a tenant's connector may reach: the operator's egress policy.
//!
//! `postgres` and `http_json` may connect only to addresses this policy
//! allows: public ones, plus what the operator opens with `allow_cidrs` and
//! `allow_hosts`. Loopback, link-local, private, CGNAT, unspecified,
//! multicast and reserved addresses are denied by default, compared after
//! normalisation ([`address`]). Checks are made on resolved addresses and
//! callers connect to exactly the address that was checked ([`Resolved`]),
//! so a name cannot resolve to one address for the check and another for
//! the connection. `local_files` may read only inside the operator's roots
//! ([`files`]). syncway's own database is never a source, wherever it is.
//!
//! A denial says which host and which setting would allow it, and nothing
//! about what answers there: no connection is attempted.

pub mod address;
pub mod files;
#[cfg(feature = "reqwest")]
pub mod http;
pub mod redact;
mod resolve;

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

pub use resolve::{ResolveError, Resolved};

/// Why a target was refused. Its text is safe to show the tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The connector policy does not allow the host.
    #[error(
        "{host} is not allowed by the connector policy ({reason}); an operator can allow it \
         with SYNCWAY_CONNECTORS__ALLOW_HOSTS or SYNCWAY_CONNECTORS__ALLOW_CIDRS"
    )]
    Host { host: String, reason: String },
    /// The target is syncway's own database.
    #[error("{host} is syncway's own database, which is never a source")]
    OwnDatabase { host: String },
    /// A local path outside every allowed root.
    #[error("{0}")]
    Path(String),
}

/// Why credentials are not sent to `host` over plain http: it is not
/// allowed as internal. Shown to the tenant (API 422 and job error alike).
pub fn plain_http_refusal(host: &str) -> String {
    format!(
        "credentials are not sent over plain http to {host}; use https, or an operator \
         can allow the host as internal with SYNCWAY_CONNECTORS__ALLOW_HOSTS or \
         SYNCWAY_CONNECTORS__ALLOW_CIDRS"
    )
}

/// How an address passed the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// A public address.
    Public,
    /// An address (or host) the operator opened explicitly.
    Explicit,
}

/// syncway's own database: its addresses, port and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnDatabase {
    pub addresses: Vec<IpAddr>,
    pub port: u16,
    pub database: String,
}

/// The operator's egress policy (settings section `connectors`).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allow_cidrs: Vec<IpNet>,
    /// Lower-case, without a trailing dot.
    allow_hosts: Vec<String>,
    roots: files::Roots,
    own_database: Option<OwnDatabase>,
}

/// A setting the policy cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct BadSetting {
    pub setting: &'static str,
    pub message: String,
}

impl Policy {
    /// Builds the policy from its settings' text.
    pub fn new(
        allow_cidrs: &[String],
        allow_hosts: &[String],
        local_files_roots: &[String],
    ) -> Result<Policy, BadSetting> {
        let allow_cidrs = allow_cidrs
            .iter()
            .map(|cidr| {
                let cidr = cidr.trim();
                cidr.parse::<IpNet>()
                    .or_else(|_| address::parse_ip(cidr).map(IpNet::from).ok_or(()))
                    .map(normal_net)
                    .map_err(|()| BadSetting {
                        setting: "connectors.allow_cidrs",
                        message: format!(
                            "{cidr:?} is not a CIDR (such as 10.20.0.0/16) or address"
                        ),
                    })
            })
            .collect::<Result<_, _>>()?;
        let allow_hosts = allow_hosts
            .iter()
            .map(|host| normal_host(host))
            .filter(|host| !host.is_empty())
            .collect();
        Ok(Policy {
            allow_cidrs,
            allow_hosts,
            roots: files::Roots::new(local_files_roots)?,
            own_database: None,
        })
    }

    /// Names syncway's own database, which no connector may read.
    pub fn with_own_database(mut self, own: OwnDatabase) -> Self {
        self.own_database = Some(own);
        self
    }

    pub fn roots(&self) -> &files::Roots {
        &self.roots
    }

    /// Whether the operator listed `host` in `allow_hosts`.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = normal_host(host);
        self.allow_hosts.contains(&host)
    }

    /// Judges one address.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<Allowance, Denied> {
        let ip = address::canonical(ip);
        if self.allow_cidrs.iter().any(|net| net.contains(&ip)) {
            return Ok(Allowance::Explicit);
        }
        match address::internal_range(ip) {
            None => Ok(Allowance::Public),
            Some(range) => Err(Denied::Host {
                host: host.to_owned(),
                reason: format!("{range} addresses are denied"),
            }),
        }
    }

    /// Refuses `address` when it is syncway's own database.
    pub fn check_database(
        &self,
        host: &str,
        address: SocketAddr,
        database: &str,
    ) -> Result<(), Denied> {
        let Some(own) = &self.own_database else {
            return Ok(());
        };
        let ip = address::canonical(address.ip());
        let same_address = own.addresses.iter().any(|own| {
            let own = address::canonical(*own);
            // Every loopback address reaches a server listening on one.
            own == ip || (own.is_loopback() && ip.is_loopback())
        });
        if same_address && own.port == address.port() && own.database == database {
            return Err(Denied::OwnDatabase {
                host: host.to_owned(),
            });
        }
        Ok(())
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 one,
/// since addresses are compared in their IPv4 form.
fn normal_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.network().to_ipv4_mapped()
        && v6.prefix_len() >= 96
        && let Ok(v4) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(v4);
    }
    net
}

/// A host name as compared: lower case, no trailing dot, no brackets.
fn normal_host(host: &str) -> String {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    host.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .map(str::to_owned)
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(cidrs: &[&str], hosts: &[&str]) -> Policy {
        let list = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Policy::new(&list(cidrs), &list(hosts), &[]).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        address::parse_ip(text).unwrap_or_else(|| panic!("{text}"))
    }

    #[test]
    fn the_default_policy_denies_internal_and_allows_public_addresses() {
        let policy = Policy::default();
        assert!(policy.check_ip("x", ip("127.0.0.1")).is_err());
        assert!(policy.check_ip("x", ip("::ffff:10.0.0.1")).is_err());
        assert_eq!(policy.check_ip("x", ip("8.8.8.8")), Ok(Allowance::Public));
        let denied = policy.check_ip("metadata", ip("169.254.169.254"));
        let text = denied.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.contains("metadata") && text.contains("ALLOW_CIDRS"),
            "{text}"
        );
    }

    #[test]
    fn allowed_cidrs_open_exactly_their_range() {
        let policy = policy(
            &["127.0.0.1/32", "10.20.0.0/16", "::ffff:192.168.1.0/120"],
            &[],
        );
        assert_eq!(
            policy.check_ip("x", ip("127.0.0.1")),
            Ok(Allowance::Explicit)
        );
        assert_eq!(
            policy.check_ip("x", ip("::ffff:127.0.0.1")),
            Ok(Allowance::Explicit)
        );
        assert!(policy.check_ip("x", ip("127.0.0.2")).is_err());
        assert_eq!(
            policy.check_ip("x", ip("10.20.3.4")),
            Ok(Allowance::Explicit)
        );
        assert!(policy.check_ip("x", ip("10.21.0.1")).is_err());
        assert_eq!(
            policy.check_ip("x", ip("192.168.1.9")),
            Ok(Allowance::Explicit)
        );
        assert!(
            Policy::new(&["nonsense".into()], &[], &[]).is_err(),
            "a bad CIDR is a setting error"
        );
    }

    #[test]
    fn hosts_match_without_case_or_trailing_dot() {
        let policy = policy(&[], &["DB.internal."]);
        assert!(policy.host_allowed("db.internal"));
        assert!(policy.host_allowed("db.INTERNAL."));
        assert!(!policy.host_allowed("other.internal"));
    }

    #[test]
    fn the_own_database_is_refused_on_any_loopback_address_and_only_by_name() {
        let policy = Policy::default().with_own_database(OwnDatabase {
            addresses: vec![ip("127.0.0.1")],
            port: 5432,
            database: "syncway".into(),
        });
        let at = |text: &str, port| SocketAddr::new(ip(text), port);
        assert!(
            policy
                .check_database("h", at("127.0.0.1", 5432), "syncway")
                .is_err()
        );
        assert!(
            policy
                .check_database("h", at("::1", 5432), "syncway")
                .is_err()
        );
        assert!(
            policy
                .check_database("h", at("::ffff:127.0.0.2", 5432), "syncway")
                .is_err()
        );
        assert!(
            policy
                .check_database("h", at("127.0.0.1", 5432), "other")
                .is_ok()
        );
        assert!(
            policy
                .check_database("h", at("127.0.0.1", 5433), "syncway")
                .is_ok()
        );
    }
}
