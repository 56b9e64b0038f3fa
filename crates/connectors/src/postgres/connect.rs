//! Connecting to a `postgres` source under the egress policy.
//!
//! The credentials name one host. It is resolved and checked here, and the
//! connection is made to exactly the checked address (`hostaddr`; the name
//! is kept for TLS). syncway's own database is refused wherever it is. The
//! session gets a connect timeout, TCP keepalive and a `statement_timeout`
//! from the operator's limits. `sslmode`: `disable`, `prefer` (TLS when the
//! server offers it, unverified), `require` (TLS, unverified) or
//! `verify-full` (TLS, the certificate checked against the system's roots
//! for the host name).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use syncway_egress::{Policy, ResolveError};
use tokio_postgres::Client;
use tokio_postgres::config::{Host, SslMode as DriverSslMode};

use super::classify;
use crate::{Limits, SourceError};

/// How TLS is used to the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Result<SslMode, SourceError> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(SourceError::Permanent(format!(
                    "credentials.sslmode {other:?} is not one of disable, prefer, require, verify-full"
                )));
            }
        })
    }
}

/// The credentials, read: the driver's config and the TLS mode.
#[derive(Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    pub sslmode: SslMode,
}

/// `{url}` or `{host, port, database, user, password}`, each with an
/// optional `sslmode` (a key of its own, or in the URL's query).
pub fn target(credentials: Option<&Value>) -> Result<Target, SourceError> {
    let credentials = credentials.ok_or_else(|| {
        SourceError::Permanent(
            "the postgres connector needs authentication.credentials: {url} or \
             {host, port, database, user, password}"
                .into(),
        )
    })?;
    let text = |key: &str| credentials.get(key).and_then(Value::as_str);
    let mut sslmode = text("sslmode").map(SslMode::parse).transpose()?;
    if let Some(url) = text("url") {
        let (url, in_url) = take_sslmode(url);
        if sslmode.is_none() {
            sslmode = in_url.as_deref().map(SslMode::parse).transpose()?;
        }
        let config = url.parse().map_err(|_| {
            SourceError::Permanent("credentials.url is not a valid PostgreSQL URL".into())
        })?;
        return Ok(Target {
            config,
            sslmode: sslmode.unwrap_or(SslMode::Prefer),
        });
    }
    let mut config = tokio_postgres::Config::new();
    config.host(text("host").unwrap_or("localhost"));
    match credentials.get("port") {
        None => {}
        Some(port) => {
            let port = port
                .as_u64()
                .or_else(|| port.as_str().and_then(|port| port.parse().ok()))
                .and_then(|port| u16::try_from(port).ok())
                .ok_or_else(|| SourceError::Permanent("credentials.port is not a port".into()))?;
            config.port(port);
        }
    }
    if let Some(database) = text("database") {
        config.dbname(database);
    }
    let user = text("user").ok_or_else(|| {
        SourceError::Permanent("credentials need a url, or a user (with host, database)".into())
    })?;
    config.user(user);
    if let Some(password) = text("password") {
        config.password(password);
    }
    Ok(Target {
        config,
        sslmode: sslmode.unwrap_or(SslMode::Prefer),
    })
}

/// The URL without its `sslmode` parameter, and that parameter's value:
/// the driver knows no `verify-full`, so syncway reads it itself.
fn take_sslmode(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut sslmode = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("sslmode=") {
            Some(value) => {
                sslmode = Some(value.to_owned());
                false
            }
            None => true,
        })
        .collect();
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, sslmode)
}

/// The one host the credentials name, as text (for checks and messages).
pub fn host_of(config: &tokio_postgres::Config) -> Result<String, syncway_egress::Denied> {
    let denied = |reason: &str| syncway_egress::Denied::Host {
        host: "the source".into(),
        reason: reason.into(),
    };
    match config.get_hosts() {
        [Host::Tcp(host)] => Ok(host.clone()),
        [Host::Unix(path)] => Err(syncway_egress::Denied::Host {
            host: path.display().to_string(),
            reason: "Unix sockets are denied".into(),
        }),
        [] => Err(denied("no host given")),
        _ => Err(denied("more than one host given")),
    }
}

