//! The `s3` connector: the objects of one bucket of S3 or an S3-compatible
//! store, one entity per object.
//!
//! The entity id is the key; the payload holds the key, size, ETag,
//! last-modified time, content type and, for UTF-8 objects up to
//! `max_content_bytes`, the content (otherwise `content` is null and
//! `content_omitted` says why). The cursor is a last-modified time: objects
//! are emitted in (last-modified, key) order, so each batch's cursor (its
//! last object's time) never passes an object not yet emitted, and an
//! incremental sync reads the objects modified at or after it (those at
//! exactly the cursor again, unchanged by hash). Deletions are found by
//! full syncs (what the listing no longer has).
//!
//! Requests are signed with rusty-s3 (presigned URLs, SigV4) and sent with
//! syncway's egress-checked HTTP client ([`crate::http_json::client`]):
//! each host is checked on the addresses it resolves to and connected to
//! there, redirects are checked hop by hop, bodies are size-limited, and
//! signed URLs go over plain http only to hosts the operator allowed. The
//! first batch lists the bucket (ListObjectsV2, 1,000 keys a page);
//! contents are fetched batch by batch, eight at a time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use reqwest::StatusCode;
use rusty_s3::{Bucket, Credentials as S3Credentials, S3Action, UrlStyle};
use serde_json::{Value, json};
use syncway_model::{ErrorCategory, S3Config};

use crate::http_json::client::{Credentials, GuardedClient};
use crate::{EntityBatch, Source, SourceEntity, SourceError, SyncStart};

/// How long a signed URL is valid: it is used at once.
const SIGNED_FOR: Duration = Duration::from_secs(900);
/// Objects fetched at a time.
const CONCURRENCY: usize = 8;
/// Any one request's limit.
const TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
struct Object {
    key: String,
    size: u64,
    etag: Option<String>,
    modified: DateTime<Utc>,
}

pub struct S3Source {
    config: S3Config,
    bucket: Bucket,
    credentials: Option<S3Credentials>,
    client: Arc<GuardedClient>,
    max_pages: u64,
    since: Option<DateTime<Utc>>,
    /// The objects still to emit, once listed.
    objects: Option<std::vec::IntoIter<Object>>,
}

impl S3Source {
    pub fn new(config: &S3Config, start: &SyncStart) -> Result<Self, SourceError> {
        let endpoint = config
            .endpoint_url()
            .map_err(|error| SourceError::Permanent(error.to_string()))?;
        let style = if config.force_path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            endpoint,
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|error| SourceError::Permanent(format!("bucket {}: {error}", config.bucket)))?;
        let since = match &start.cursor {
            None => None,
            Some(cursor) => Some(parse_time(cursor.as_str().unwrap_or_default()).ok_or_else(
                || {
                    SourceError::Permanent(format!(
                        "stored cursor {cursor} is not a modification time; run a full sync"
                    ))
                },
            )?),
        };
        let client = GuardedClient::new(
            start.policy.clone(),
            start.limits,
            TIMEOUT,
            start.budget.clone(),
        )?;
        Ok(S3Source {
            config: config.clone(),
            bucket,
            credentials: credentials(start.credentials.as_ref())?,
            client: Arc::new(client),
            max_pages: start.limits.max_pages,
            since,
            objects: None,
        })
    }
}

