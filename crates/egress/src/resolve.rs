//! Resolving a host under the policy: the addresses a connector may use.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::{Allowance, Denied, Policy, address};

/// A host resolved and checked: connect to these addresses and no others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Every one passed the policy.
    pub addresses: Vec<SocketAddr>,
    /// `Explicit` when the operator opened the host or every address.
    pub allowance: Allowance,
}

/// Why a host could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The name did not resolve (may work later).
    #[error("{host} could not be resolved")]
    Lookup { host: String },
}

/// What `localhost` names always mean.
const LOCALHOST: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

fn is_localhost(host: &str) -> bool {
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

impl Policy {
    /// Judges `host` without the network: `Some` when its text alone decides
    /// (an address, a Unix socket path, a `localhost` name, an allowed
    /// host), `None` when only a lookup can tell.
    pub fn check_host_text(&self, host: &str) -> Option<Result<Allowance, Denied>> {
        let denied = |reason: &str| {
            Some(Err(Denied::Host {
                host: host.to_owned(),
                reason: reason.to_owned(),
            }))
        };
        if host.trim().is_empty() {
            return denied("no host given");
        }
        if host.starts_with('/') || host.starts_with('@') {
            return denied("Unix sockets are denied");
        }
        if self.host_allowed(host) {
            return Some(Ok(Allowance::Explicit));
        }
        if let Some(ip) = address::parse_ip(host) {
            return Some(self.check_ip(host, ip));
        }
        if is_localhost(host) {
            return Some(self.check_ip(host, LOCALHOST[0]));
        }
        None
    }

    /// Resolves `host` and keeps the addresses the policy allows; denied
    /// when none is. An allowed host's addresses are all used.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Resolved, ResolveError> {
        let text = self.check_host_text(host);
        if let Some(Err(denied)) = text {
            return Err(denied.into());
        }
        if let Some(ip) = address::parse_ip(host) {
            let allowance = self.check_ip(host, ip)?;
            return Ok(Resolved {
                addresses: vec![SocketAddr::new(ip, port)],
                allowance: if self.host_allowed(host) {
                    Allowance::Explicit
                } else {
                    allowance
                },
            });
        }
        let found: Vec<SocketAddr> = if is_localhost(host) {
            // RFC 6761: always loopback, whatever a resolver says.
            LOCALHOST
                .iter()
                .map(|ip| SocketAddr::new(*ip, port))
                .collect()
        } else {
            tokio::net::lookup_host((host.trim_end_matches('.'), port))
                .await
                .map_err(|_| ResolveError::Lookup {
                    host: host.to_owned(),
                })?
                .collect()
        };
        if found.is_empty() {
            return Err(ResolveError::Lookup {
                host: host.to_owned(),
            });
        }
        if matches!(text, Some(Ok(Allowance::Explicit))) {
            return Ok(Resolved {
                addresses: found,
                allowance: Allowance::Explicit,
            });
        }
        let mut addresses = Vec::new();
        let mut explicit = true;
        for address in found {
            if let Ok(allowance) = self.check_ip(host, address.ip()) {
                explicit &= allowance == Allowance::Explicit;
                addresses.push(address);
            }
        }
        if addresses.is_empty() {
            // Which internal range it was is not said: that would map the
            // operator's internal names for the tenant.
            return Err(Denied::Host {
                host: host.to_owned(),
                reason: "it resolves only to addresses the policy denies".into(),
            }
            .into());
        }
        Ok(Resolved {
            addresses,
            allowance: if explicit {
                Allowance::Explicit
            } else {
                Allowance::Public
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_that_resolve_to_internal_addresses_are_denied() {
        let policy = Policy::default();
        for host in [
            "localhost",
            "LOCALHOST.",
            "db.localhost",
            "/var/run/postgresql",
            "",
            "127.1",
        ] {
            let result = policy.resolve(host, 5432).await;
            assert!(
                matches!(result, Err(ResolveError::Denied(_))),
                "{host:?}: {result:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_allowed_cidr_lets_a_literal_through_at_exactly_that_address() {
        let policy = Policy::new(&["127.0.0.1/32".into()], &[], &[]).unwrap();
        let resolved = policy.resolve("[::ffff:127.0.0.1]", 80).await;
        assert_eq!(
            resolved.map(|r| (r.addresses, r.allowance)),
            Ok((
                vec![
                    "[::ffff:127.0.0.1]:80"
                        .parse()
                        .unwrap_or_else(|_| unreachable!())
                ],
                Allowance::Explicit
            ))
        );
    }
}
