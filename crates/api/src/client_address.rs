//! Who the client is: the peer's address, or — when the peer is one of the
//! operator's proxies (`api.trusted_proxies`) — the address those proxies
//! name in `X-Forwarded-For` (else `Forwarded`): the right-most hop that is
//! not itself a trusted proxy. Headers from any other peer are ignored, so
//! a client cannot pick the address its limits are kept under.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use crate::AppState;

/// The client's address, as found; in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// From CIDRs or plain addresses (`10.0.0.0/8`, `192.0.2.7`, `::1`).
    pub fn parse(items: &[String]) -> anyhow::Result<Self> {
        items
            .iter()
            .map(|item| {
                let item = item.trim();
                IpNet::from_str(item)
                    .or_else(|_| IpAddr::from_str(item).map(IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "api.trusted_proxies: {item:?} is neither a CIDR nor an address"
                        )
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client's address for a request from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let mut hops = forwarded_for(headers);
        if hops.is_empty() {
            hops = forwarded(headers);
        }
        // Right to left: each trusted hop vouches for the one before it.
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(address) = hop else {
                // A hop no proxy of ours would write: the last trusted one
                // is as far as the chain can be believed.
                return client;
            };
            client = canonical(*address);
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 as IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// One hop's address: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]:4711`, optionally quoted; `None` for anything else
/// (`unknown`, an obfuscated identifier, garbage).
fn hop(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(address) = IpAddr::from_str(text) {
        return Some(address);
    }
    if let Ok(address) = SocketAddr::from_str(text) {
        return Some(address.ip());
    }
    let inner = text.strip_prefix('[')?.split(']').next()?;
    IpAddr::from_str(inner).ok()
}

/// The hops of every `X-Forwarded-For` header, in order.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| {
            let text = value.to_str().unwrap_or(",");
            text.split(',').map(hop).collect::<Vec<_>>()
        })
        .collect()
}

/// The `for=` hops of every `Forwarded` header (RFC 7239), in order.
fn forwarded(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("forwarded")
        .iter()
        .flat_map(|value| {
            let text = value.to_str().unwrap_or(",");
            text.split(',')
                .map(|element| {
                    element.split(';').find_map(|pair| {
                        let (name, value) = pair.split_once('=')?;
                        name.trim().eq_ignore_ascii_case("for").then_some(value)
                    })
                })
                .map(|value| value.and_then(hop))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Middleware on every route: puts the [`ClientAddress`] in the request.
pub async fn resolve(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        let client = state.trusted_proxies().client(peer.ip(), request.headers());
        request.extensions_mut().insert(ClientAddress(client));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn headers_of_an_untrusted_peer_are_ignored() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into()]).expect("cidrs");
        let sent = headers(&[("x-forwarded-for", "198.51.100.9")]);
        assert_eq!(proxies.client(ip("203.0.113.5"), &sent), ip("203.0.113.5"));
        let none = TrustedProxies::default();
        assert_eq!(none.client(ip("10.0.0.1"), &sent), ip("10.0.0.1"));
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let proxies =
            TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.7".into()]).expect("cidrs");
        // A client's own made-up entry, then the real client, then proxies.
        let sent = headers(&[(
            "x-forwarded-for",
            "1.2.3.4, 198.51.100.9, 192.0.2.7, 10.1.1.1",
        )]);
        assert_eq!(proxies.client(ip("10.0.0.2"), &sent), ip("198.51.100.9"));
        // Split over two headers, with ports and an IPv6 hop.
        let sent = headers(&[
            ("x-forwarded-for", "[2001:db8::5]:4711"),
            ("x-forwarded-for", "10.1.1.1"),
        ]);
        assert_eq!(proxies.client(ip("10.0.0.2"), &sent), ip("2001:db8::5"));
        // Garbage stops the walk at the last trusted hop.
        let sent = headers(&[("x-forwarded-for", "198.51.100.9, nonsense, 10.1.1.1")]);
        assert_eq!(proxies.client(ip("10.0.0.2"), &sent), ip("10.1.1.1"));
        // No header: the proxy itself.
        assert_eq!(
            proxies.client(ip("::ffff:10.0.0.2"), &HeaderMap::new()),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn forwarded_is_read_when_there_is_no_x_forwarded_for() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into()]).expect("cidrs");
        let sent = headers(&[(
            "forwarded",
            "for=198.51.100.9;proto=https, For=\"[2001:db8::1]:4711\";by=10.0.0.1",
        )]);
        assert_eq!(proxies.client(ip("10.0.0.2"), &sent), ip("2001:db8::1"));
        let sent = headers(&[("forwarded", "for=198.51.100.9, for=10.3.3.3")]);
        assert_eq!(proxies.client(ip("10.0.0.2"), &sent), ip("198.51.100.9"));
    }

    #[test]
    fn a_setting_that_is_no_address_is_refused() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local".into()]).is_err());
    }
}
