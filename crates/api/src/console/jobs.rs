//! The jobs list: the steering search (`GET /jobs`, or `/admin/jobs` for an
//! operator key) with its filters in the URL and keyset paging, and bulk
//! actions on the same server-side filter: the count first (a dry run),
//! then the task and its progress.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};
use serde_json::{Value, json};

use super::page::{self, or_failure};
use super::session::check_post;
use super::{Console, Page, Signed};

/// Jobs per page.
const PAGE: u32 = 50;

/// The search's filters, as the URL and the bulk forms carry them.
const FILTERS: &[&str] = &[
    "status",
    "source_connection_id",
    "short_name",
    "trigger",
    "error_category",
    "created_after",
    "created_before",
    "organization_id",
];

const STATUSES: &[&str] = &[
    "pending",
    "running",
    "cancelling",
    "completed",
    "failed",
    "cancelled",
];

/// The filters given (non-empty values of known names only).
fn filters(
    pairs: impl Iterator<Item = (String, String)>,
    operator: bool,
) -> BTreeMap<String, String> {
    pairs
        .filter(|(name, value)| {
            FILTERS.contains(&name.as_str())
                && !value.trim().is_empty()
                && (operator || name != "organization_id")
        })
        .map(|(name, value)| (name, value.trim().to_owned()))
        .collect()
}

fn encode(pairs: &BTreeMap<String, String>) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        out.append_pair(name, value);
    }
    out.finish()
}

/// The filters as a person reads them ("status = failed, trigger = api"),
/// or `none` when there are none.
fn describe(filters: &BTreeMap<String, String>, none: &str) -> String {
    if filters.is_empty() {
        return none.to_owned();
    }
    filters
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn search_path(signed: &Signed) -> &'static str {
    if signed.operator() {
        "/admin/jobs"
    } else {
        "/jobs"
    }
}

fn filter_form(signed: &Signed, given: &BTreeMap<String, String>) -> Markup {
    let value = |name: &str| given.get(name).cloned().unwrap_or_default();
    html! {
        form class="filters" method="get" action="/console/jobs" {
            label { "Status"
                select name="status" {
                    option value="" { "any" }
                    @for status in STATUSES {
                        option value=(status) selected[value("status") == *status] { (status) }
                    }
                }
            }
            label { "Trigger"
                select name="trigger" {
                    option value="" { "any" }
                    @for trigger in ["api", "schedule"] {
                        option value=(trigger) selected[value("trigger") == trigger] { (trigger) }
                    }
                }
            }
            label { "Source" input name="short_name" value=(value("short_name")) placeholder="e.g. http_json"; }
            label { "Connection id" input name="source_connection_id" value=(value("source_connection_id")); }
            label { "Error category" input name="error_category" value=(value("error_category")); }
            label { "Created after" input name="created_after" value=(value("created_after")) placeholder="2026-12-01T00:00:00Z"; }
            label { "Created before" input name="created_before" value=(value("created_before")); }
            @if signed.operator() {
                label { "Organization id" input name="organization_id" value=(value("organization_id")); }
            }
            button type="submit" { "Search" }
            a class="button secondary" href="/console/jobs" { "Clear" }
        }
    }
}

/// A row of the jobs table.
fn row(job: &Value) -> Markup {
    let id = page::text(job.get("id"));
    let connection = page::text(job.get("source_connection_id"));
    let counts = [
        "entities_inserted",
        "entities_updated",
        "entities_deleted",
        "entities_failed",
    ]
    .map(|name| page::text(job.get(name)));
    html! {
        tr {
            td { a href={ "/console/jobs/" (connection) "/" (id) } { code { (id.get(..8).unwrap_or(&id)) } } }
            td { (page::status(&page::text(job.get("status")))) }
            td { (page::when_json(job.get("started_at"))) }
            td { (page::when_json(job.get("completed_at"))) }
            td { (page::text(job.get("trigger"))) }
            td class="num" { (counts[0]) " / " (counts[1]) " / " (counts[2]) " / " (counts[3]) }
            td { (job.pointer("/waiting_reason/message").and_then(Value::as_str).unwrap_or("")) }
            td { (job.get("error").and_then(Value::as_str).unwrap_or("")) }
        }
    }
}

