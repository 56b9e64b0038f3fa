//! Connecting to a `mysql` source under the egress policy.
//!
//! The credentials' URL names one host. It is resolved and checked here,
//! and the connection is made to exactly the checked address (never a
//! Unix socket: the driver's habit of switching to the server's socket on
//! a local host is turned off); TLS is checked against the configured host
//! name. `ssl_mode`: `disabled`, `preferred` (TLS when the server offers
//! it, unverified), `required` (TLS, unverified) or `verify_identity` (TLS,
//! the certificate checked against the web's roots for the host name).
//! The session runs in UTC, so TIMESTAMP values read as UTC.

use mysql_async::{Conn, Opts, OptsBuilder, SslOpts};
use serde_json::Value;
use syncway_egress::{Policy, ResolveError};

use super::classify;
use crate::{Limits, SourceError};

/// How TLS is used to the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disabled,
    Preferred,
    Required,
    VerifyIdentity,
}

impl SslMode {
    fn parse(text: &str) -> Result<SslMode, SourceError> {
        Ok(match text {
            "disabled" => SslMode::Disabled,
            "preferred" => SslMode::Preferred,
            "required" => SslMode::Required,
            "verify_identity" => SslMode::VerifyIdentity,
            other => {
                return Err(SourceError::Permanent(format!(
                    "credentials.ssl_mode {other:?} is not one of disabled, preferred, \
                     required, verify_identity"
                )));
            }
        })
    }
}

/// The credentials, read.
pub struct Target {
    opts: Opts,
    host: String,
    port: u16,
    ssl_mode: SslMode,
}

/// `{url: "mysql://user:pass@host:port/db", ssl_mode?}`.
pub fn target(credentials: Option<&Value>) -> Result<Target, SourceError> {
    let credentials = credentials.ok_or_else(|| {
        SourceError::Permanent(
            "the mysql connector needs authentication.credentials: \
             {url: \"mysql://user:pass@host:port/db\"}"
                .into(),
        )
    })?;
    let text = |key: &str| credentials.get(key).and_then(Value::as_str);
    let ssl_mode = text("ssl_mode")
        .map(SslMode::parse)
        .transpose()?
        .unwrap_or(SslMode::Preferred);
    let url = text("url").ok_or_else(|| {
        SourceError::Permanent("credentials need a url (mysql://user:pass@host:port/db)".into())
    })?;
    let parsed = url::Url::parse(url)
        .ok()
        .filter(|url| url.scheme() == "mysql")
        .ok_or_else(|| SourceError::Permanent("credentials.url is not a mysql:// URL".into()))?;
    let host = parsed
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| SourceError::Permanent("credentials.url names no host".into()))?;
    let host = host
        .strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host)
        .to_owned();
    if parsed.query_pairs().any(|(key, _)| key == "socket") {
        return Err(SourceError::denied(&syncway_egress::Denied::Host {
            host,
            reason: "Unix sockets are denied".into(),
        }));
    }
    // The driver reads the rest (user, password, database, options).
    let opts = Opts::from_url(url)
        .map_err(|_| SourceError::Permanent("credentials.url is not a valid MySQL URL".into()))?;
    Ok(Target {
        port: parsed.port().unwrap_or(3306),
        opts,
        host,
        ssl_mode,
    })
}

/// Connects to a checked address of the target.
pub async fn connect(
    target: &Target,
    policy: &Policy,
    limits: &Limits,
) -> Result<Conn, SourceError> {
    let addresses = match policy.resolve(&target.host, target.port).await {
        Ok(resolved) => resolved.addresses,
        Err(ResolveError::Denied(denied)) => return Err(SourceError::denied(&denied)),
        Err(other @ ResolveError::Lookup { .. }) => {
            return Err(SourceError::Transient {
                message: other.to_string(),
                retry_after: None,
            });
        }
    };
    let mut last = None;
    for address in addresses {
        let tls = target.ssl_mode != SslMode::Disabled;
        let attempt = open(target, address, tls, limits).await;
        // `preferred`: a server without TLS is read in the clear.
        let attempt = match attempt {
            Err(Refusal::NoTls) if target.ssl_mode == SslMode::Preferred => {
                open(target, address, false, limits).await
            }
            other => other,
        };
        match attempt {
            Ok(conn) => return Ok(conn),
            Err(Refusal::NoTls) => {
                last = Some(SourceError::Permanent(format!(
                    "connecting to the source database: {} does not offer TLS, which \
                     ssl_mode requires",
                    target.host
                )));
            }
            Err(Refusal::Failed(error)) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| SourceError::Permanent(format!("{} has no address", target.host))))
}

enum Refusal {
    /// The server does not speak TLS.
    NoTls,
    Failed(SourceError),
}

async fn open(
    target: &Target,
    address: std::net::SocketAddr,
    tls: bool,
    limits: &Limits,
) -> Result<Conn, Refusal> {
    let ssl = tls.then(|| {
        let opts = SslOpts::default();
        if target.ssl_mode == SslMode::VerifyIdentity {
            opts.with_danger_tls_hostname_override(Some(target.host.clone()))
        } else {
            opts.with_danger_accept_invalid_certs(true)
        }
    });
    let opts = OptsBuilder::from_opts(target.opts.clone())
        .ip_or_hostname(address.ip().to_string())
        .tcp_port(address.port())
        .prefer_socket(false)
        .socket(None::<String>)
        .tcp_keepalive(Some(limits.postgres_keepalive))
        .ssl_opts(ssl)
        .init(vec!["SET time_zone = '+00:00'".to_owned()]);
    let connected = tokio::time::timeout(limits.postgres_connect_timeout, Conn::new(opts)).await;
    match connected {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(mysql_async::Error::Driver(
            mysql_async::DriverError::NoClientSslFlagFromServer,
        ))) => Err(Refusal::NoTls),
        Ok(Err(error)) => Err(Refusal::Failed(classify(
            error,
            "connecting to the source database",
        ))),
        Err(_) => Err(Refusal::Failed(SourceError::Transient {
            message: format!(
                "connecting to the source database: no answer within {} s \
                 (SYNCWAY_CONNECTORS__POSTGRES_CONNECT_TIMEOUT_SECONDS)",
                limits.postgres_connect_timeout.as_secs()
            ),
            retry_after: None,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credentials_are_a_mysql_url_with_an_optional_ssl_mode() {
        let read = target(Some(&json!({"url": "mysql://u:p@db.example:3307/shop"})));
        let Ok(read) = read else {
            panic!("a valid URL");
        };
        assert_eq!((read.host.as_str(), read.port), ("db.example", 3307));
        assert_eq!(read.ssl_mode, SslMode::Preferred);
        assert!(target(Some(&json!({"url": "postgres://u@h/db"}))).is_err());
        assert!(
            target(Some(
                &json!({"url": "mysql://u@h/db", "ssl_mode": "verify_ca"})
            ))
            .is_err()
        );
        let socket = target(Some(
            &json!({"url": "mysql://u@localhost/db?socket=/tmp/s"}),
        ));
        assert!(
            matches!(&socket, Err(SourceError::Permanent(m)) if m.contains("Unix sockets")),
            "{:?}",
            socket.err()
        );
        assert!(target(None).is_err());
    }
}
