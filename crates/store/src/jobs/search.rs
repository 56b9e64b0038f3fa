//! Job search (CONTRACT.md §11): an organization's jobs (or, for the
//! operator, every organization's) by filter, newest first, a page at a
//! time by keyset. Each filter is served by an index of V20: the statement
//! is written for the filters given, so that the planner sees exactly
//! them. Bulk actions match jobs by the same conditions.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use syncway_model::{JobStatus, JobTrigger, SourceConnectionJob};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::StoreError;
use crate::job_row::{JOB_COLUMNS, job_from_row};

/// What a search (or a bulk action) matches; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobFilter {
    /// The organization whose jobs; `None`: every organization's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_connection_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<JobTrigger>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_after: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_before: Option<DateTime<Utc>>,
}

/// Where a page starts: after the job with this creation time and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyset {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// A statement's parameters, numbered as they are added.
#[derive(Default)]
pub(crate) struct Params(Vec<Box<dyn ToSql + Sync + Send>>);

impl Params {
    /// Adds a value; returns its placeholder (`$n`).
    pub(crate) fn add(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(value));
        format!("${}", self.0.len())
    }

    pub(crate) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|value| value.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// The conditions of `filter` on `sync_jobs j`, joined by AND (`true` for
/// none).
pub(crate) fn conditions(filter: &JobFilter, params: &mut Params) -> String {
    let mut all = Vec::new();
    if let Some(organization) = filter.organization_id {
        all.push(format!("j.organization_id = {}", params.add(organization)));
    }
    if let Some(status) = filter.status {
        if status.is_terminal() {
            // The outcome, not the status, is indexed (V20).
            all.push(format!("j.outcome = {}", params.add(status.as_str())));
        } else {
            all.push(format!(
                "j.active AND j.status = {}",
                params.add(status.as_str())
            ));
        }
    }
    if let Some(connection) = filter.source_connection_id {
        all.push(format!(
            "j.source_connection_id = {}",
            params.add(connection)
        ));
    }
    if let Some(short_name) = &filter.short_name {
        all.push(format!("j.short_name = {}", params.add(short_name.clone())));
    }
    if let Some(trigger) = filter.trigger {
        all.push(format!("j.trigger = {}", params.add(trigger.as_str())));
    }
    if let Some(category) = &filter.error_category {
        all.push(format!(
            "j.error_category = {}",
            params.add(category.clone())
        ));
    }
    if let Some(after) = filter.created_after {
        all.push(format!("j.created_at >= {}", params.add(after)));
    }
    if let Some(before) = filter.created_before {
        all.push(format!("j.created_at < {}", params.add(before)));
    }
    if all.is_empty() {
        "true".to_owned()
    } else {
        all.join(" AND ")
    }
}

/// Up to `limit` jobs matching `filter`, newest first, after `after`; and
/// the keyset of the next page when there may be one.
pub async fn search(
    client: &impl GenericClient,
    filter: &JobFilter,
    after: Option<Keyset>,
    limit: i64,
) -> Result<(Vec<SourceConnectionJob>, Option<Keyset>), StoreError> {
    let mut params = Params::default();
    let mut condition = conditions(filter, &mut params);
    if let Some(after) = after {
        let created_at = params.add(after.created_at);
        let id = params.add(after.id);
        condition.push_str(&format!(" AND (j.created_at, j.id) < ({created_at}, {id})"));
    }
    let limit_param = params.add(limit + 1);
    let sql = format!(
        "SELECT {JOB_COLUMNS}, j.created_at AS job_created_at FROM sync_jobs j
         WHERE {condition}
         ORDER BY j.created_at DESC, j.id DESC LIMIT {limit_param}"
    );
    let statement = client.prepare_cached(&sql).await?;
    let rows = client.query(&statement, &params.refs()).await?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    let page = &rows[..rows.len().min(usize::try_from(limit).unwrap_or(usize::MAX))];
    let next = match (more, page.last()) {
        (true, Some(last)) => Some(Keyset {
            created_at: last.try_get("job_created_at")?,
            id: last.try_get("job_id")?,
        }),
        _ => None,
    };
    let jobs = page.iter().map(job_from_row).collect::<Result<_, _>>()?;
    Ok((jobs, next))
}
