//! The operator's pages: workers (from `/admin/queue`) and dead letters
//! (peek, and redrive once the count shown is confirmed).

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::page::{self, or_failure};
use super::session::check_post;
use super::{Console, Page, Signed};

fn workers_table(workers: &[Value], alive: bool) -> Markup {
    html! {
        div class="table-wrap" {
            table {
                caption class="sr-only" { (if alive { "Workers alive" } else { "Workers gone" }) }
                thead { tr {
                    th scope="col" { "Worker" } th scope="col" { "Host" } th scope="col" { "Last seen" }
                    @if alive {
                        th scope="col" { "Version" } th scope="col" { "Started" }
                        th scope="col" class="num" { "Jobs in flight" } th scope="col" class="num" { "Concurrency" }
                    }
                } }
                tbody {
                    @for worker in workers {
                        tr {
                            td { code { (page::text(worker.get("id"))) } }
                            td { (page::text(worker.get("hostname"))) }
                            td { (page::when_json(worker.get("last_seen"))) }
                            @if alive {
                                td { (page::text(worker.get("version"))) }
                                td { (page::when_json(worker.get("started_at"))) }
                                td class="num" { (page::text(worker.get("jobs_in_flight"))) }
                                td class="num" { (page::text(worker.get("concurrency"))) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /console/workers`
pub async fn workers(State(console): State<Console>, signed: Signed) -> Page {
    let queue = or_failure(
        &signed,
        console
            .call(&signed, Method::GET, "/admin/queue", None)
            .await,
    )?;
    let list = |name: &str| {
        queue
            .get(name)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (alive, gone) = (list("workers"), list("workers_gone"));
    Ok(page::render(
        &signed,
        "Workers",
        html! {
            p { (page::count(alive.len() as u64, "worker", "workers")) " alive (seen within their last three heartbeats)." }
            @if alive.is_empty() {
                (page::empty("No worker is alive: jobs wait in the queue until one starts."))
            } @else {
                (workers_table(&alive, true))
            }
            h2 { "Recently gone" }
            @if gone.is_empty() {
                (page::empty("No worker has gone quiet recently."))
            } @else {
                (workers_table(&gone, false))
            }
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct DoneQuery {
    /// How many dead letters a redrive just moved.
    redriven: Option<u64>,
}

async fn dead_letter_page(console: &Console, signed: &Signed, done: Option<&str>) -> Page {
    let dead = or_failure(
        signed,
        console
            .call(signed, Method::GET, "/admin/dead-letters?limit=50", None)
            .await,
    )?;
    let total = dead.get("total").and_then(Value::as_u64).unwrap_or(0);
    let items = dead
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(page::render(
        signed,
        "Dead letters",
        html! {
            (page::notice(done))
            p { strong data-figure="dead letters" { (page::count(total, "message", "messages")) } " in the dead-letter queue." }
            @if total == 0 {
                (page::empty("The dead-letter queue is empty: no job message has been given up on."))
            } @else {
                form method="post" action="/console/dead-letters/redrive"
                    data-confirm={ "Move " (page::count(total, "dead letter", "dead letters")) " back to the jobs queue?" } {
                    (page::csrf(signed))
                    input type="hidden" name="expected" value=(total);
                    button type="submit" class="danger" { "Redrive " (page::count(total, "dead letter", "dead letters")) }
                }
                h2 { "The first " (items.len()) }
                div class="table-wrap" {
                    table {
                        caption class="sr-only" { "Dead letters, oldest first" }
                        thead { tr { th scope="col" { "Dead-lettered" } th scope="col" { "Reason" } th scope="col" { "Message" } } }
                        tbody {
                            @for letter in &items {
                                tr {
                                    td { (page::when_json(letter.get("dead_lettered_at"))) }
                                    td { (page::text(letter.get("reason"))) }
                                    td { code { (page::text(letter.get("body"))) } }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// `GET /console/dead-letters`
pub async fn dead_letters(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<DoneQuery>,
) -> Page {
    let done = query.redriven.map(|n| {
        format!(
            "{} moved back to the jobs queue.",
            page::count(n, "dead letter", "dead letters")
        )
    });
    dead_letter_page(&console, &signed, done.as_deref()).await
}

#[derive(Debug, Deserialize)]
pub struct RedriveForm {
    csrf: String,
    expected: u64,
}

/// `POST /console/dead-letters/redrive`: only when the count confirmed is
/// still the count; otherwise the page again, with the new count to confirm.
pub async fn redrive(
    State(console): State<Console>,
    signed: Signed,
    headers: HeaderMap,
    Form(form): Form<RedriveForm>,
) -> Page {
    check_post(&signed, &headers, &form.csrf)?;
    let dead = or_failure(
        &signed,
        console
            .call(&signed, Method::GET, "/admin/dead-letters?limit=1", None)
            .await,
    )?;
    let total = dead.get("total").and_then(Value::as_u64).unwrap_or(0);
    if total != form.expected {
        let note = format!(
            "Nothing was moved: the count changed from {} to {total} since the page was shown. Check it and confirm again.",
            form.expected
        );
        return dead_letter_page(&console, &signed, Some(&note)).await;
    }
    let moved = or_failure(
        &signed,
        console
            .call(&signed, Method::POST, "/admin/dead-letters/redrive", None)
            .await,
    )?;
    let moved = moved.get("redriven").and_then(Value::as_u64).unwrap_or(0);
    Ok(Redirect::to(&format!("/console/dead-letters?redriven={moved}")).into_response())
}
