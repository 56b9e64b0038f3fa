//! A job's page: its counts, error, waiting reason and timeline, live
//! progress over its event stream, and the cancel and retry buttons.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde_json::Value;
use uuid::Uuid;

use super::page::{self, or_failure};
use super::session::{CsrfForm, check_post};
use super::{Console, Failure, Page, Signed};

fn ids(signed: &Signed, connection: &str, job: &str) -> Result<(Uuid, Uuid), Response> {
    match (Uuid::parse_str(connection), Uuid::parse_str(job)) {
        (Ok(connection), Ok(job)) => Ok((connection, job)),
        _ => Err(page::failure(
            signed,
            Failure::Api(StatusCode::NOT_FOUND, "No such job.".into()),
        )),
    }
}

const COUNTS: [(&str, &str); 4] = [
    ("Inserted", "entities_inserted"),
    ("Updated", "entities_updated"),
    ("Deleted", "entities_deleted"),
    ("Failed", "entities_failed"),
];

fn facts(job: &Value) -> Markup {
    html! {
        dl class="cards" {
            @for (label, field) in COUNTS {
                div class="card" { dt { (label) } dd data-field=(field) { (page::text(job.get(field))) } }
            }
        }
        dl class="facts" {
            dt { "Status" } dd { (page::status(&page::text(job.get("status")))) }
            dt { "Waiting" } dd data-field="waiting_reason" {
                (job.pointer("/waiting_reason/message").and_then(Value::as_str).unwrap_or("—"))
            }
            dt { "Trigger" } dd { (page::text(job.get("trigger"))) }
            dt { "Started" } dd data-field="started_at" { (page::when_json(job.get("started_at"))) }
            dt { "Finished" } dd data-field="completed_at" { (page::when_json(job.get("completed_at"))) }
            dt { "Error" } dd data-field="error" { (page::text(job.get("error"))) }
            dt { "Error category" } dd data-field="error_category" { (page::text(job.get("error_category"))) }
        }
    }
}

fn timeline(items: &[Value]) -> Markup {
    html! {
        h2 { "Timeline" }
        @if items.is_empty() {
            (page::empty("No events recorded for this job yet."))
        } @else {
            div class="table-wrap" {
                table {
                    caption class="sr-only" { "The job's timeline, oldest first" }
                    thead { tr { th scope="col" { "At" } th scope="col" { "Event" } th scope="col" { "Attempt" } th scope="col" { "Worker" } th scope="col" { "Message" } } }
                    tbody {
                        @for item in items {
                            tr {
                                td { (page::when_json(item.get("at"))) }
                                td { (page::text(item.get("kind"))) }
                                td class="num" { (page::text(item.get("attempt"))) }
                                td { (page::text(item.get("worker_id"))) }
                                td { (page::text(item.get("message"))) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The job and its timeline's first page: through the organization's own
/// routes, or, for an operator and another organization's job, through
/// `/admin/jobs/{id}` (then `foreign`: its live stream and buttons are that
/// organization's keys').
async fn read(
    console: &Console,
    signed: &Signed,
    connection: Uuid,
    job: Uuid,
) -> Result<(Value, Vec<Value>, bool), Response> {
    let own = format!("/source-connections/{connection}/jobs/{job}");
    let (base, found, foreign) = match console.call(signed, Method::GET, &own, None).await {
        Ok(found) => (own, found, false),
        Err(Failure::Api(StatusCode::NOT_FOUND, _)) if signed.operator() => {
            let any = format!("/admin/jobs/{job}");
            let found = or_failure(signed, console.call(signed, Method::GET, &any, None).await)?;
            (any, found, true)
        }
        Err(failure) => return Err(page::failure(signed, failure)),
    };
    if found.get("source_connection_id").and_then(Value::as_str)
        != Some(connection.to_string().as_str())
    {
        return Err(page::failure(
            signed,
            Failure::Api(StatusCode::NOT_FOUND, "No such job.".into()),
        ));
    }
    let steps = or_failure(
        signed,
        console
            .call(
                signed,
                Method::GET,
                &format!("{base}/timeline?limit=200"),
                None,
            )
            .await,
    )?;
    let steps = steps
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok((found, steps, foreign))
}

/// `GET /console/jobs/{connection_id}/{job_id}`
pub async fn show(
    State(console): State<Console>,
    signed: Signed,
    Path((connection, job)): Path<(String, String)>,
) -> Page {
    let (connection, job_id) = ids(&signed, &connection, &job)?;
    let (job, steps, foreign) = read(&console, &signed, connection, job_id).await?;
    let status = page::text(job.get("status"));
    let terminal = matches!(status.as_str(), "completed" | "failed" | "cancelled");
    let action = |verb: &str| format!("/console/jobs/{connection}/{job_id}/{verb}");
    Ok(page::render(
        &signed,
        "Job",
        html! {
            p { "Job " code { (job_id) } " of connection " a href={ "/console/connections#c-" (connection) } { code { (connection) } } }
            @if foreign {
                p class="notice" { "This job belongs to another organization: its live progress and buttons are for that organization's keys. Auto-refresh (above) follows it; bulk actions can act on it by its connection." }
            } @else if terminal {
                p id="live-state" class="rel" { "Finished" }
            } @else {
                p id="live-state" class="rel" data-events=(action("events")) aria-live="polite" { "Connecting…" }
            }
            (facts(&job))
            @if !foreign {
                div class="actions" {
                    @if matches!(status.as_str(), "pending" | "running") {
                        form method="post" action=(action("cancel")) data-confirm="Cancel this job? Work already committed stays." {
                            (page::csrf(&signed))
                            button type="submit" class="danger" { "Cancel job" }
                        }
                    }
                    @if terminal {
                        form method="post" action={ "/console/connections/" (connection) "/run" } data-confirm="Run this connection again now?" {
                            (page::csrf(&signed))
                            button type="submit" { "Retry (run again)" }
                        }
                    }
                }
            }
            (timeline(&steps))
        },
    ))
}

/// `POST …/cancel`
pub async fn cancel(
    State(console): State<Console>,
    signed: Signed,
    headers: HeaderMap,
    Path((connection, job)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Page {
    check_post(&signed, &headers, &form.csrf)?;
    let (connection, job) = ids(&signed, &connection, &job)?;
    let uri = format!("/source-connections/{connection}/jobs/{job}/cancel");
    or_failure(
        &signed,
        console.call(&signed, Method::POST, &uri, None).await,
    )?;
    Ok(Redirect::to(&format!("/console/jobs/{connection}/{job}")).into_response())
}

/// `GET …/events`: the job's event stream, through the session.
pub async fn events(
    State(console): State<Console>,
    signed: Signed,
    Path((connection, job)): Path<(String, String)>,
) -> Page {
    let (connection, job) = ids(&signed, &connection, &job)?;
    let uri = format!("/source-connections/{connection}/jobs/{job}/events");
    console
        .send(&signed, Method::GET, &uri, None)
        .await
        .map_err(|failure| page::failure(&signed, failure))
}
