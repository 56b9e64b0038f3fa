//! The `http_json` connector: a paginated JSON API, one entity per item.
//!
//! Each page is one batch. Items are found at `items_path` (the page itself
//! when absent); an item's id is its `id_field` (a string or a number), and
//! an item without one counts as failed while the sync goes on. Pages follow
//! each other by next link (`next_link_path`, resolved against the page's
//! URL) or by page token (`page_token_path` sent back as
//! `page_token_param`); without either there is one page.
//!
//! Incremental syncs send the stored cursor as `cursor_param` on the first
//! request, and the new cursor is the largest `cursor_field` value seen
//! (numbers compared as numbers, anything else as text, which orders ISO
//! timestamps). The API's order is unknown, so the cursor is reported with
//! the last page only: a sync that stops half-way keeps the old cursor and
//! the next one reads those pages again (unchanged by hash).
//!
//! Credentials: `{api_key}` (sent in `api_key_header`), `{bearer_token}`,
//! or `{refresh_token, client_id, client_secret}` exchanged at `token_url`
//! for an access token (OAuth2 refresh grant; a rotated refresh token is not
//! stored back). 401/403 → `api_key_invalid`, or `oauth_credentials_expired`
//! when the token endpoint refuses the refresh token or a fresh token is
//! refused. 429 and 5xx are transient; a Retry-After of at most
//! `max_retry_wait_seconds` is waited out and the request tried again, up to
//! `max_retries` times, and a longer one is reported with the error.
//! Timeouts and connection failures are transient.
//!
//! Every request goes through [`client::GuardedClient`]: the egress policy
//! checks each hop (redirects, next links, `token_url`), credentials go only
//! to the configured URL's origin and never over plain http unless the
//! operator allowed the host as internal, responses are read with a size
//! limit, and a sync reads at most `max_pages` pages. Errors name URLs
//! without userinfo or query values.

pub(crate) mod client;

use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::{StatusCode, Url, header};
use serde_json::Value;
use syncway_egress::redact;
use syncway_model::{ErrorCategory, HttpJsonConfig};

use crate::{EntityBatch, Limits, Source, SourceEntity, SourceError, SyncStart};
use client::{Credentials, GuardedClient};

enum Auth {
    None,
    ApiKey(String),
    Bearer(String),
    OAuth2 {
        token_url: Url,
        refresh_token: String,
        client_id: Option<String>,
        client_secret: Option<String>,
        access_token: Option<String>,
    },
}