/// Connects to the checked address; returns the client and the task that
/// drives its connection.
pub async fn connect(
    target: Target,
    policy: &Policy,
    limits: &Limits,
) -> Result<(Client, tokio::task::JoinHandle<()>), SourceError> {
    let given = target.config;
    let host = host_of(&given).map_err(|denied| SourceError::denied(&denied))?;
    let port = match given.get_ports() {
        [] => 5432,
        [port] => *port,
        _ => {
            return Err(SourceError::Permanent(
                "credentials name more than one port".into(),
            ));
        }
    };
    let database = given
        .get_dbname()
        .or(given.get_user())
        .unwrap_or_default()
        .to_owned();
    let addresses = match given.get_hostaddrs() {
        [] => match policy.resolve(&host, port).await {
            Ok(resolved) => resolved.addresses,
            Err(ResolveError::Denied(denied)) => return Err(SourceError::denied(&denied)),
            Err(other @ ResolveError::Lookup { .. }) => {
                return Err(SourceError::Transient {
                    message: other.to_string(),
                    retry_after: None,
                });
            }
        },
        [address] => {
            policy
                .check_ip(&host, *address)
                .map_err(|denied| SourceError::denied(&denied))?;
            vec![std::net::SocketAddr::new(*address, port)]
        }
        _ => {
            return Err(SourceError::Permanent(
                "credentials name more than one hostaddr".into(),
            ));
        }
    };
    let mut last = None;
    for address in addresses {
        policy
            .check_database(&host, address, &database)
            .map_err(|denied| SourceError::denied(&denied))?;
        let mut config = tokio_postgres::Config::new();
        config
            .host(&host)
            .hostaddr(address.ip())
            .port(address.port())
            .dbname(&database)
            .connect_timeout(limits.postgres_connect_timeout)
            .keepalives(true)
            .keepalives_idle(limits.postgres_keepalive)
            .application_name(given.get_application_name().unwrap_or("syncway"));
        if let Some(user) = given.get_user() {
            config.user(user);
        }
        if let Some(password) = given.get_password() {
            config.password(password);
        }
        // The whole handshake, not only the TCP connect: a server that
        // accepts and then says nothing must not hold the job.
        let opened = tokio::time::timeout(
            limits.postgres_connect_timeout,
            open(config, target.sslmode),
        )
        .await
        .unwrap_or_else(|_| {
            Err(SourceError::Transient {
                message: format!(
                    "connecting to the source database: no answer within {} s \
                         (SYNCWAY_CONNECTORS__POSTGRES_CONNECT_TIMEOUT_SECONDS)",
                    limits.postgres_connect_timeout.as_secs()
                ),
                retry_after: None,
            })
        });
        match opened {
            Ok((client, task)) => {
                let timeout = limits.postgres_statement_timeout.as_millis();
                client
                    .batch_execute(&format!("SET statement_timeout = {timeout}"))
                    .await
                    .map_err(|error| classify(error, "configuring the source session"))?;
                return Ok((client, task));
            }
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| SourceError::Permanent(format!("{host} has no address"))))
}

async fn open(
    mut config: tokio_postgres::Config,
    sslmode: SslMode,
) -> Result<(Client, tokio::task::JoinHandle<()>), SourceError> {
    let doing = "connecting to the source database";
    if sslmode == SslMode::Disable {
        config.ssl_mode(DriverSslMode::Disable);
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|error| classify(error, doing))?;
        return Ok((client, tokio::spawn(drive(connection))));
    }
    config.ssl_mode(match sslmode {
        SslMode::Prefer => DriverSslMode::Prefer,
        _ => DriverSslMode::Require,
    });
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(sslmode)?);
    let (client, connection) = config
        .connect(tls)
        .await
        .map_err(|error| classify(error, doing))?;
    Ok((client, tokio::spawn(drive(connection))))
}

async fn drive<T: std::future::Future>(connection: T) {
    let _ = connection.await;
}

fn tls_config(sslmode: SslMode) -> Result<rustls::ClientConfig, SourceError> {
    crate::install_tls_provider();
    if sslmode == SslMode::VerifyFull {
        use rustls_platform_verifier::ConfigVerifierExt as _;
        return rustls::ClientConfig::with_platform_verifier().map_err(|error| {
            SourceError::Permanent(format!("TLS set-up for sslmode=verify-full: {error}"))
        });
    }
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    Ok(rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
        .with_no_client_auth())
}

/// `prefer` and `require`: encrypted, but the certificate is not checked
/// (as libpq does in those modes). Signatures are still verified, so the
/// handshake is with whoever holds the certificate's key.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_read_from_the_url_and_removed_from_it() {
        assert_eq!(
            take_sslmode("postgres://u@h/db?sslmode=verify-full&application_name=x"),
            (
                "postgres://u@h/db?application_name=x".to_owned(),
                Some("verify-full".to_owned())
            )
        );
        assert_eq!(
            take_sslmode("postgres://u@h/db?sslmode=require"),
            ("postgres://u@h/db".to_owned(), Some("require".to_owned()))
        );
        let target = target(Some(
            &serde_json::json!({"url": "postgres://u@h/db?sslmode=disable"}),
        ));
        assert!(target.is_ok_and(|t| t.sslmode == SslMode::Disable));
        assert!(SslMode::parse("verify-ca").is_err());
    }
}
