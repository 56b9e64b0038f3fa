//! What happened: the audit log (keyset pages) and the webhook
//! subscriptions with their health and recent delivery attempts.

use axum::extract::{Query, State};
use axum::http::Method;
use futures_util::future::join_all;
use maud::html;
use serde::Deserialize;
use serde_json::Value;

use super::page::{self, or_failure};
use super::{Console, Page, Signed};

/// Entries per audit page; attempts shown per subscription.
const AUDIT_PAGE: u32 = 50;
const ATTEMPTS: usize = 5;

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    after: Option<String>,
    action: Option<String>,
}

/// `GET /console/audit?action=&after=`
pub async fn audit(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<AuditQuery>,
) -> Page {
    let path = if signed.operator() {
        "/admin/audit-log"
    } else {
        "/audit-log"
    };
    let action = query
        .action
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty());
    // (The serializer is not Send: it is dropped before any await.)
    let uri = {
        let mut params = url::form_urlencoded::Serializer::new(String::new());
        params.append_pair("limit", &AUDIT_PAGE.to_string());
        if let Some(action) = action {
            params.append_pair("action", action);
        }
        if let Some(after) = query.after.as_deref().filter(|a| !a.is_empty()) {
            params.append_pair("after", after);
        }
        format!("{path}?{}", params.finish())
    };
    let log = or_failure(
        &signed,
        console.call(&signed, Method::GET, &uri, None).await,
    )?;
    let items = log
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let next = log.get("next").and_then(Value::as_str).map(|next| {
        let mut link = url::form_urlencoded::Serializer::new(String::new());
        if let Some(action) = action {
            link.append_pair("action", action);
        }
        link.append_pair("after", next);
        format!("/console/audit?{}", link.finish())
    });
    Ok(page::render(
        &signed,
        "Audit log",
        html! {
            form class="filters" method="get" action="/console/audit" {
                label { "Action" input name="action" value=(action.unwrap_or("")) placeholder="e.g. sync_job.cancel"; }
                button type="submit" { "Filter" }
            }
            @if items.is_empty() {
                (page::empty(if action.is_some() { "No entry with this action." } else { "Nothing recorded yet: changes made with this organization's keys appear here." }))
            } @else {
                div class="table-wrap" {
                    table {
                        caption class="sr-only" { "Audit log" }
                        thead { tr {
                            th scope="col" { "At" } th scope="col" { "Action" } th scope="col" { "Target" }
                            th scope="col" class="num" { "Status" } th scope="col" { "Key" } th scope="col" { "Client" } th scope="col" { "Request" }
                        } }
                        tbody {
                            @for entry in &items {
                                tr {
                                    td { (page::when_json(entry.get("at"))) }
                                    td { (page::text(entry.get("action"))) }
                                    td { (page::text(entry.get("target_type"))) " " code { (page::text(entry.get("target_id"))) } }
                                    td class="num" { (page::text(entry.get("status"))) }
                                    td { (page::text(entry.get("key_prefix"))) " (" (page::text(entry.get("role"))) ")" }
                                    td { (page::text(entry.get("client_address"))) }
                                    td { code { (page::text(entry.get("request_id"))) } }
                                }
                            }
                        }
                    }
                }
                @if let Some(next) = &next { div class="pager" { a href=(next) rel="next" { "Older entries" } } }
            }
        },
    ))
}

/// `GET /console/webhooks`
pub async fn webhooks(State(console): State<Console>, signed: Signed) -> Page {
    let listed = or_failure(
        &signed,
        console
            .call(&signed, Method::GET, "/webhooks/subscriptions", None)
            .await,
    )?;
    let subscriptions = listed.as_array().cloned().unwrap_or_default();
    let details = join_all(subscriptions.iter().map(|subscription| {
        let id = page::text(subscription.get("id"));
        let (console, signed) = (&console, &signed);
        async move {
            console
                .call(
                    signed,
                    Method::GET,
                    &format!("/webhooks/subscriptions/{id}"),
                    None,
                )
                .await
        }
    }))
    .await;
    let details: Vec<Value> = details.into_iter().filter_map(Result::ok).collect();
    Ok(page::render(
        &signed,
        "Webhooks",
        html! {
            @if details.is_empty() {
                (page::empty("No webhook subscription: create one with POST /webhooks/subscriptions or the CLI."))
            }
            @for subscription in &details {
                @let attempts = subscription.get("delivery_attempts").and_then(Value::as_array).cloned().unwrap_or_default();
                section {
                    h2 { (page::text(subscription.get("url"))) }
                    dl class="facts" {
                        dt { "Health" } dd { (page::status(&page::text(subscription.get("health_status")))) }
                        dt { "Disabled" } dd { (page::text(subscription.get("disabled"))) }
                        dt { "Events" } dd { (subscription.get("filter_types").and_then(Value::as_array).map(|types| types.iter().map(|t| page::text(Some(t))).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                        dt { "Created" } dd { (page::when_json(subscription.get("created_at"))) }
                    }
                    @if attempts.is_empty() {
                        (page::empty("No delivery attempted yet."))
                    } @else {
                        div class="table-wrap" {
                            table {
                                caption { "The latest " (attempts.len().min(ATTEMPTS)) " attempts" }
                                thead { tr { th scope="col" { "At" } th scope="col" { "Result" } th scope="col" class="num" { "HTTP status" } th scope="col" { "Message" } } }
                                tbody {
                                    @for attempt in attempts.iter().take(ATTEMPTS) {
                                        tr {
                                            td { (page::when_json(attempt.get("timestamp"))) }
                                            td { (page::text(attempt.get("status"))) }
                                            td class="num" { (page::text(attempt.get("response_status_code"))) }
                                            td { code { (page::text(attempt.get("message_id"))) } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}
