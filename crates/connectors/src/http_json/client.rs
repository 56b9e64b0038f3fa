//! HTTP for `http_json` under the egress policy: every request's host is
//! checked (literal addresses here, names in the resolver, which hands the
//! connection exactly the addresses it checked), redirects are followed by
//! hand so that each hop is checked and credentials never go to another
//! origin, and response bodies are read with a size limit as they stream.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url, header};
use syncway_egress::http::PolicyResolver;
use syncway_egress::{Allowance, Denied, Policy, redact};

use crate::{Limits, SourceError};

/// Redirects followed per request.
const MAX_REDIRECTS: usize = 10;

/// What a request may carry to its origin.
#[derive(Clone)]
pub struct Credentials {
    pub headers: Vec<(String, String)>,
}

/// An HTTP client that reaches only what the policy allows.
pub struct GuardedClient {
    client: reqwest::Client,
    policy: Arc<Policy>,
    limits: Limits,
    budget: Option<Arc<dyn crate::RequestBudget>>,
}

fn transient(message: String, retry_after: Option<Duration>) -> SourceError {
    SourceError::Transient {
        message,
        retry_after,
    }
}

/// A reqwest error as a source error: a policy denial found anywhere in
/// its causes is permanent; anything else is transient, described without
/// the URL (reqwest's own text embeds it, query and all).
fn from_reqwest(error: reqwest::Error, url: &Url) -> SourceError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(current) = cause {
        if let Some(denied) = current.downcast_ref::<Denied>() {
            return SourceError::denied(denied);
        }
        cause = current.source();
    }
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    transient(format!("requesting {}: {kind}", redact::parsed(url)), None)
}

/// Whether `a` and `b` have the same scheme, host and port.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.origin() == b.origin()
}

/// An answer whose body has not been read yet.
pub struct Answer {
    pub response: reqwest::Response,
    pub url: Url,
}

impl GuardedClient {
    pub fn new(
        policy: Arc<Policy>,
        limits: Limits,
        timeout: Duration,
        budget: Option<Arc<dyn crate::RequestBudget>>,
    ) -> Result<Self, SourceError> {
        crate::install_tls_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // Every hop is checked here, not followed blindly.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would be connected to instead of the checked address.
            .no_proxy()
            .dns_resolver(Arc::new(PolicyResolver(policy.clone())))
            .build()
            .map_err(|_| SourceError::Permanent("cannot build the HTTP client".into()))?;
        Ok(GuardedClient {
            client,
            policy,
            limits,
            budget,
        })
    }

    /// Waits for the budget of `url`'s host, if it has one.
    async fn draw(&self, url: &Url) -> Result<(), SourceError> {
        match (&self.budget, url.host_str()) {
            (Some(budget), Some(host)) => budget.acquire(host).await,
            _ => Ok(()),
        }
    }

    /// Refuses a URL the policy cannot allow, before anything is sent:
    /// a scheme other than http(s), userinfo, a denied literal address, or
    /// credentials over plain http to a host the operator did not open.
    pub async fn check(&self, url: &Url, with_credentials: bool) -> Result<(), SourceError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SourceError::Permanent(format!(
                "{} is not an http(s) URL",
                redact::parsed(url)
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(SourceError::Permanent(
                "URLs with user information are refused".into(),
            ));
        }
        let host = url.host_str().unwrap_or_default();
        let allowance = match self.policy.check_host_text(host) {
            Some(Err(denied)) => return Err(SourceError::denied(&denied)),
            Some(Ok(allowance)) => allowance,
            None if with_credentials && url.scheme() == "http" => {
                match self.policy.resolve(host, 0).await {
                    Ok(resolved) => resolved.allowance,
                    Err(syncway_egress::ResolveError::Denied(denied)) => {
                        return Err(SourceError::denied(&denied));
                    }
                    Err(other) => return Err(transient(other.to_string(), None)),
                }
            }
            // The resolver checks the name when it connects.
            None => Allowance::Public,
        };
        if with_credentials && url.scheme() == "http" && allowance != Allowance::Explicit {
            return Err(SourceError::Permanent(syncway_egress::plain_http_refusal(
                host,
            )));
        }
        Ok(())
    }

    /// GETs `url`, following redirects by hand. The credentials go only to
    /// `origin` (the configured URL's), never to a hop on another one.
    pub async fn get(
        &self,
        url: &Url,
        origin: &Url,
        credentials: Option<&Credentials>,
    ) -> Result<Answer, SourceError> {
        let mut url = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let credentials = credentials.filter(|_| same_origin(&url, origin));
            self.check(&url, credentials.is_some()).await?;
            self.draw(&url).await?;
            let mut request = self.client.request(Method::GET, url.clone());
            for (name, value) in credentials
                .map(|c| c.headers.as_slice())
                .unwrap_or_default()
            {
                request = request.header(name.as_str(), value.as_str());
            }
            let response = request
                .send()
                .await
                .map_err(|error| from_reqwest(error, &url))?;
            if !response.status().is_redirection() || response.status() == StatusCode::NOT_MODIFIED
            {
                return Ok(Answer { response, url });
            }
            let next = response
                .headers()
                .get(header::LOCATION)
                .and_then(|location| location.to_str().ok())
                .and_then(|location| url.join(location).ok())
                .ok_or_else(|| {
                    SourceError::Permanent(format!(
                        "{} redirected without a usable Location",
                        redact::parsed(&url)
                    ))
                })?;
            url = next;
        }
        Err(SourceError::Permanent(format!(
            "more than {MAX_REDIRECTS} redirects from {}",
            redact::parsed(origin)
        )))
    }

    /// POSTs a form to `url` (the token endpoint): no redirects, and the
    /// form's secrets only over https or to an explicitly allowed host.
    pub async fn post_form(
        &self,
        url: &Url,
        form: &[(&str, String)],
    ) -> Result<Answer, SourceError> {
        self.check(url, true).await?;
        self.draw(url).await?;
        let response = self
            .client
            .post(url.clone())
            .form(form)
            .send()
            .await
            .map_err(|error| from_reqwest(error, url))?;
        if response.status().is_redirection() {
            return Err(SourceError::Permanent(format!(
                "{} answered with a redirect; token endpoints are not followed",
                redact::parsed(url)
            )));
        }
        Ok(Answer {
            response,
            url: url.clone(),
        })
    }

    /// Reads the body as it streams, failing once it passes the limit.
    pub async fn body(&self, answer: Answer) -> Result<Vec<u8>, SourceError> {
        let Answer { mut response, url } = answer;
        let max = self.limits.max_response_bytes;
        let too_large = || {
            SourceError::Permanent(format!(
                "the response of {} is larger than {max} bytes (SYNCWAY_CONNECTORS__MAX_RESPONSE_BYTES)",
                redact::parsed(&url)
            ))
        };
        if response.content_length().is_some_and(|length| length > max) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| from_reqwest(error, &url))?
        {
            if body.len() as u64 + chunk.len() as u64 > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