/// `{access_key_id, secret_access_key, session_token?}`, or none
/// (a public bucket).
fn credentials(credentials: Option<&Value>) -> Result<Option<S3Credentials>, SourceError> {
    let Some(credentials) = credentials else {
        return Ok(None);
    };
    let text = |key: &str| credentials.get(key).and_then(Value::as_str);
    match (text("access_key_id"), text("secret_access_key")) {
        (Some(key), Some(secret)) => Ok(Some(match text("session_token") {
            Some(token) => S3Credentials::new_with_token(key, secret, token),
            None => S3Credentials::new(key, secret),
        })),
        _ => Err(SourceError::Permanent(
            "the s3 connector's credentials need access_key_id and secret_access_key".into(),
        )),
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// S3's XML namespace.
const S3_NAMESPACE: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// A listing with S3's namespace on its root, whatever the store wrote
/// there (some S3-compatible stores write another, or none).
fn canonical_namespace(listing: &str) -> String {
    let Some(start) = listing.find("<ListBucketResult") else {
        return listing.to_owned();
    };
    let Some(end) = listing[start..].find('>').map(|end| start + end) else {
        return listing.to_owned();
    };
    format!(
        "{}<ListBucketResult xmlns=\"{S3_NAMESPACE}\">{}",
        &listing[..start],
        &listing[end + 1..]
    )
}

/// The `<Code>` of an S3 error body, if it has one.
fn error_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let end = text[start..].find("</Code>")? + start;
    Some(text[start..end].to_owned())
}

/// What an unsuccessful answer means for the job.
fn refusal(status: StatusCode, body: &[u8], bucket: &str) -> SourceError {
    let code = error_code(body).unwrap_or_else(|| status.to_string());
    let message = format!("bucket {bucket}: the store answered {status} ({code})");
    match code.as_str() {
        // Refused keys (and, as S3 says for a key without the right, access
        // denied): the credentials need changing.
        "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "InvalidToken"
        | "TokenRefreshRequired"
        | "AccessDenied"
        | "AllAccessDisabled" => SourceError::Credentials {
            category: ErrorCategory::ApiKeyInvalid,
            message,
        },
        _ if status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
            || code == "SlowDown" =>
        {
            SourceError::Transient {
                message,
                retry_after: None,
            }
        }
        _ => SourceError::Permanent(message),
    }
}

impl S3Source {
    /// The signed URL's origin may carry its signature (credentials) only
    /// over https or to an allowed host.
    fn marker(&self) -> Option<Credentials> {
        self.credentials.as_ref().map(|_| Credentials {
            headers: Vec::new(),
        })
    }

    async fn list(&self) -> Result<Vec<Object>, SourceError> {
        let matcher = self
            .config
            .matcher()
            .map_err(|error| SourceError::Permanent(error.to_string()))?;
        let marker = self.marker();
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..self.max_pages {
            let mut action = self.bucket.list_objects_v2(self.credentials.as_ref());
            if !self.config.prefix.is_empty() {
                action.with_prefix(self.config.prefix.as_str());
            }
            if let Some(token) = &token {
                action.with_continuation_token(token.as_str());
            }
            action.with_max_keys(1000);
            let url = action.sign(SIGNED_FOR);
            let answer = self.client.get(&url, &url, marker.as_ref()).await?;
            let status = answer.response.status();
            let body = self.client.body(answer).await?;
            if !status.is_success() {
                return Err(refusal(status, &body, &self.config.bucket));
            }
            let text = canonical_namespace(&String::from_utf8_lossy(&body));
            let page = rusty_s3::actions::ListObjectsV2::parse_response(&text).map_err(|_| {
                SourceError::Permanent(format!(
                    "bucket {}: the listing is not an S3 ListObjectsV2 answer",
                    self.config.bucket
                ))
            })?;
            for content in page.contents {
                let relative = content
                    .key
                    .strip_prefix(self.config.prefix.as_str())
                    .unwrap_or(&content.key);
                if matcher.as_ref().is_some_and(|m| !m.is_match(relative)) {
                    continue;
                }
                let modified = content
                    .last_modified
                    .as_deref()
                    .and_then(parse_time)
                    .unwrap_or(DateTime::UNIX_EPOCH);
                if self.since.is_some_and(|since| modified < since) {
                    continue;
                }
                objects.push(Object {
                    key: content.key,
                    size: content.size.unwrap_or(0),
                    etag: content.etag.map(|etag| etag.trim_matches('"').to_owned()),
                    modified,
                });
            }
            match page.next_continuation_token {
                Some(next) => token = Some(next),
                None => {
                    objects.sort_by(|a, b| (a.modified, &a.key).cmp(&(b.modified, &b.key)));
                    return Ok(objects);
                }
            }
        }
        Err(SourceError::Permanent(format!(
            "bucket {} lists more pages than allowed (SYNCWAY_CONNECTORS__MAX_PAGES)",
            self.config.bucket
        )))
    }

    /// One object's payload; `None` when it is gone since the listing.
    async fn fetch(&self, object: &Object) -> Result<Option<Value>, SourceError> {
        let max = u64::from(self.config.max_content_bytes);
        let whole = object.size <= max;
        let url = self
            .bucket
            .get_object(self.credentials.as_ref(), &object.key)
            .sign(SIGNED_FOR);
        // A large object: its first byte only, for its content type.
        let mut headers = Vec::new();
        if !whole {
            headers.push(("range".to_owned(), "bytes=0-0".to_owned()));
        }
        let marker = Credentials { headers };
        let answer = self.client.get(&url, &url, Some(&marker)).await?;
        let status = answer.response.status();
        let content_type = answer
            .response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = self.client.body(answer).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(refusal(status, &body, &self.config.bucket));
        }
        let (content, omitted) = match (whole, String::from_utf8(body)) {
            (false, _) => (Value::Null, Some("too_large")),
            (true, Ok(text)) => (Value::String(text), None),
            (true, Err(_)) => (Value::Null, Some("not_utf8")),
        };
        let mut payload = json!({
            "key": object.key,
            "size": object.size,
            "etag": object.etag,
            "last_modified": rfc3339(object.modified),
            "content_type": content_type,
            "content": content,
        });
        if let (Some(omitted), Some(map)) = (omitted, payload.as_object_mut()) {
            map.insert("content_omitted".into(), Value::from(omitted));
        }
        Ok(Some(payload))
    }
}

