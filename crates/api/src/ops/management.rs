//! The RabbitMQ management API: the one figure AMQP does not give, a
//! queue's unacknowledged (delivered, in-flight) messages.

use std::time::Duration;

/// Messages delivered and not yet acked in `queue` (of vhost `vhost`), or
/// `None` when the management API does not answer (not enabled, or
/// unreachable): the figure is then unknown, not zero.
pub async fn unacked(http: &reqwest::Client, base: &str, vhost: &str, queue: &str) -> Option<u64> {
    let url = url::Url::parse(base).ok()?;
    let user = url.username().to_owned();
    let password = url.password().map(str::to_owned);
    let mut endpoint = url.clone();
    let _ = endpoint.set_username("");
    let _ = endpoint.set_password(None);
    let endpoint = format!(
        "{}/api/queues/{}/{}",
        endpoint.as_str().trim_end_matches('/'),
        encode(vhost),
        encode(queue)
    );
    let response = http
        .get(endpoint)
        .basic_auth(user, password)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body: serde_json::Value = response.json().await.ok()?;
    body["messages_unacknowledged"].as_u64()
}

/// Percent-encodes a path segment (vhost `/` is `%2F`).
fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The vhost of an AMQP URL (its path; `/` when empty or `%2f`).
pub fn vhost_of(amqp_url: &str) -> String {
    let first = syncway_queue::broker_urls(amqp_url)
        .next()
        .unwrap_or_default();
    let path = url::Url::parse(first)
        .ok()
        .map(|url| url.path().trim_start_matches('/').to_owned())
        .unwrap_or_default();
    if path.is_empty() {
        "/".to_owned()
    } else {
        percent_encoding::percent_decode_str(&path)
            .decode_utf8_lossy()
            .into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vhosts_and_segments() {
        assert_eq!(vhost_of("amqp://guest:guest@127.0.0.1:5672/%2f"), "/");
        assert_eq!(vhost_of("amqp://127.0.0.1:5672"), "/");
        assert_eq!(vhost_of("amqp://h/prod, amqp://g/prod"), "prod");
        assert_eq!(encode("/"), "%2F");
        assert_eq!(encode("ns.sync_jobs"), "ns%2Esync%5Fjobs");
    }
}