impl Auth {
    fn from_credentials(
        credentials: Option<&Value>,
        config: &HttpJsonConfig,
    ) -> Result<Auth, SourceError> {
        let Some(credentials) = credentials else {
            return Ok(Auth::None);
        };
        let text = |key: &str| {
            credentials
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        if let Some(key) = text("api_key") {
            return Ok(Auth::ApiKey(key));
        }
        if let Some(token) = text("bearer_token") {
            return Ok(Auth::Bearer(token));
        }
        if let Some(refresh_token) = text("refresh_token") {
            let token_url = config
                .token_url
                .as_deref()
                .ok_or_else(|| {
                    SourceError::Permanent(
                        "a refresh_token credential needs config.token_url".into(),
                    )
                })
                .and_then(|url| {
                    Url::parse(url)
                        .map_err(|_| SourceError::Permanent("config.token_url is not a URL".into()))
                })?;
            return Ok(Auth::OAuth2 {
                token_url,
                refresh_token,
                client_id: text("client_id"),
                client_secret: text("client_secret"),
                access_token: None,
            });
        }
        Err(SourceError::Permanent(
            "http_json credentials must hold api_key, bearer_token or refresh_token".into(),
        ))
    }
}

/// The next page to fetch.
enum Next {
    Url(Url),
    Done,
}

pub struct HttpJsonSource {
    config: HttpJsonConfig,
    client: GuardedClient,
    limits: Limits,
    auth: Auth,
    /// The first page's URL (page tokens are added to it); credentials go
    /// only to its origin.
    first: Url,
    next: Next,
    /// The largest `cursor_field` value seen in this run.
    max_cursor: Option<Value>,
    pages: u64,
}

fn transient(message: String, retry_after: Option<Duration>) -> SourceError {
    SourceError::Transient {
        message,
        retry_after,
    }
}

/// A URL for a message: no userinfo, no query values.
fn shown(url: &Url) -> String {
    redact::parsed(url)
}

/// The value at a dotted path (`data.items`), if any.
fn at<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(value, |value, key| match value {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Whether `candidate` is after `current` in cursor order.
fn later(candidate: &Value, current: &Value) -> bool {
    match (candidate.as_f64(), current.as_f64()) {
        (Some(a), Some(b)) => a > b,
        _ => cursor_text(candidate) > cursor_text(current),
    }
}

fn cursor_text(cursor: &Value) -> String {
    match cursor {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl HttpJsonSource {
    pub fn new(config: &HttpJsonConfig, start: &SyncStart) -> Result<Self, SourceError> {
        let auth = Auth::from_credentials(start.credentials.as_ref(), config)?;
        let mut first = Url::parse(&config.url)
            .map_err(|error| SourceError::Permanent(format!("config.url: {error}")))?;
        if let (Some(param), Some(cursor)) = (&config.cursor_param, &start.cursor) {
            first
                .query_pairs_mut()
                .append_pair(param, &cursor_text(cursor));
        }
        let client = GuardedClient::new(
            start.policy.clone(),
            start.limits,
            Duration::from_secs(u64::from(config.timeout_seconds)),
            start.budget.clone(),
        )?;
        Ok(HttpJsonSource {
            config: config.clone(),
            client,
            limits: start.limits,
            auth,
            next: Next::Url(first.clone()),
            first,
            max_cursor: start.cursor.clone(),
            pages: 0,
        })
    }

    /// Exchanges the refresh token for an access token.
    async fn refresh(&mut self) -> Result<String, SourceError> {
        let Auth::OAuth2 {
            token_url,
            refresh_token,
            client_id,
            client_secret,
            access_token,
        } = &mut self.auth
        else {
            return Err(SourceError::Permanent("no refresh token".into()));
        };
        let mut form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token.clone()),
        ];
        if let Some(id) = client_id {
            form.push(("client_id", id.clone()));
        }
        if let Some(secret) = client_secret {
            form.push(("client_secret", secret.clone()));
        }
        let answer = self.client.post_form(token_url, &form).await?;
        let status = answer.response.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            let wait = retry_after(&answer.response);
            return Err(transient(format!("token endpoint answered {status}"), wait));
        }
        if !status.is_success() {
            return Err(SourceError::Credentials {
                category: ErrorCategory::OauthCredentialsExpired,
                message: format!("the token endpoint refused the refresh token ({status})"),
            });
        }
        let body: Value = serde_json::from_slice(&self.client.body(answer).await?)
            .map_err(|_| transient("the token endpoint did not answer JSON".into(), None))?;
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                SourceError::Permanent("the token endpoint gave no access_token".into())
            })?
            .to_owned();
        *access_token = Some(token.clone());
        Ok(token)
    }

    /// The credential headers for a page request, refreshing an OAuth2
    /// access token first when there is none.
    async fn credentials(
        &mut self,
        refreshed: &mut bool,
    ) -> Result<Option<Credentials>, SourceError> {
        let header = |name: &str, value: String| Credentials {
            headers: vec![(name.to_owned(), value)],
        };
        Ok(match &self.auth {
            Auth::None => None,
            Auth::ApiKey(key) => Some(header(&self.config.api_key_header, key.clone())),
            Auth::Bearer(token) => Some(header("authorization", format!("Bearer {token}"))),
            Auth::OAuth2 { access_token, .. } => {
                let token = match access_token.clone() {
                    Some(token) => token,
                    None => {
                        *refreshed = true;
                        self.refresh().await?
                    }
                };
                Some(header("authorization", format!("Bearer {token}")))
            }
        })
    }