impl Source for S3Source {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<EntityBatch>, SourceError>> {
        Box::pin(async move {
            if self.objects.is_none() {
                self.objects = Some(self.list().await?.into_iter());
            }
            let size = self.config.batch_size as usize;
            let chunk: Vec<Object> = self
                .objects
                .as_mut()
                .map(|objects| objects.by_ref().take(size).collect())
                .unwrap_or_default();
            let Some(last) = chunk.last() else {
                return Ok(None);
            };
            let cursor = Some(Value::String(rfc3339(last.modified)));
            let this = &*self;
            let fetches: Vec<BoxFuture<'_, Result<Option<Value>, SourceError>>> = chunk
                .iter()
                .map(|object| -> BoxFuture<'_, _> { Box::pin(this.fetch(object)) })
                .collect();
            let fetched: Vec<Result<Option<Value>, SourceError>> =
                futures_util::stream::iter(fetches)
                    .buffered(CONCURRENCY)
                    .collect()
                    .await;
            let mut batch = EntityBatch {
                cursor,
                ..EntityBatch::default()
            };
            for (object, payload) in chunk.into_iter().zip(fetched) {
                // Gone since the listing: a full sync deletes it.
                let Some(payload) = payload? else {
                    continue;
                };
                batch.entities.push(SourceEntity {
                    id: object.key,
                    payload,
                });
            }
            Ok(Some(batch))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_get_s3s_namespace() {
        let odd = r#"<?xml version="1.0"?><ListBucketResult xmlns="http://doc.s3.amazonaws.com/2006-03-01/"><Name>b</Name><IsTruncated>false</IsTruncated></ListBucketResult>"#;
        let fixed = canonical_namespace(odd);
        assert!(fixed.contains(S3_NAMESPACE), "{fixed}");
        assert!(rusty_s3::actions::ListObjectsV2::parse_response(&fixed).is_ok());
        assert_eq!(canonical_namespace("<Error/>"), "<Error/>");
    }

    #[test]
    fn error_codes_are_read_and_classified() {
        let body = b"<Error><Code>InvalidAccessKeyId</Code><Message>no</Message></Error>";
        assert_eq!(error_code(body).as_deref(), Some("InvalidAccessKeyId"));
        assert!(matches!(
            refusal(StatusCode::FORBIDDEN, body, "b"),
            SourceError::Credentials {
                category: ErrorCategory::ApiKeyInvalid,
                ..
            }
        ));
        assert!(matches!(
            refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                b"<Error><Code>SlowDown</Code></Error>",
                "b"
            ),
            SourceError::Transient { .. }
        ));
        assert!(matches!(
            refusal(StatusCode::NOT_FOUND, b"<Error><Code>NoSuchBucket</Code></Error>", "b"),
            SourceError::Permanent(message) if message.contains("NoSuchBucket")
        ));
        assert!(credentials(Some(&json!({"access_key_id": "a"}))).is_err());
        assert!(matches!(credentials(None), Ok(None)));
    }
}
