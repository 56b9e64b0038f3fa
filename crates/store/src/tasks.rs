//! Bulk tasks (V20, CONTRACT.md §11): a bulk action over a job filter,
//! worked through on the server in batches. What the filter matched when
//! the task was submitted is stored as its items (jobs for `cancel`,
//! connections for `retry` and `run`); each batch takes some items and
//! acts on them in one transaction, so a task is never one long
//! transaction, and a process that dies mid-task leaves the rest for
//! another to take over.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use syncway_model::JobMessage;
use uuid::Uuid;

use crate::StoreError;
use crate::jobs::search::{JobFilter, Params, conditions};

/// What a bulk action does to what it matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Cancels the matching pending and running jobs.
    Cancel,
    /// Runs again the connections of matching failed jobs whose newest job
    /// it is (a connection retried since is left).
    Retry,
    /// Runs each matching job's connection once (those with no active job).
    Run,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Cancel => "cancel",
            Action::Retry => "retry",
            Action::Run => "run",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "cancel" => Some(Action::Cancel),
            "retry" => Some(Action::Retry),
            "run" => Some(Action::Run),
            _ => None,
        }
    }
}

/// A task as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: Uuid,
    pub organization_id: Option<Uuid>,
    pub action: String,
    pub status: String,
    pub matched: i64,
    pub done: i64,
    pub failed: i64,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The items `action` would act on under `filter`: `SELECT target` (in a
/// fixed order), with its parameters. Retry and run go through the
/// connections (one probe of a connection's jobs each), never through
/// every matching job of a long history.
fn matching(action: Action, filter: &JobFilter) -> (String, Params) {
    let mut params = Params::default();
    let condition = conditions(filter, &mut params);
    let mut owner = || match filter.organization_id {
        Some(organization) => format!("c.organization_id = {}", params.add(organization)),
        None => "true".to_owned(),
    };
    let sql = match action {
        Action::Cancel => format!(
            "SELECT j.id AS target FROM sync_jobs j
             WHERE {condition} AND j.active AND j.status IN ('pending', 'running')
             ORDER BY j.created_at, j.id"
        ),
        // The connection's newest job is a matching failed one.
        Action::Retry => format!(
            "SELECT c.id AS target FROM source_connections c
             CROSS JOIN LATERAL (
                 SELECT * FROM sync_jobs newest WHERE newest.source_connection_id = c.id
                 ORDER BY newest.created_at DESC, newest.id DESC LIMIT 1) j
             WHERE {} AND j.outcome = 'failed' AND {condition}
             ORDER BY 1",
            owner()
        ),
        Action::Run => format!(
            "SELECT c.id AS target FROM source_connections c
             WHERE {}
               AND EXISTS (SELECT 1 FROM sync_jobs j
                           WHERE j.source_connection_id = c.id AND {condition})
               AND NOT EXISTS (SELECT 1 FROM sync_jobs a
                               WHERE a.source_connection_id = c.id AND a.active)
             ORDER BY 1",
            owner()
        ),
    };
    (sql, params)
}

/// How many items `action` would act on now (a dry run).
pub async fn count(
    client: &impl GenericClient,
    action: Action,
    filter: &JobFilter,
) -> Result<i64, StoreError> {
    let (sql, params) = matching(action, filter);
    let row = client
        .query_one(
            &format!("SELECT count(*) FROM ({sql}) matched"),
            &params.refs(),
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Submits a task: stores what it matches now as its items, in one
/// statement. `organization_id`: the submitting key's organization (the
/// filter's too), `None` for the operator's. Returns the task and how many
/// it matched.
pub async fn submit(
    client: &impl GenericClient,
    organization_id: Option<Uuid>,
    action: Action,
    filter: &JobFilter,
) -> Result<(Uuid, i64), StoreError> {
    let (sql, mut params) = matching(action, filter);
    let id = Uuid::now_v7();
    let id_param = params.add(id);
    let org_param = params.add(organization_id);
    let action_param = params.add(action.as_str());
    let filter_json = serde_json::to_value(filter)
        .map_err(|error| StoreError::Corrupt(format!("a job filter: {error}")))?;
    let filter_param = params.add(filter_json);
    let statement = format!(
        "WITH matched AS ({sql}), items AS (
             INSERT INTO bulk_task_items (task_id, n, target)
             SELECT {id_param}, row_number() OVER (), target FROM matched
             RETURNING 1
         )
         INSERT INTO bulk_tasks (id, organization_id, action, filter, matched, status, finished_at)
         SELECT {id_param}, {org_param}, {action_param}, {filter_param}, count(*),
                CASE WHEN count(*) = 0 THEN 'completed' ELSE 'running' END,
                CASE WHEN count(*) = 0 THEN now() END
         FROM items
         RETURNING matched"
    );
    let row = client.query_one(&statement, &params.refs()).await?;
    Ok((id, row.try_get("matched")?))
}

const TASK_COLUMNS: &str =
    "id, organization_id, action, status, matched, done, failed, created_at, finished_at";

fn task_from_row(row: &tokio_postgres::Row) -> Result<Task, StoreError> {
    Ok(Task {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        action: row.try_get("action")?,
        status: row.try_get("status")?,
        matched: row.try_get("matched")?,
        done: row.try_get("done")?,
        failed: row.try_get("failed")?,
        created_at: row.try_get("created_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

/// A task; with `organization_id`, only one that organization submitted.
pub async fn get(
    client: &impl GenericClient,
    id: Uuid,
    organization_id: Option<Uuid>,
) -> Result<Option<Task>, StoreError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {TASK_COLUMNS} FROM bulk_tasks
                 WHERE id = $1 AND ($2::uuid IS NULL OR organization_id = $2)"
            ),
            &[&id, &organization_id],
        )
        .await?;
    row.as_ref().map(task_from_row).transpose()
}

static RUN_MANY: LazyLock<String> =
    LazyLock::new(|| crate::jobs::with_trigger_rule(include_str!("jobs/run_many.sql")));

/// Works one batch of up to `batch` items of the task, in one
/// transaction; `key_id`: the key that submitted it (cancels name it).
/// Returns whether the task is still running.
pub async fn work(
    client: &mut deadpool_postgres::Object,
    task_id: Uuid,
    batch: i64,
    key_id: Option<Uuid>,
) -> Result<bool, StoreError> {
    let transaction = client.transaction().await?;
    let Some(task) = transaction
        .query_opt(
            "UPDATE bulk_tasks SET worked_at = now() WHERE id = $1 AND status = 'running'
             RETURNING organization_id, action",
            &[&task_id],
        )
        .await?
    else {
        return Ok(false);
    };
    let organization: Option<Uuid> = task.try_get("organization_id")?;
    let action = Action::parse(task.try_get("action")?)
        .ok_or_else(|| StoreError::Corrupt("a bulk task's action".into()))?;
    let rows = transaction
        .query(
            "DELETE FROM bulk_task_items WHERE (task_id, n) IN (
                 SELECT task_id, n FROM bulk_task_items WHERE task_id = $1
                 ORDER BY n LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING target",
            &[&task_id, &batch],
        )
        .await?;
    let targets: Vec<Uuid> = rows
        .iter()
        .map(|row| row.try_get("target"))
        .collect::<Result<_, _>>()?;
    let acted = match action {
        Action::Cancel => crate::jobs::cancel_many(&transaction, &targets, organization, key_id)
            .await?
            .len(),
        Action::Retry | Action::Run => {
            let job_ids: Vec<Uuid> = targets.iter().map(|_| Uuid::now_v7()).collect();
            let messages: Vec<Vec<u8>> = targets
                .iter()
                .zip(&job_ids)
                .map(|(connection, job)| JobMessage::new(*job, *connection).encode())
                .collect();
            transaction
                .query(
                    RUN_MANY.as_str(),
                    &[&targets, &job_ids, &messages, &organization],
                )
                .await?
                .len()
        }
    };
    let acted = i64::try_from(acted).unwrap_or(i64::MAX);
    let taken = i64::try_from(targets.len()).unwrap_or(i64::MAX);
    let row = transaction
        .query_one(
            "UPDATE bulk_tasks SET done = done + $2, failed = failed + $3,
                 status = CASE WHEN EXISTS (SELECT 1 FROM bulk_task_items WHERE task_id = $1)
                               THEN 'running' ELSE 'completed' END,
                 finished_at = CASE WHEN EXISTS (SELECT 1 FROM bulk_task_items WHERE task_id = $1)
                                    THEN NULL ELSE now() END
             WHERE id = $1 RETURNING status",
            &[&task_id, &acted, &(taken - acted)],
        )
        .await?;
    let running = row.try_get::<_, &str>("status")? == "running";
    transaction.commit().await?;
    Ok(running)
}

/// Takes over running tasks nobody has worked on for `quiet`: their
/// process died or hung. Returns their ids (this caller works them now).
pub async fn adopt_quiet(
    client: &impl GenericClient,
    quiet: std::time::Duration,
) -> Result<Vec<Uuid>, StoreError> {
    let rows = client
        .query(
            "UPDATE bulk_tasks SET worked_at = now()
             WHERE id IN (SELECT id FROM bulk_tasks
                          WHERE status = 'running'
                            AND worked_at < now() - make_interval(secs => $1)
                          FOR UPDATE SKIP LOCKED)
             RETURNING id",
            &[&quiet.as_secs_f64()],
        )
        .await?;
    rows.iter().map(|row| Ok(row.try_get("id")?)).collect()
}