/// `GET /console/jobs?<filters>&after=`
pub async fn list(
    State(console): State<Console>,
    signed: Signed,
    RawQuery(query): RawQuery,
) -> Page {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let given = filters(pairs.iter().cloned(), signed.operator());
    let after = pairs
        .iter()
        .find(|(name, _)| name == "after")
        .map(|(_, v)| v.clone());
    let mut api_query = given.clone();
    api_query.insert("limit".into(), PAGE.to_string());
    if let Some(after) = &after {
        api_query.insert("after".into(), after.clone());
    }
    let uri = format!("{}?{}", search_path(&signed), encode(&api_query));
    let found = or_failure(
        &signed,
        console.call(&signed, Method::GET, &uri, None).await,
    )?;
    let items = found
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let next = found.get("next").and_then(Value::as_str).map(str::to_owned);
    let next_href = next.map(|next| {
        let mut with_after = given.clone();
        with_after.insert("after".into(), next);
        format!("/console/jobs?{}", encode(&with_after))
    });
    let described = describe(&given, "all jobs");
    Ok(page::render(
        &signed,
        "Jobs",
        html! {
            (filter_form(&signed, &given))
            @if items.is_empty() {
                @if after.is_some() {
                    (page::empty("No more jobs match these filters."))
                } @else if given.is_empty() {
                    (page::empty("No jobs yet: none has been triggered, or retention removed them."))
                } @else {
                    (page::empty(&format!("No jobs match: {described}.")))
                }
            } @else {
                p { (page::count(items.len() as u64, "job", "jobs")) " on this page (newest first), matching " (described) "." }
                div class="table-wrap" {
                    table {
                        caption class="sr-only" { "Jobs matching " (described) }
                        thead { tr {
                            th scope="col" { "Job" } th scope="col" { "Status" } th scope="col" { "Started" }
                            th scope="col" { "Finished" } th scope="col" { "Trigger" }
                            th scope="col" class="num" { "Inserted / updated / deleted / failed" }
                            th scope="col" { "Waiting" } th scope="col" { "Error" }
                        } }
                        tbody { @for job in &items { (row(job)) } }
                    }
                }
                div class="pager" {
                    @if after.is_some() { a href={ "/console/jobs?" (encode(&given)) } { "First page" } }
                    @if let Some(next) = &next_href {
                        a href=(next) rel="next" { "Next page" }
                    }
                }
            }
            h2 { "Act on every job matching these filters" }
            p { "The count comes first: nothing is done until you confirm it." }
            div class="actions" {
                @for (action, label) in [("cancel", "Cancel matching jobs"), ("retry", "Retry matching jobs"), ("run", "Run their connections again")] {
                    form method="post" action="/console/jobs/bulk" {
                        (page::csrf(&signed))
                        input type="hidden" name="action" value=(action);
                        @for (name, value) in &given { input type="hidden" name={ "filter." (name) } value=(value); }
                        button type="submit" class="secondary" { (label) "…" }
                    }
                }
            }
        },
    ))
}

fn bulk_path(signed: &Signed) -> &'static str {
    if signed.operator() {
        "/admin/jobs/bulk"
    } else {
        "/jobs/bulk"
    }
}

/// The action and filter of a bulk form.
fn bulk_request(form: &[(String, String)], signed: &Signed) -> (String, BTreeMap<String, String>) {
    let action = form
        .iter()
        .find(|(name, _)| name == "action")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let filter = filters(
        form.iter().filter_map(|(name, value)| {
            Some((name.strip_prefix("filter.")?.to_owned(), value.clone()))
        }),
        signed.operator(),
    );
    (action, filter)
}