    /// GETs a page as JSON, with auth, retries and error classification.
    async fn fetch(&mut self, url: &Url) -> Result<Value, SourceError> {
        let mut retries = 0;
        let mut refreshed = false;
        loop {
            let credentials = self.credentials(&mut refreshed).await?;
            let answer = self
                .client
                .get(url, &self.first, credentials.as_ref())
                .await?;
            let status = answer.response.status();
            if status.is_success() {
                let body = self.client.body(answer).await?;
                return serde_json::from_slice(&body).map_err(|error| {
                    SourceError::Permanent(format!("{} is not JSON: {error}", shown(url)))
                });
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                match &mut self.auth {
                    Auth::OAuth2 { access_token, .. } if !refreshed => {
                        // The access token may have expired: once more with
                        // a fresh one.
                        *access_token = None;
                        continue;
                    }
                    Auth::OAuth2 { .. } => {
                        return Err(SourceError::Credentials {
                            category: ErrorCategory::OauthCredentialsExpired,
                            message: format!("the API refused a fresh access token ({status})"),
                        });
                    }
                    _ => {
                        return Err(SourceError::Credentials {
                            category: ErrorCategory::ApiKeyInvalid,
                            message: format!("the API refused the credentials ({status})"),
                        });
                    }
                }
            }
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                let wait = retry_after(&answer.response);
                let max_wait = Duration::from_secs(u64::from(self.config.max_retry_wait_seconds));
                if let Some(wait) = wait
                    && wait <= max_wait
                    && retries < self.config.max_retries
                {
                    retries += 1;
                    tracing::info!(%status, ?wait, retries, "the API asked us to wait; retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                return Err(transient(format!("{} answered {status}", shown(url)), wait));
            }
            return Err(SourceError::Permanent(format!(
                "{} answered {status}",
                shown(url)
            )));
        }
    }

    /// Where the page after `page` (fetched from `url`) is.
    fn next_page(&self, page: &Value, url: &Url) -> Result<Next, SourceError> {
        if let Some(path) = &self.config.next_link_path {
            return match at(page, path).and_then(Value::as_str) {
                None | Some("") => Ok(Next::Done),
                Some(link) => {
                    let next = url.join(link).map_err(|error| {
                        SourceError::Permanent(format!("the next link of {}: {error}", shown(url)))
                    })?;
                    if &next == url {
                        return Err(SourceError::Permanent(format!(
                            "the next link of {} points to itself",
                            shown(url)
                        )));
                    }
                    Ok(Next::Url(next))
                }
            };
        }
        if let (Some(path), Some(param)) =
            (&self.config.page_token_path, &self.config.page_token_param)
        {
            let token = match at(page, path) {
                None | Some(Value::Null) => return Ok(Next::Done),
                Some(Value::String(token)) if token.is_empty() => return Ok(Next::Done),
                Some(token) => cursor_text(token),
            };
            let mut next = self.first.clone();
            next.query_pairs_mut().append_pair(param, &token);
            if &next == url {
                return Err(SourceError::Permanent(
                    "the API returned the same page token again".into(),
                ));
            }
            return Ok(Next::Url(next));
        }
        Ok(Next::Done)
    }
}

impl Source for HttpJsonSource {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<EntityBatch>, SourceError>> {
        Box::pin(async move {
            let Next::Url(url) = std::mem::replace(&mut self.next, Next::Done) else {
                return Ok(None);
            };
            if self.pages >= self.limits.max_pages {
                return Err(SourceError::Permanent(format!(
                    "the API has more than {} pages (SYNCWAY_CONNECTORS__MAX_PAGES)",
                    self.limits.max_pages
                )));
            }
            let page = self.fetch(&url).await?;
            self.pages += 1;
            let items = match &self.config.items_path {
                None => Some(&page),
                Some(path) => at(&page, path),
            };
            let Some(Value::Array(items)) = items else {
                return Err(SourceError::Permanent(format!(
                    "page {} of {} has no item array at {}",
                    self.pages,
                    shown(&self.first),
                    self.config.items_path.as_deref().unwrap_or("the top level")
                )));
            };
            let mut batch = EntityBatch::default();
            for item in items {
                let id = match at(item, &self.config.id_field) {
                    Some(Value::String(id)) if !id.is_empty() => id.clone(),
                    Some(Value::Number(id)) => id.to_string(),
                    _ => {
                        batch.fail("", format!("an item without {}", self.config.id_field));
                        continue;
                    }
                };
                if let Some(field) = &self.config.cursor_field
                    && let Some(value) = at(item, field).filter(|value| !value.is_null())
                    && self
                        .max_cursor
                        .as_ref()
                        .is_none_or(|current| later(value, current))
                {
                    self.max_cursor = Some(value.clone());
                }
                batch.entities.push(SourceEntity {
                    id,
                    payload: item.clone(),
                });
            }
            self.next = self.next_page(&page, &url)?;
            if matches!(self.next, Next::Done) {
                // Only the last page may move the cursor (see the module).
                batch.cursor = self.max_cursor.clone();
            }
            Ok(Some(batch))
        })
    }
}
