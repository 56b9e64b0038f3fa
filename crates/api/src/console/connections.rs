//! The connections of the key's organization: status, schedule and next
//! run, last job, entity count; run now, pause or resume the schedule.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::future::join_all;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::page::{self, or_failure};
use super::session::{CsrfForm, check_post};
use super::{Console, Failure, Page, Signed};

/// Connections per page.
const PAGE: u64 = 25;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    page: Option<u64>,
    done: Option<String>,
}

fn row(signed: &Signed, connection: &Value) -> Markup {
    let id = page::text(connection.get("id"));
    let paused = connection
        .pointer("/schedule/paused")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let cron = connection.pointer("/schedule/cron").and_then(Value::as_str);
    let last = connection.pointer("/sync/last_job");
    html! {
        tr id={ "c-" (id) } {
            td { strong { (page::text(connection.get("name"))) } br; code { (id) } }
            td { (page::text(connection.get("short_name"))) }
            td { (page::status(&page::text(connection.get("status")))) }
            td {
                @match cron {
                    Some(cron) => { code { (cron) } @if paused { " (paused)" } }
                    None => { "none" }
                }
                br; span class="rel" { "next: " } (page::when_json(connection.pointer("/schedule/next_run")))
            }
            td {
                @match last.filter(|job| !job.is_null()) {
                    Some(job) => {
                        a href={ "/console/jobs/" (id) "/" (page::text(job.get("id"))) } { (page::text(job.get("status"))) }
                        " " (page::when_json(job.get("started_at")))
                    }
                    None => { "never run" }
                }
            }
            td class="num" { (page::text(connection.pointer("/entities/total_entities"))) }
            td {
                div class="actions" {
                    form method="post" action={ "/console/connections/" (id) "/run" } {
                        (page::csrf(signed))
                        button type="submit" aria-label={ "Run now: " (page::text(connection.get("name"))) } { "Run now" }
                    }
                    @if cron.is_some() {
                        form method="post" action={ "/console/connections/" (id) "/schedule" } {
                            (page::csrf(signed))
                            input type="hidden" name="paused" value=(if paused { "false" } else { "true" });
                            button type="submit" class="secondary" { (if paused { "Resume schedule" } else { "Pause schedule" }) }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /console/connections?page=`
pub async fn list(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<ListQuery>,
) -> Page {
    let page_number = query.page.unwrap_or(0).min(100_000);
    let uri = format!(
        "/source-connections?skip={}&limit={}",
        page_number * PAGE,
        PAGE + 1
    );
    let listed = or_failure(
        &signed,
        console.call(&signed, Method::GET, &uri, None).await,
    )?;
    let mut items = listed.as_array().cloned().unwrap_or_default();
    let more = items.len() as u64 > PAGE;
    items.truncate(usize::try_from(PAGE).unwrap_or(25));
    // Each connection's own answer carries its schedule and last job.
    let details = join_all(items.iter().map(|item| {
        let id = page::text(item.get("id"));
        let console = &console;
        let signed = &signed;
        async move {
            console
                .call(
                    signed,
                    Method::GET,
                    &format!("/source-connections/{id}"),
                    None,
                )
                .await
        }
    }))
    .await;
    let rows: Vec<Value> = details.into_iter().filter_map(Result::ok).collect();
    Ok(page::render(
        &signed,
        "Connections",
        html! {
            (page::notice(match query.done.as_deref() {
                Some("paused") => Some("Schedule paused."),
                Some("resumed") => Some("Schedule resumed."),
                _ => None,
            }))
            @if rows.is_empty() {
                @if page_number == 0 {
                    (page::empty("This organization has no source connections yet."))
                } @else {
                    (page::empty("No more connections."))
                }
            } @else {
                div class="table-wrap" {
                    table {
                        caption class="sr-only" { "Source connections" }
                        thead { tr {
                            th scope="col" { "Connection" } th scope="col" { "Source" } th scope="col" { "Status" }
                            th scope="col" { "Schedule" } th scope="col" { "Last job" }
                            th scope="col" class="num" { "Entities" } th scope="col" { "Actions" }
                        } }
                        tbody { @for connection in &rows { (row(&signed, connection)) } }
                    }
                }
            }
            div class="pager" {
                @if page_number > 0 { a href={ "/console/connections?page=" (page_number - 1) } { "Previous page" } }
                @if more { a href={ "/console/connections?page=" (page_number + 1) } rel="next" { "Next page" } }
            }
        },
    ))
}

fn connection_id(signed: &Signed, id: &str) -> Result<Uuid, Response> {
    Uuid::parse_str(id).map_err(|_| {
        page::failure(
            signed,
            Failure::Api(StatusCode::NOT_FOUND, "No such source connection.".into()),
        )
    })
}

/// `POST /console/connections/{id}/run`: to the new job's page.
pub async fn run(
    State(console): State<Console>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Page {
    check_post(&signed, &headers, &form.csrf)?;
    let id = connection_id(&signed, &id)?;
    let job = or_failure(
        &signed,
        console
            .call(
                &signed,
                Method::POST,
                &format!("/source-connections/{id}/run"),
                None,
            )
            .await,
    )?;
    Ok(Redirect::to(&format!("/console/jobs/{id}/{}", page::text(job.get("id")))).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ScheduleForm {
    csrf: String,
    paused: String,
}

/// `POST /console/connections/{id}/schedule`: pauses or resumes it.
pub async fn schedule(
    State(console): State<Console>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ScheduleForm>,
) -> Page {
    check_post(&signed, &headers, &form.csrf)?;
    let id = connection_id(&signed, &id)?;
    let paused = form.paused == "true";
    let body = json!({"schedule": {"paused": paused}});
    or_failure(
        &signed,
        console
            .call(
                &signed,
                Method::PATCH,
                &format!("/source-connections/{id}"),
                Some(&body),
            )
            .await,
    )?;
    let done = if paused { "paused" } else { "resumed" };
    Ok(Redirect::to(&format!("/console/connections?done={done}#c-{id}")).into_response())
}
