//! One delivery attempt: a signed POST under the egress policy. The
//! endpoint's name resolves only to addresses the policy allows and the
//! connection is pinned to them; redirects are never followed (a 3xx is a
//! failure); success is a 2xx within the timeout; at most 1 KB of the
//! answer is read and kept.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use syncway_egress::http::PolicyResolver;
use syncway_egress::{Allowance, Policy, ResolveError, redact};

/// The part of an answer kept with the attempt.
pub const RESPONSE_KEPT: usize = 1024;

/// How long the create/PATCH check waits on DNS; a name that does not
/// answer in time is checked again at every delivery.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The endpoint's status, when it answered.
    pub status: Option<u16>,
    /// The start of its answer, or what went wrong (safe to show).
    pub response: String,
    pub delivered: bool,
    /// `Retry-After` on a 429 or 503.
    pub retry_after: Option<Duration>,
    /// The endpoint answered 410 Gone: it asks to be disabled.
    pub gone: bool,
}

/// A message ready to send: its id, timestamp, body and signature header.
pub struct Signed<'a> {
    pub id: &'a str,
    pub timestamp: i64,
    pub body: &'a [u8],
    pub signature: String,
}

/// Checks an endpoint URL against the policy: http(s) only, no user
/// information, no denied address, and `http://` only to a host the
/// operator opened. The text of the error is safe to show the tenant.
pub async fn check_url(policy: &Policy, text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|_| "url is not a valid URL".to_owned())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("url must be an http(s) URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("URLs with user information are refused".into());
    }
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let allowance = match policy.check_host_text(&host) {
        Some(verdict) => Some(verdict.map_err(|denied| denied.to_string())?),
        None => match tokio::time::timeout(LOOKUP_TIMEOUT, policy.resolve(&host, port)).await {
            Ok(Ok(resolved)) => Some(resolved.allowance),
            Ok(Err(ResolveError::Denied(denied))) => return Err(denied.to_string()),
            Ok(Err(ResolveError::Lookup { .. })) | Err(_) => None,
        },
    };
    if url.scheme() == "http" && allowance != Some(Allowance::Explicit) {
        return Err(syncway_egress::plain_http_refusal(&host));
    }
    Ok(url)
}

/// Sends signed messages under the policy.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: Arc<Policy>,
}

impl Sender {
    pub fn new(policy: Arc<Policy>, timeout: Duration) -> Result<Sender, reqwest::Error> {
        // Refused (harmlessly) when a provider is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(PolicyResolver(policy.clone())))
            .user_agent(concat!("syncway-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Sender { client, policy })
    }

    /// One attempt to deliver `message` to `url`.
    pub async fn send(&self, url: &str, message: &Signed<'_>) -> Attempt {
        if let Err(refusal) = check_url(&self.policy, url).await {
            return failed(None, refusal);
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let timestamp = message.timestamp.to_string();
        for (name, value) in [
            ("id", message.id),
            ("timestamp", timestamp.as_str()),
            ("signature", message.signature.as_str()),
        ] {
            let Ok(value) = HeaderValue::from_str(value) else {
                return failed(None, format!("the {name} cannot be sent as a header"));
            };
            for prefix in ["webhook", "svix"] {
                if let Ok(header) =
                    reqwest::header::HeaderName::try_from(format!("{prefix}-{name}"))
                {
                    headers.insert(header, value.clone());
                }
            }
        }
        let sent = self
            .client
            .post(url)
            .headers(headers)
            .body(message.body.to_vec())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => return failed(None, describe(&error)),
        };
        let status = response.status();
        let retry_after = if matches!(status.as_u16(), 429 | 503) {
            response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(crate::schedule::retry_after)
        } else {
            None
        };
        let mut kept = Vec::new();
        while kept.len() < RESPONSE_KEPT {
            match response.chunk().await {
                Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        kept.truncate(RESPONSE_KEPT);
        let text = String::from_utf8_lossy(&kept).into_owned();
        Attempt {
            status: Some(status.as_u16()),
            response: if status.is_redirection() && text.is_empty() {
                "redirects are not followed".into()
            } else {
                text
            },
            delivered: status.is_success(),
            retry_after,
            gone: status == reqwest::StatusCode::GONE,
        }
    }
}

fn failed(status: Option<u16>, response: String) -> Attempt {
    Attempt {
        status,
        response,
        delivered: false,
        retry_after: None,
        gone: false,
    }
}

/// A transport error in words that name no secret: a policy denial as the
/// policy says it, a timeout as a timeout, the rest by kind.
fn describe(error: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(denied) = cause.downcast_ref::<syncway_egress::Denied>() {
            return denied.to_string();
        }
        source = cause.source();
    }
    if error.is_timeout() {
        "the endpoint did not answer within the timeout".into()
    } else if error.is_connect() {
        let url = error.url().map(redact::parsed).unwrap_or_default();
        format!("could not connect to {url}")
    } else {
        "the request failed before an answer".into()
    }
}
