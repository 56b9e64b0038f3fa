//! The pages' frame (head, navigation, refresh selector, confirmation
//! dialog), the console's response headers, and the small pieces every
//! page uses: times, statuses, empty states, errors.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::assets::{SCRIPT, STYLE};
use super::{Failure, Signed};

/// The console's Content-Security-Policy: its own script and stylesheet
/// only, no inline script or style, no other origin, no framing.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Middleware on every console response.
pub async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// The navigation: (label, path, operators only).
const NAV: &[(&str, &str, bool)] = &[
    ("Overview", "/console/overview", false),
    ("Jobs", "/console/jobs", false),
    ("Connections", "/console/connections", false),
    ("Workers", "/console/workers", true),
    ("Dead letters", "/console/dead-letters", true),
    ("Pauses", "/console/pauses", false),
    ("Audit log", "/console/audit", false),
    ("Webhooks", "/console/webhooks", false),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · syncway console" }
            link rel="stylesheet" href=(STYLE.href()) integrity=(STYLE.integrity);
            script src=(SCRIPT.href()) integrity=(SCRIPT.integrity) defer {}
        }
    }
}

/// A page of a signed-in session.
pub fn render(signed: &Signed, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header class="top" {
                    a class="brand" href="/console/overview" { "syncway" }
                    nav aria-label="Console" {
                        ul {
                            @for (label, path, operators) in NAV {
                                @if !operators || signed.operator() {
                                    li {
                                        @if signed.path.starts_with(path) {
                                            a href=(path) aria-current="page" { (label) }
                                        } @else {
                                            a href=(path) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    div class="who" {
                        label for="refresh" { "Auto-refresh" }
                        select id="refresh" {
                            option value="0" { "Off" }
                            option value="5" { "5 s" }
                            option value="15" { "15 s" }
                            option value="60" { "1 min" }
                        }
                        span id="refresh-status" class="sr-only" aria-live="polite" {}
                        span { (signed.owner.key_prefix) "… ("
                            (if signed.operator() { "operator" } else { "member" }) ")" }
                        form method="post" action="/console/sign-out" {
                            input type="hidden" name="csrf" value=(signed.csrf);
                            button type="submit" class="secondary" { "Sign out" }
                        }
                    }
                }
                main data-refresh {
                    h1 { (title) }
                    (body)
                }
                dialog id="confirm" aria-labelledby="confirm-message" {
                    p id="confirm-message" data-message {}
                    div class="actions" {
                        button type="button" data-yes { "Confirm" }
                        button type="button" class="secondary" data-no { "Back" }
                    }
                }
            }
        }
    };
    Html(markup.into_string()).into_response()
}

/// A page outside a session (sign-in, refusals).
pub fn bare(title: &str, body: Markup, status: StatusCode) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { (body) }
        }
    };
    (status, Html(markup.into_string())).into_response()
}

/// 403: a POST without the session's token or from another origin.
pub fn refused(message: &str) -> Response {
    bare(
        "Refused",
        html! { main { h1 { "Refused" } p class="error-box" role="alert" { (message) } p { a href="/console/overview" { "Back to the console" } } } },
        StatusCode::FORBIDDEN,
    )
}

/// 500, the cause logged (with the request's id, from its span).
pub fn broken(error: anyhow::Error) -> Response {
    tracing::error!(error = %format!("{error:#}"), "console page failed");
    bare(
        "Something went wrong",
        html! { main { h1 { "Something went wrong" } p class="error-box" role="alert" { "The console could not load this page. The cause is in the API's log under this request's id." } } },
        StatusCode::INTERNAL_SERVER_ERROR,
    )
}

/// What a failed API call shows: a sign-in page when the key is gone, the
/// API's own message otherwise, with its status.
pub fn failure(signed: &Signed, failure: Failure) -> Response {
    match failure {
        Failure::KeyGone => Redirect::to("/console/sign-in?ended=1").into_response(),
        Failure::Api(status, detail) => {
            let title = match status {
                StatusCode::NOT_FOUND => "Not found",
                StatusCode::FORBIDDEN => "Not allowed",
                StatusCode::CONFLICT => "Not possible now",
                StatusCode::TOO_MANY_REQUESTS => "Too many requests",
                status if status.is_server_error() => "Something went wrong",
                _ => "That did not work",
            };
            let mut response = render(
                signed,
                title,
                html! { p class="error-box" role="alert" { (detail) } },
            );
            *response.status_mut() = status;
            response
        }
    }
}

/// A page's answer when `result` failed.
pub fn or_failure<T>(signed: &Signed, result: Result<T, Failure>) -> Result<T, Response> {
    result.map_err(|error| failure(signed, error))
}

/// "3 min ago", "in 2 h".
fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds();
    let (amount, future) = (seconds.unsigned_abs(), seconds < 0);
    let text = match amount {
        0..=59 => format!("{amount} s"),
        60..=3599 => format!("{} min", amount / 60),
        3600..=172_799 => format!("{} h", amount / 3600),
        _ => format!("{} d", amount / 86_400),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// An absolute ISO time with the relative one beside it.
pub fn when(at: DateTime<Utc>) -> Markup {
    let iso = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    html! {
        time datetime=(iso) { (iso) }
        " " span class="rel" { "(" (relative(at, Utc::now())) ")" }
    }
}

/// [`when`] for a JSON time (RFC 3339 or naive UTC); "—" for none.
pub fn when_json(value: Option<&Value>) -> Markup {
    let parsed = value.and_then(Value::as_str).and_then(|text| {
        DateTime::parse_from_rfc3339(text)
            .map(|at| at.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                    .ok()
                    .map(|naive| naive.and_utc())
            })
    });
    match parsed {
        Some(at) => when(at),
        None => html! { "—" },
    }
}

/// A status word, coloured by what it means.
pub fn status(word: &str) -> Markup {
    html! { span class={ "status status-" (word) } data-field="status" { (word) } }
}

/// A distinct empty state: what is empty, and why that is an answer.
pub fn empty(message: &str) -> Markup {
    html! { p class="empty" { (message) } }
}

/// `n` and the noun, singular for one: "1 job", "3 jobs".
pub fn count(n: impl Into<u64>, singular: &str, plural: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// A JSON value as text ("—" for null or absent).
pub fn text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "—".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// The hidden CSRF field of a session's form.
pub fn csrf(signed: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.csrf); }
}

/// A notice after an action (read from `?done=`).
pub fn notice(message: Option<&str>) -> Markup {
    html! {
        @if let Some(message) = message {
            p class="notice" role="status" { (message) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        let now = Utc::now();
        assert_eq!(relative(now - chrono::Duration::seconds(5), now), "5 s ago");
        assert_eq!(
            relative(now - chrono::Duration::minutes(3), now),
            "3 min ago"
        );
        assert_eq!(relative(now + chrono::Duration::hours(2), now), "in 2 h");
    }
}
