//! The overview: the deployment's figures now (from `/admin/queue`, as the
//! operator's JSON route gives them) and charts of the last 24 hours from
//! the per-minute samples; for a member key, its organization's jobs now
//! and its pauses.

use axum::extract::State;
use axum::http::Method;
use axum::response::Response;
use chrono::Utc;
use maud::{Markup, html};
use serde_json::Value;

use super::charts::{Series, chart};
use super::page::{self, or_failure};
use super::{Console, Page, Signed};

/// A count the member's overview reads: at most this many, shown as "N+".
const CAP: usize = 100;

fn card(label: &str, value: String) -> Markup {
    html! { div class="card" { dt { (label) } dd data-figure=(label) { (value) } } }
}

fn count(value: Option<&Value>) -> String {
    match value.and_then(Value::as_u64) {
        Some(n) => n.to_string(),
        None => "unknown".to_owned(),
    }
}

fn pauses_in_force(pauses: &Value) -> Markup {
    let items = pauses.as_array().cloned().unwrap_or_default();
    html! {
        h2 { "Pauses in force" }
        @if items.is_empty() {
            (page::empty("No pause is in force: jobs are claimed as workers free up."))
        } @else {
            ul {
                @for pause in &items {
                    li {
                        strong { (page::text(pause.get("scope"))) }
                        @if let Some(org) = pause.get("organization_id").and_then(Value::as_str) { " · organization " code { (org) } }
                        " · " (page::text(pause.get("reason"))) " · since " (page::when_json(pause.get("created_at")))
                    }
                }
            }
        }
    }
}

/// `GET /console/overview`
pub async fn show(State(console): State<Console>, signed: Signed) -> Page {
    if signed.operator() {
        operator(&console, &signed).await
    } else {
        member(&console, &signed).await
    }
}

async fn operator(console: &Console, signed: &Signed) -> Page {
    let queue = or_failure(
        signed,
        console
            .call(signed, Method::GET, "/admin/queue", None)
            .await,
    )?;
    let pauses = or_failure(
        signed,
        console
            .call(signed, Method::GET, "/admin/pauses", None)
            .await,
    )?;
    let samples = async {
        let client = console.state.pool().get().await?;
        syncway_store::console::samples(&client, 24).await
    }
    .await
    .map_err(|error| page::broken(error.into()))?;
    let ready = match (
        queue.pointer("/queue/ready").and_then(Value::as_u64),
        queue.pointer("/manual/ready").and_then(Value::as_u64),
    ) {
        (None, None) => "unknown".to_owned(),
        (a, b) => (a.unwrap_or(0) + b.unwrap_or(0)).to_string(),
    };
    let unacked = match (
        queue.pointer("/queue/unacked").and_then(Value::as_u64),
        queue.pointer("/manual/unacked").and_then(Value::as_u64),
    ) {
        (None, None) => "unknown".to_owned(),
        (a, b) => (a.unwrap_or(0) + b.unwrap_or(0)).to_string(),
    };
    let oldest = match queue
        .get("oldest_pending_age_seconds")
        .and_then(Value::as_f64)
    {
        Some(seconds) => format!("{seconds:.0} s"),
        None => "none pending".to_owned(),
    };
    let workers = queue
        .get("workers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let series = |title, summed, f: fn(&syncway_store::console::Sample) -> Option<f64>| Series {
        title,
        summed,
        points: samples
            .iter()
            .filter_map(|s| f(s).map(|v| (s.minute, v)))
            .collect(),
    };
    let charts = [
        series("Jobs started per minute", true, |s| Some(s.started as f64)),
        series("Jobs completed per minute", true, |s| {
            Some(s.completed as f64)
        }),
        series("Jobs failed per minute", true, |s| Some(s.failed as f64)),
        series("Queue ready", false, |s| s.ready.map(|v| v as f64)),
        series("Queue unacked", false, |s| s.unacked.map(|v| v as f64)),
        series("Oldest pending job (s)", false, |s| {
            s.oldest_pending_seconds
        }),
        series("Workers alive", false, |s| Some(s.workers as f64)),
        series("Dead letters", false, |s| s.dead_letters.map(|v| v as f64)),
        series("Outbox backlog", false, |s| Some(s.outbox_pending as f64)),
    ];
    // The last whole minute's sample, when it is that recent.
    let latest = samples
        .last()
        .filter(|s| Utc::now() - s.minute < chrono::Duration::minutes(3));
    let last_minute = |f: fn(&syncway_store::console::Sample) -> i64| {
        latest.map_or_else(|| "no sample yet".to_owned(), |s| f(s).to_string())
    };
    let now = Utc::now();
    Ok(page::render(
        signed,
        "Overview",
        html! {
            dl class="cards" {
                (card("Queue ready", ready))
                (card("Queue unacked", unacked))
                (card("Oldest pending", oldest))
                (card("Workers alive", workers.to_string()))
                (card("Dead letters", count(queue.get("dead_letter"))))
                (card("Outbox backlog", count(queue.get("outbox_pending"))))
                (card("Jobs pending", count(queue.pointer("/jobs/pending"))))
                (card("Jobs running", count(queue.pointer("/jobs/running"))))
                (card("Started, last minute", last_minute(|s| s.started)))
                (card("Completed, last minute", last_minute(|s| s.completed)))
                (card("Failed, last minute", last_minute(|s| s.failed)))
            }
            (pauses_in_force(&pauses))
            h2 { "Last 24 hours" }
            div class="charts" {
                @for series in &charts { (chart(series, now)) }
            }
        },
    ))
}

async fn capped(console: &Console, signed: &Signed, query: &str) -> Result<String, Response> {
    let uri = format!("/jobs?limit={CAP}&{query}");
    let page = or_failure(signed, console.call(signed, Method::GET, &uri, None).await)?;
    let n = page
        .get("items")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let more = page.get("next").is_some_and(|next| !next.is_null());
    Ok(if more { format!("{n}+") } else { n.to_string() })
}

async fn member(console: &Console, signed: &Signed) -> Page {
    let pauses = or_failure(
        signed,
        console.call(signed, Method::GET, "/pauses", None).await,
    )?;
    let since = (Utc::now() - chrono::Duration::hours(24))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let since = url::form_urlencoded::byte_serialize(since.as_bytes()).collect::<String>();
    let pending = capped(console, signed, "status=pending").await?;
    let running = capped(console, signed, "status=running").await?;
    let failed = capped(
        console,
        signed,
        &format!("status=failed&created_after={since}"),
    )
    .await?;
    let completed = capped(
        console,
        signed,
        &format!("status=completed&created_after={since}"),
    )
    .await?;
    Ok(page::render(
        signed,
        "Overview",
        html! {
            dl class="cards" {
                (card("Jobs pending", pending))
                (card("Jobs running", running))
                (card("Failed in the last 24 h", failed))
                (card("Completed in the last 24 h", completed))
            }
            p { a href="/console/jobs?status=failed" { "See failed jobs" } }
            (pauses_in_force(&pauses))
        },
    ))
}
