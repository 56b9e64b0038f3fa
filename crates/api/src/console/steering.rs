//! Pauses: the ones in force, setting one (with its reason) and lifting
//! one. An operator key pauses the deployment or any organization; a member
//! key its own organization, and lifts only its own pause.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::page::{self, or_failure};
use super::session::check_post;
use super::{Console, Failure, Page, Signed};

#[derive(Debug, Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

/// `GET /console/pauses`
pub async fn list(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<DoneQuery>,
) -> Page {
    let path = if signed.operator() {
        "/admin/pauses"
    } else {
        "/pauses"
    };
    let pauses = or_failure(
        &signed,
        console.call(&signed, Method::GET, path, None).await,
    )?;
    let pauses = pauses.as_array().cloned().unwrap_or_default();
    let notice = match query.done.as_deref() {
        Some("set") => Some("Pause set: nothing of its scope is claimed until it is lifted."),
        Some("lifted") => Some("Pause lifted: held jobs go out in turns across organizations."),
        _ => None,
    };
    Ok(page::render(
        &signed,
        "Pauses",
        html! {
            (page::notice(notice))
            @if pauses.is_empty() {
                (page::empty("No pause is in force."))
            } @else {
                div class="table-wrap" {
                    table {
                        caption class="sr-only" { "Pauses in force" }
                        thead { tr { th scope="col" { "Scope" } th scope="col" { "Organization" } th scope="col" { "Reason" } th scope="col" { "Since" } th scope="col" { "By" } th scope="col" { "Lift" } } }
                        tbody {
                            @for pause in &pauses {
                                @let scope = page::text(pause.get("scope"));
                                @let by_operator = pause.get("by_operator").and_then(Value::as_bool).unwrap_or(false);
                                tr {
                                    td { (scope) }
                                    td { (page::text(pause.get("organization_id"))) }
                                    td { (page::text(pause.get("reason"))) }
                                    td { (page::when_json(pause.get("created_at"))) }
                                    td { (page::text(pause.get("created_by_key_prefix"))) (if by_operator { " (operator)" } else { "" }) }
                                    td {
                                        @if signed.operator() || !by_operator {
                                            form method="post" action="/console/pauses/lift" data-confirm="Lift this pause? Held jobs start going out again." {
                                                (page::csrf(&signed))
                                                input type="hidden" name="scope" value=(scope);
                                                input type="hidden" name="organization_id" value=(page::text(pause.get("organization_id")));
                                                button type="submit" class="secondary" { "Lift" }
                                            }
                                        } @else {
                                            "only an operator key"
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Set a pause" }
            form class="stack" method="post" action="/console/pauses" {
                (page::csrf(&signed))
                @if signed.operator() {
                    label { "Scope"
                        select name="scope" {
                            option value="organization" { "One organization" }
                            option value="all" { "The whole deployment" }
                        }
                    }
                    label { "Organization id (for one organization)" input name="organization_id"; }
                } @else {
                    input type="hidden" name="scope" value="own";
                    p { "Pauses your organization: its jobs wait until the pause is lifted." }
                }
                label { "Reason" input name="reason" maxlength="500" required; }
                label { input type="checkbox" name="cancel_running" value="true"; " Also cancel the running jobs" }
                button type="submit" { "Pause" }
            }
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct PauseForm {
    csrf: String,
    scope: String,
    organization_id: Option<String>,
    reason: Option<String>,
    cancel_running: Option<String>,
}

fn target(signed: &Signed, scope: &str, organization: Option<&str>) -> Result<String, Response> {
    let bad = |message: &str| {
        page::failure(
            signed,
            Failure::Api(StatusCode::UNPROCESSABLE_ENTITY, message.into()),
        )
    };
    match (signed.operator(), scope) {
        (true, "all") => Ok("/admin/pauses/all".to_owned()),
        (true, "organization") => {
            let id = organization
                .and_then(|id| Uuid::parse_str(id.trim()).ok())
                .ok_or_else(|| bad("organization_id: Input should be a valid UUID"))?;
            Ok(format!("/admin/pauses/organizations/{id}"))
        }
        (_, "own" | "organization") => Ok("/pauses/organization".to_owned()),
        _ => Err(bad("scope: Input should be 'all' or 'organization'")),
    }
}

/// `POST /console/pauses`
pub async fn set(
    State(console): State<Console>,
    signed: Signed,
    headers: HeaderMap,
    Form(form): Form<PauseForm>,
) -> Page {
    check_post(&signed, &headers, &form.csrf)?;
    let path = target(&signed, &form.scope, form.organization_id.as_deref())?;
    let cancel = form.cancel_running.as_deref() == Some("true");
    let uri = format!("{path}?cancel_running={cancel}");
    let body = json!({"reason": form.reason.unwrap_or_default()});
    or_failure(
        &signed,
        console.call(&signed, Method::PUT, &uri, Some(&body)).await,
    )?;
    Ok(Redirect::to("/console/pauses?done=set").into_response())
}

#[derive(Debug, Deserialize)]
pub struct LiftForm {
    csrf: String,
    scope: String,
    organization_id: Option<String>,
}

/// `POST /console/pauses/lift`
pub async fn lift(
    State(console): State<Console>,
    signed: Signed,
    headers: HeaderMap,
    Form(form): Form<LiftForm>,
) -> Page {
    check_post(&signed, &headers, &form.csrf)?;
    let path = target(&signed, &form.scope, form.organization_id.as_deref())?;
    or_failure(
        &signed,
        console.call(&signed, Method::DELETE, &path, None).await,
    )?;
    Ok(Redirect::to("/console/pauses?done=lifted").into_response())
}
