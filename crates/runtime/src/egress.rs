//! The connector egress policy as the settings describe it, with
//! syncway's own database identified so that no connector can read it.

use std::net::IpAddr;

use anyhow::Context as _;
use deadpool_postgres::tokio_postgres;
use syncway_egress::{OwnDatabase, Policy};

use crate::Settings;

/// Builds the policy: the allow lists, the `local_files` roots, and the
/// addresses, port and name of `database.url` (resolved now).
pub async fn policy(settings: &Settings) -> anyhow::Result<Policy> {
    let connectors = &settings.connectors;
    let policy = Policy::new(
        &connectors.allow_cidrs,
        &connectors.allow_hosts,
        &connectors.local_files.roots,
    )?;
    Ok(match own_database(&settings.database.url).await? {
        Some(own) => policy.with_own_database(own),
        None => policy,
    })
}

async fn own_database(url: &str) -> anyhow::Result<Option<OwnDatabase>> {
    let config: tokio_postgres::Config = url
        .parse()
        .context("database.url is not a valid PostgreSQL URL")?;
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres")
        .to_owned();
    let mut addresses: Vec<IpAddr> = config.get_hostaddrs().to_vec();
    for host in config.get_hosts() {
        if let tokio_postgres::config::Host::Tcp(host) = host {
            match syncway_egress::address::parse_ip(host) {
                Some(ip) => addresses.push(ip),
                None => match tokio::net::lookup_host((host.as_str(), port)).await {
                    Ok(found) => addresses.extend(found.map(|address| address.ip())),
                    Err(error) => {
                        tracing::warn!(%error, "cannot resolve database.url's host: connectors are not kept from it by address");
                    }
                },
            }
        }
    }
    // A Unix-socket-only URL: the policy denies Unix sockets anyway.
    if addresses.is_empty() {
        return Ok(None);
    }
    Ok(Some(OwnDatabase {
        addresses,
        port,
        database,
    }))
}
