//! The connector egress policy at create and PATCH time: a connection that
//! cannot pass it is refused with a 422 naming the field, instead of
//! failing later in a worker (which checks again at run time, on the
//! addresses it actually connects to).

use std::time::Duration;

use serde_json::{Map, Value};
use syncway_egress::{Allowance, Denied, Policy, ResolveError};
use syncway_model::ConnectorConfig;

use crate::error::{ApiError, Result};

/// How long a create may wait on DNS; a name that does not resolve in time
/// is left to the worker's check.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

fn refused(loc: &[&str], denied: &Denied) -> ApiError {
    ApiError::invalid(loc, denied.to_string(), "value_error")
}

/// How `host` fares: denied, allowed (and how), or unknown (no answer).
async fn judge(
    policy: &Policy,
    host: &str,
    port: u16,
) -> std::result::Result<Option<Allowance>, Denied> {
    if let Some(verdict) = policy.check_host_text(host) {
        return verdict.map(Some);
    }
    match tokio::time::timeout(LOOKUP_TIMEOUT, policy.resolve(host, port)).await {
        Ok(Ok(resolved)) => Ok(Some(resolved.allowance)),
        Ok(Err(ResolveError::Denied(denied))) => Err(denied),
        Ok(Err(ResolveError::Lookup { .. })) | Err(_) => Ok(None),
    }
}

/// Checks a connection's config (and new credentials, when given).
pub async fn check(
    policy: &Policy,
    config: &ConnectorConfig,
    credentials: Option<&Map<String, Value>>,
) -> Result<()> {
    match config {
        ConnectorConfig::LocalFiles(files) => {
            policy
                .roots()
                .check(&files.path)
                .map_err(|denied| refused(&["body", "config", "path"], &denied))?;
        }
        ConnectorConfig::HttpJson(http) => {
            let has_credentials = credentials.is_some_and(|c| !c.is_empty());
            check_url(policy, &http.url, "url", has_credentials).await?;
            if let Some(token_url) = &http.token_url {
                check_url(policy, token_url, "token_url", true).await?;
            }
        }
        ConnectorConfig::Postgres(_) | ConnectorConfig::PostgresCdc(_) => {
            if let Some(credentials) = credentials {
                check_postgres(policy, credentials).await?;
            }
        }
        ConnectorConfig::Mysql(_) => {
            if let Some(credentials) = credentials {
                check_mysql(policy, credentials).await?;
            }
        }
        ConnectorConfig::S3(s3) => {
            if let Some(endpoint) = &s3.endpoint {
                let has_credentials = credentials.is_some_and(|c| !c.is_empty());
                check_url(policy, endpoint, "endpoint", has_credentials).await?;
            }
        }
        ConnectorConfig::Stub(_) => {}
    }
    Ok(())
}

async fn check_url(policy: &Policy, text: &str, field: &str, with_credentials: bool) -> Result<()> {
    let loc = ["body", "config", field];
    let url = url::Url::parse(text).map_err(|_| {
        ApiError::invalid(&loc, format!("{field} is not a valid URL"), "value_error")
    })?;
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(443);
    let allowance = judge(policy, host, port)
        .await
        .map_err(|denied| refused(&loc, &denied))?;
    if with_credentials && url.scheme() == "http" && allowance != Some(Allowance::Explicit) {
        return Err(ApiError::invalid(
            &loc,
            syncway_egress::plain_http_refusal(host),
            "value_error",
        ));
    }
    Ok(())
}

async fn check_postgres(policy: &Policy, credentials: &Map<String, Value>) -> Result<()> {
    let text = |key: &str| credentials.get(key).and_then(Value::as_str);
    let (field, hosts, port, database) = if let Some(url) = text("url") {
        // `sslmode=verify-full` is syncway's to read; the driver knows no such value.
        let parsable: String = url.replace("sslmode=verify-full", "sslmode=require");
        let config: tokio_postgres::Config = parsable.parse().map_err(|_| {
            ApiError::invalid(
                &["body", "authentication", "credentials", "url"],
                "url is not a valid PostgreSQL URL",
                "value_error",
            )
        })?;
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|host| match host {
                tokio_postgres::config::Host::Tcp(host) => host.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let database = config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or_default()
            .to_owned();
        let port = config.get_ports().first().copied().unwrap_or(5432);
        ("url", hosts, port, database)
    } else {
        let host = text("host").unwrap_or("localhost").to_owned();
        let port = credentials
            .get("port")
            .and_then(|port| port.as_u64().or_else(|| port.as_str()?.parse().ok()))
            .and_then(|port| u16::try_from(port).ok())
            .unwrap_or(5432);
        let database = text("database")
            .or(text("user"))
            .unwrap_or_default()
            .to_owned();
        ("host", vec![host], port, database)
    };
    let loc = ["body", "authentication", "credentials", field];
    let [host] = hosts.as_slice() else {
        return Err(ApiError::invalid(
            &loc,
            "exactly one host is allowed",
            "value_error",
        ));
    };
    judge(policy, host, port)
        .await
        .map_err(|denied| refused(&loc, &denied))?;
    // syncway's own database, on an allowed address, is still no source.
    if let Ok(Ok(resolved)) = tokio::time::timeout(LOOKUP_TIMEOUT, policy.resolve(host, port)).await
    {
        for address in resolved.addresses {
            policy
                .check_database(host, address, &database)
                .map_err(|denied| refused(&loc, &denied))?;
        }
    }
    Ok(())
}

async fn check_mysql(policy: &Policy, credentials: &Map<String, Value>) -> Result<()> {
    let loc = ["body", "authentication", "credentials", "url"];
    let invalid = |message: &str| ApiError::invalid(&loc, message, "value_error");
    let Some(text) = credentials.get("url").and_then(Value::as_str) else {
        return Err(invalid("url is required: mysql://user:pass@host:port/db"));
    };
    let url = url::Url::parse(text)
        .ok()
        .filter(|url| url.scheme() == "mysql")
        .ok_or_else(|| invalid("url is not a mysql:// URL"))?;
    let host = url.host_str().unwrap_or_default();
    if host.is_empty() || url.query_pairs().any(|(key, _)| key == "socket") {
        return Err(invalid(
            "url must name one TCP host (Unix sockets are denied)",
        ));
    }
    judge(policy, host, url.port().unwrap_or(3306))
        .await
        .map_err(|denied| refused(&loc, &denied))?;
    Ok(())
}
