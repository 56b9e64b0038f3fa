//! Running syncs and watching their jobs.

use axum::Json;
use axum::extract::{Extension, RawQuery, State};
use axum::response::{IntoResponse, Response};
use syncway_model::{JobStatus, SourceConnectionJob};
use syncway_store::jobs::{self, Cancelled, TriggerRequest, Triggered};

use crate::AppState;
use crate::audit::{RecordedInStatement, RequestOrigin};
use crate::auth::{self, Caller, KeyDigest, Organization};
use crate::error::{ApiError, Result};
use crate::extract::{PathParams, QueryParams, path_uuid};
use crate::routes::table::Routes;

/// The run route; it authenticates the key itself (see [`crate::auth`]).
pub fn run_routes() -> Routes {
    Routes::new().post("/source-connections/{source_connection_id}/run", run)
}

pub fn routes() -> Routes {
    Routes::new()
        .get("/source-connections/{source_connection_id}/jobs", list)
        .get(
            "/source-connections/{source_connection_id}/jobs/{job_id}",
            find,
        )
        .post(
            "/source-connections/{source_connection_id}/jobs/{job_id}/cancel",
            cancel,
        )
}

pub(crate) const ACTIVE_JOB_CONFLICT: &str =
    "a sync job for this source connection is already pending, running or cancelling";

/// Maps a trigger's outcome to the API's answer.
pub(crate) fn triggered(
    state: &AppState,
    outcome: std::result::Result<Triggered, syncway_store::StoreError>,
) -> Result<SourceConnectionJob> {
    match outcome {
        Ok(Triggered::Created(job)) => {
            state.wake_relay();
            state.metrics().jobs_triggered.inc();
            Ok(*job)
        }
        Ok(Triggered::KeyInvalid) => Err(ApiError::InvalidKey),
        Ok(Triggered::ConnectionMissing) => Err(ApiError::not_found("source connection")),
        Ok(Triggered::AlreadyActive) => Err(ApiError::Conflict(ACTIVE_JOB_CONFLICT.into())),
        Ok(Triggered::NeedsReauth) => Err(ApiError::Conflict(
            "source connection needs re-authentication: update its credentials first".into(),
        )),
        Err(error) => Err(error.into()),
    }
}

/// `POST /source-connections/{id}/run?force_full_sync=bool&allow_mass_deletion=bool`
async fn run(
    State(state): State<AppState>,
    Extension(KeyDigest(digest)): Extension<KeyDigest>,
    origin: RequestOrigin,
    params: std::result::Result<PathParams, ApiError>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let request = params.and_then(|params| {
        let query = QueryParams::parse(query.as_deref())?;
        Ok(TriggerRequest {
            source_connection_id: path_uuid(&params, "source_connection_id")?,
            force_full_sync: query.bool("force_full_sync", false)?,
            allow_mass_deletion: query.bool("allow_mass_deletion", false)?,
            key_digest: digest.clone(),
            request_id: origin.request_id,
            client_address: origin.client_address,
        })
    });
    let request = match request {
        Ok(request) => request,
        Err(invalid) => {
            // Authentication comes before validation.
            auth::organization(&state, &digest).await?;
            return Err(invalid);
        }
    };
    let outcome = state
        .triggers()
        .submit(request)
        .await
        .map_err(|gone| ApiError::Internal(gone.into()))?;
    // The statement recorded every outcome but these in the audit log.
    let recorded = !matches!(outcome, Ok(Triggered::KeyInvalid) | Err(_));
    if recorded {
        state.key_usage().used(&state, digest);
    }
    let mut response = match triggered(&state, outcome) {
        Ok(job) => Json(job).into_response(),
        Err(error) => error.into_response(),
    };
    if recorded {
        response.extensions_mut().insert(RecordedInStatement);
    }
    Ok(response)
}

/// `GET /source-connections/{id}/jobs?limit=`
async fn list(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
    params: PathParams,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<SourceConnectionJob>>> {
    let connection = path_uuid(&params, "source_connection_id")?;
    let limit = QueryParams::parse(query.as_deref())?.int("limit", 100, 1, 1000)?;
    let client = state.pool().get().await?;
    if !syncway_store::connections::exists(&client, organization, connection).await? {
        return Err(ApiError::not_found("source connection"));
    }
    Ok(Json(jobs::list(&client, connection, limit).await?))
}

/// `GET /source-connections/{id}/jobs/{job_id}`
async fn find(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
    params: PathParams,
) -> Result<Json<SourceConnectionJob>> {
    let connection = path_uuid(&params, "source_connection_id")?;
    let job = path_uuid(&params, "job_id")?;
    let client = state.pool().get().await?;
    jobs::find(&client, organization, connection, job)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("sync job"))
}

/// `POST /source-connections/{id}/jobs/{job_id}/cancel`
async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: PathParams,
) -> Result<Json<SourceConnectionJob>> {
    let connection = path_uuid(&params, "source_connection_id")?;
    let job = path_uuid(&params, "job_id")?;
    let client = state.pool().get().await?;
    match jobs::cancel(
        &client,
        caller.organization,
        connection,
        job,
        Some(caller.key_id),
    )
    .await?
    {
        Cancelled::Done(job) => {
            if job.status == JobStatus::Cancelling {
                // The control message that tells its worker is in the outbox.
                state.wake_relay();
            }
            Ok(Json(*job))
        }
        Cancelled::NotFound => Err(ApiError::not_found("sync job")),
        Cancelled::Refused(status) => Err(ApiError::Conflict(format!(
            "sync job is already {status} and cannot be cancelled"
        ))),
    }
}
