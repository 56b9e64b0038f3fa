//! Signing in and out, and the session every page reads ([`Signed`]).
//!
//! Signing in exchanges an API key for a session: a random token in an
//! HttpOnly, SameSite=Strict cookie (Secure behind TLS) that expires after
//! [`SESSION_HOURS`]. The key is checked by the API itself (a request it
//! makes as that key, so failed sign-ins count against the client's
//! failed-authentication budget like any bad key) and then forgotten: the
//! session row keeps the key's digest. Every page reads the key's row
//! again, so a revoked or expired key ends its sessions on their next page.
//! Every POST must carry the session's CSRF token (the sign-in form, a
//! token in a cookie of its own) and is refused on a foreign `Origin`.

use axum::Form;
use axum::extract::{FromRequestParts, OptionalFromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use cookie::{Cookie, SameSite};
use maud::html;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use syncway_store::api_keys::{self, KeyOwner};

use super::page;
use super::{Console, Failure};
use crate::AppState;
use crate::client_address::ClientAddress;
use crate::http_layers::REQUEST_ID;

/// How long a session lasts.
pub const SESSION_HOURS: i64 = 12;
const SESSION_COOKIE: &str = "syncway_session";
const SIGN_IN_COOKIE: &str = "syncway_sign_in";

/// A signed-in request: the session and the key's owner.
#[derive(Debug, Clone)]
pub struct Signed {
    token_hash: Vec<u8>,
    /// The digest of the key the session was made with.
    pub key_hash: Vec<u8>,
    pub csrf: String,
    pub owner: KeyOwner,
    pub request_id: Option<HeaderValue>,
    pub client: Option<ClientAddress>,
    /// The path asked for (the navigation marks its page).
    pub path: String,
}

impl Signed {
    pub fn operator(&self) -> bool {
        self.owner.role == syncway_model::KeyRole::Operator
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value().to_owned())
}

/// Whether the request came over TLS (a proxy in front says so).
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

fn set_cookie(headers: &HeaderMap, name: &'static str, value: String, max_age: i64) -> HeaderValue {
    let cookie = Cookie::build((name, value))
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(over_tls(headers))
        .max_age(cookie::time::Duration::seconds(max_age))
        .build();
    HeaderValue::from_str(&cookie.to_string()).unwrap_or(HeaderValue::from_static(""))
}

/// A POST from a page of another origin: its `Origin` (or, without one,
/// `Sec-Fetch-Site`) names somewhere else.
pub fn foreign_origin(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok());
    match headers.get(header::ORIGIN).map(|value| value.to_str()) {
        Some(Ok(origin)) => {
            let Ok(url) = url::Url::parse(origin) else {
                return true;
            };
            let authority = match (url.host_str(), url.port()) {
                (Some(name), Some(port)) => format!("{name}:{port}"),
                (Some(name), None) => name.to_owned(),
                (None, _) => return true,
            };
            host.is_none_or(|host| !host.eq_ignore_ascii_case(&authority))
        }
        Some(Err(_)) => true,
        None => headers
            .get("sec-fetch-site")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|site| site != "same-origin" && site != "none"),
    }
}

/// Refuses a POST without the session's CSRF token or from a foreign
/// origin (403).
pub fn check_post(signed: &Signed, headers: &HeaderMap, csrf: &str) -> Result<(), Response> {
    let token_matches: bool =
        Sha256::digest(csrf.as_bytes()) == Sha256::digest(signed.csrf.as_bytes());
    if foreign_origin(headers) || !token_matches {
        return Err(page::refused(
            "This form could not be accepted: it did not come from this console's own page. Reload the page and try again.",
        ));
    }
    Ok(())
}

/// Back to the sign-in page, coming back to `path` afterwards.
fn to_sign_in(path: &str, ended: bool) -> Response {
    let next = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("next", path)
        .append_pair("ended", if ended { "1" } else { "0" })
        .finish();
    Redirect::to(&format!("/console/sign-in?{next}")).into_response()
}

impl FromRequestParts<Console> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        let path = parts.uri.path().to_owned();
        let Some(token) = cookie_value(&parts.headers, SESSION_COOKIE) else {
            return Err(to_sign_in(&path, false));
        };
        let hash = token_hash(&token);
        let state = &console.state;
        let client = state
            .pool()
            .get()
            .await
            .map_err(|error| page::broken(error.into()))?;
        let Some(session) = syncway_store::console::find_session(&client, &hash)
            .await
            .map_err(|error| page::broken(error.into()))?
        else {
            return Err(to_sign_in(&path, true));
        };
        let owner =
            api_keys::find_by_digest(&client, &session.key_hash, state.operator_organization())
                .await
                .map_err(|error| page::broken(error.into()))?;
        let Some(owner) = owner else {
            // The key was revoked or expired: so is every session made with it.
            let _ = syncway_store::console::end_session(&client, &hash).await;
            return Err(to_sign_in(&path, true));
        };
        Ok(Signed {
            token_hash: hash,
            key_hash: session.key_hash,
            csrf: session.csrf_token,
            owner,
            request_id: parts.headers.get(REQUEST_ID).cloned(),
            client: parts.extensions.get::<ClientAddress>().copied(),
            path,
        })
    }
}

impl OptionalFromRequestParts<Console> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Console,
    ) -> Result<Option<Self>, Response> {
        Ok(
            <Signed as FromRequestParts<Console>>::from_request_parts(parts, console)
                .await
                .ok(),
        )
    }
}

