//! The API as the CLI calls it: `SYNCWAY_URL` and `SYNCWAY_API_KEY` (or
//! flags), the response body kept as the API sent it, errors carrying the
//! API's `detail`.

use futures_util::StreamExt;
use serde_json::Value;

use crate::sse::{SseEvent, SseParser};

pub struct Api {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// The API answered with an error status.
    Api { status: u16, detail: String },
    /// The API could not be reached, or answered something unreadable.
    Transport(String),
    /// What the user gave cannot be sent (not JSON, an unreadable file).
    Usage(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Api { status, detail } => write!(f, "the API answered {status}: {detail}"),
            CallError::Transport(cause) | CallError::Usage(cause) => write!(f, "{cause}"),
        }
    }
}

/// The human part of an error body: `detail` as a string, or the 422
/// list as `loc: msg` lines.
fn detail_of(body: &str) -> String {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return body.trim().to_owned();
    };
    match &value["detail"] {
        Value::String(detail) => detail.clone(),
        Value::Array(errors) => errors
            .iter()
            .map(|error| {
                let loc: Vec<String> = error["loc"]
                    .as_array()
                    .map(|parts| {
                        parts
                            .iter()
                            .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                format!("{}: {}", loc.join("."), error["msg"].as_str().unwrap_or(""))
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => body.trim().to_owned(),
    }
}

impl Api {
    pub fn new(base: &str, key: Option<String>) -> Self {
        Api {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            key,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(key) => request.header("x-api-key", key),
            None => request,
        }
    }

    async fn checked(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, CallError> {
        let response = request.send().await.map_err(|error| {
            CallError::Transport(format!("cannot reach the API at {}: {error}", self.base))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(CallError::Api {
            status: status.as_u16(),
            detail: detail_of(&body),
        })
    }

    /// Calls the API; returns the body as it was sent.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<String, CallError> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = self.checked(request).await?;
        response
            .text()
            .await
            .map_err(|error| CallError::Transport(format!("reading the answer: {error}")))
    }

    /// Follows an event stream; `on_event` is called for each event until
    /// the stream ends (or it returns false).
    pub async fn follow(
        &self,
        path: &str,
        mut on_event: impl FnMut(SseEvent) -> bool,
    ) -> Result<(), CallError> {
        let request = self
            .request(reqwest::Method::GET, path)
            .header("accept", "text/event-stream");
        let response = self.checked(request).await?;
        let mut parser = SseParser::default();
        let mut bytes = response.bytes_stream();
        while let Some(chunk) = bytes.next().await {
            let chunk = chunk.map_err(|error| {
                CallError::Transport(format!("the event stream broke off: {error}"))
            })?;
            for event in parser.feed(&chunk) {
                if !on_event(event) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