fn csrf_of(form: &[(String, String)]) -> &str {
    form.iter()
        .find(|(name, _)| name == "csrf")
        .map_or("", |(_, value)| value.as_str())
}

/// A bulk form sent to the API (after its CSRF and origin checks), as a dry
/// run or for real: its action, its filter and the API's answer.
async fn bulk_call(
    console: &Console,
    signed: &Signed,
    headers: &HeaderMap,
    form: &[(String, String)],
    dry_run: bool,
) -> Result<(String, BTreeMap<String, String>, Value), axum::response::Response> {
    check_post(signed, headers, csrf_of(form))?;
    let (action, filter) = bulk_request(form, signed);
    let body = json!({"action": action, "filter": filter, "dry_run": dry_run});
    let answer = or_failure(
        signed,
        console
            .call(signed, Method::POST, bulk_path(signed), Some(&body))
            .await,
    )?;
    Ok((action, filter, answer))
}

/// `POST /console/jobs/bulk`: the dry run; shows the count and asks.
pub async fn bulk_preview(
    State(console): State<Console>,
    signed: Signed,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Page {
    let (action, filter, answer) = bulk_call(&console, &signed, &headers, &form, true).await?;
    let matched = answer.get("matched").and_then(Value::as_u64).unwrap_or(0);
    let described = describe(&filter, "every job");
    Ok(page::render(
        &signed,
        "Confirm a bulk action",
        html! {
            @if matched == 0 {
                (page::empty(&format!("No job matches ({described}): there is nothing to {action}.")))
                p { a href={ "/console/jobs?" (encode(&filter)) } { "Back to the jobs" } }
            } @else {
                p { strong data-matched=(matched) { (page::count(matched, "job matches", "jobs match")) } " " (described) ". " (action) " " (if matched == 1 { "it" } else { "them" }) "?" }
                div class="actions" {
                    form method="post" action="/console/jobs/bulk/start" {
                        (page::csrf(&signed))
                        input type="hidden" name="action" value=(action);
                        @for (name, value) in &filter { input type="hidden" name={ "filter." (name) } value=(value); }
                        button type="submit" class="danger" { "Yes, " (action) " " (page::count(matched, "job", "jobs")) }
                    }
                    a class="button secondary" href={ "/console/jobs?" (encode(&filter)) } { "Back" }
                }
            }
        },
    ))
}

/// `POST /console/jobs/bulk/start`: starts the task, then shows it.
pub async fn bulk_start(
    State(console): State<Console>,
    signed: Signed,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Page {
    let (_, _, answer) = bulk_call(&console, &signed, &headers, &form, false).await?;
    let task = page::text(answer.get("task_id"));
    Ok(Redirect::to(&format!("/console/tasks/{task}")).into_response())
}

/// `GET /console/tasks/{id}`: a bulk task's progress.
pub async fn task(State(console): State<Console>, signed: Signed, Path(id): Path<String>) -> Page {
    let prefix = if signed.operator() {
        "/admin/tasks"
    } else {
        "/tasks"
    };
    let id = uuid::Uuid::parse_str(&id).map_err(|_| {
        page::failure(
            &signed,
            super::Failure::Api(axum::http::StatusCode::NOT_FOUND, "No such task.".into()),
        )
    })?;
    let task = or_failure(
        &signed,
        console
            .call(&signed, Method::GET, &format!("{prefix}/{id}"), None)
            .await,
    )?;
    Ok(page::render(
        &signed,
        "Bulk task",
        html! {
            dl class="facts" {
                dt { "Task" } dd { code { (id) } }
                dt { "Status" } dd { (page::status(&page::text(task.get("status")))) }
                dt { "Matched" } dd data-figure="matched" { (page::text(task.get("matched"))) }
                dt { "Done" } dd data-figure="done" { (page::text(task.get("done"))) }
                dt { "Failed" } dd data-figure="failed" { (page::text(task.get("failed"))) }
            }
            p class="rel" { "Turn on auto-refresh above to follow it." }
        },
    ))
}