/// Ends the session (its key is gone).
pub async fn end(state: &AppState, signed: &Signed) {
    if let Ok(client) = state.pool().get().await {
        let _ = syncway_store::console::end_session(&client, &signed.token_hash).await;
    }
}

#[derive(Debug, Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
    ended: Option<String>,
}

/// Only a console page may be where sign-in leads.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with("/console/")
                && !path.starts_with("/console/sign-")
                && !path.contains("//")
                && !path.contains('\\') =>
        {
            path.to_owned()
        }
        _ => "/console/overview".to_owned(),
    }
}

/// `GET /console/sign-in`
pub async fn sign_in_form(headers: HeaderMap, Query(query): Query<SignInQuery>) -> Response {
    let csrf = random_token();
    let note = (query.ended.as_deref() == Some("1")).then_some(
        "Your session ended (it expired, you signed out, or its key was revoked). Sign in again.",
    );
    sign_in_page(
        &headers,
        csrf,
        &safe_next(query.next.as_deref()),
        note,
        StatusCode::OK,
    )
}

fn sign_in_page(
    headers: &HeaderMap,
    csrf: String,
    next: &str,
    note: Option<&str>,
    status: StatusCode,
) -> Response {
    let body = html! {
        main class="signin" {
            h1 { "Sign in to the syncway console" }
            @if let Some(note) = note {
                p class="error-box" role="alert" { (note) }
            }
            form class="stack" method="post" action="/console/sign-in" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                label {
                    "API key"
                    input type="password" name="key" autocomplete="off" required;
                }
                button type="submit" { "Sign in" }
            }
            p class="rel" { "The key is exchanged for a session and not kept. A member key sees its organization; an operator key sees the deployment." }
        }
    };
    let mut response = page::bare("Sign in", body, status);
    let cookie = set_cookie(headers, SIGN_IN_COOKIE, csrf, 3600);
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

#[derive(Deserialize)]
pub struct SignInForm {
    key: String,
    csrf: String,
    next: Option<String>,
}

impl std::fmt::Debug for SignInForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInForm").finish_non_exhaustive()
    }
}

/// `POST /console/sign-in`
pub async fn sign_in(
    State(console): State<Console>,
    headers: HeaderMap,
    client: Option<axum::Extension<ClientAddress>>,
    Form(form): Form<SignInForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let expected = cookie_value(&headers, SIGN_IN_COOKIE);
    if foreign_origin(&headers) || expected.as_deref() != Some(form.csrf.as_str()) {
        return page::refused(
            "This sign-in could not be accepted: it did not come from this console's own page. Reload the page and try again.",
        );
    }
    let key = form.key.trim();
    let retry =
        |note: &str, status| sign_in_page(&headers, random_token(), &next, Some(note), status);
    if key.is_empty() {
        return retry("Enter an API key.", StatusCode::UNPROCESSABLE_ENTITY);
    }
    // The API checks the key, as for any request of that key's.
    let probe = Signed {
        token_hash: Vec::new(),
        key_hash: api_keys::digest(key),
        csrf: String::new(),
        owner: KeyOwner {
            key_id: uuid::Uuid::nil(),
            key_prefix: String::new(),
            organization_id: uuid::Uuid::nil(),
            role: syncway_model::KeyRole::Member,
            in_operator_organization: false,
        },
        request_id: headers.get(REQUEST_ID).cloned(),
        client: client.map(|axum::Extension(address)| address),
        path: String::new(),
    };
    match console.call(&probe, Method::GET, "/pauses", None).await {
        Ok(_) => {}
        Err(Failure::KeyGone) => {
            return retry(
                "That key is not valid: unknown, revoked or expired.",
                StatusCode::FORBIDDEN,
            );
        }
        Err(Failure::Api(status, detail)) => return retry(&detail, status),
    }
    let token = random_token();
    let expires = chrono::Utc::now() + chrono::Duration::hours(SESSION_HOURS);
    let made = async {
        let client = console.state.pool().get().await?;
        syncway_store::console::create_session(
            &client,
            &token_hash(&token),
            &probe.key_hash,
            &random_token(),
            expires,
        )
        .await
    }
    .await;
    if let Err(error) = made {
        return page::broken(error.into());
    }
    let mut response = Redirect::to(&next).into_response();
    let headers_out = response.headers_mut();
    headers_out.append(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, token, SESSION_HOURS * 3600),
    );
    headers_out.append(
        header::SET_COOKIE,
        set_cookie(&headers, SIGN_IN_COOKIE, String::new(), 0),
    );
    response
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

/// `POST /console/sign-out`: the session row is deleted, the cookie
/// cleared.
pub async fn sign_out(
    State(console): State<Console>,
    signed: Option<Signed>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(signed) = signed {
        if let Err(refused) = check_post(&signed, &headers, &form.csrf) {
            return refused;
        }
        end(&console.state, &signed).await;
    }
    let mut response = Redirect::to("/console/sign-in?ended=1").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, String::new(), 0),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn origins_must_be_this_host() {
        assert!(!foreign_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(foreign_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example")
        ])));
        assert!(foreign_origin(&headers(&[
            ("host", "a:1"),
            ("origin", "null")
        ])));
        assert!(foreign_origin(&headers(&[
            ("host", "a:1"),
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(!foreign_origin(&headers(&[("host", "a:1")])));
    }

    #[test]
    fn sign_in_leads_only_to_console_pages() {
        assert_eq!(
            safe_next(Some("/console/jobs?status=failed")),
            "/console/jobs?status=failed"
        );
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/console/sign-out",
            "/other",
        ] {
            assert_eq!(safe_next(Some(bad)), "/console/overview", "{bad}");
        }
    }
}
