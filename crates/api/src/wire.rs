//! Response bodies (the Airweave wire shapes) built from store rows.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use syncway_model::{ConnectionStatus, SourceConnectionJob};
use syncway_store::collections::Collection;
use syncway_store::connections::{Connection, ConnectionListItem};
use uuid::Uuid;

#[derive(Debug, Serialize)]
pub struct CollectionBody {
    pub id: Uuid,
    pub name: String,
    pub readable_id: String,
    pub organization_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
    pub status: &'static str,
    /// Present for SDK compatibility; syncway stores no vectors.
    pub vector_size: u32,
    pub embedding_model_name: &'static str,
}

impl From<Collection> for CollectionBody {
    fn from(collection: Collection) -> Self {
        CollectionBody {
            id: collection.id,
            name: collection.name,
            readable_id: collection.readable_id,
            organization_id: collection.organization_id,
            created_at: collection.created_at,
            modified_at: collection.modified_at,
            status: if collection.has_sources {
                "ACTIVE"
            } else {
                "NEEDS SOURCE"
            },
            vector_size: 0,
            embedding_model_name: "none",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct AuthBody {
    pub method: &'static str,
    pub authenticated: bool,
}

#[derive(Debug, Serialize)]
pub struct ScheduleBody {
    pub cron: Option<String>,
    pub timezone: String,
    /// The real next due time (UTC); null with no schedule, while paused,
    /// or while the connection waits for new credentials.
    pub next_run: Option<DateTime<Utc>>,
    pub continuous: bool,
    pub cursor_field: Option<String>,
    pub cursor_value: Option<Value>,
    pub full_sync_every: Option<String>,
    pub paused: bool,
}

#[derive(Debug, Serialize)]
pub struct SyncBody {
    pub total_runs: i64,
    pub successful_runs: i64,
    pub failed_runs: i64,
    pub last_job: Option<SourceConnectionJob>,
}

#[derive(Debug, Serialize)]
pub struct EntitiesBody {
    pub total_entities: i64,
}

#[derive(Debug, Serialize)]
pub struct SourceConnectionBody {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub short_name: String,
    pub readable_collection_id: String,
    pub status: ConnectionStatus,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
    pub auth: AuthBody,
    pub config: Value,
    pub schedule: ScheduleBody,
    pub sync: SyncBody,
    pub entities: EntitiesBody,
    pub error_category: Option<String>,
    pub error_message: Option<String>,
    /// The mass-deletion guard's fraction (syncway's own field).
    pub max_delete_fraction: f64,
}

impl From<Connection> for SourceConnectionBody {
    fn from(connection: Connection) -> Self {
        let status = ConnectionStatus::derive(
            connection.needs_reauth,
            connection.last_job.as_ref().map(|job| job.status),
        );
        // A connection in error shows its last job's failure.
        let (error_category, error_message) = if connection.needs_reauth {
            (
                connection.auth_error_category,
                connection.auth_error_message,
            )
        } else if status == ConnectionStatus::Error {
            let job = connection.last_job.as_ref();
            (
                job.and_then(|job| job.error_category.clone()),
                job.and_then(|job| job.error.clone()),
            )
        } else {
            (None, None)
        };
        SourceConnectionBody {
            id: connection.id,
            organization_id: connection.organization_id,
            name: connection.fields.name,
            description: connection.fields.description,
            short_name: connection.short_name,
            readable_collection_id: connection.readable_collection_id,
            status,
            created_at: connection.created_at,
            modified_at: connection.modified_at,
            auth: AuthBody {
                method: "direct",
                authenticated: !connection.needs_reauth,
            },
            config: connection.fields.config,
            schedule: ScheduleBody {
                next_run: connection
                    .fields
                    .schedule
                    .plan
                    .filter(|_| !connection.needs_reauth)
                    .map(|(_, due)| due),
                cron: connection.fields.schedule.cron,
                timezone: connection.fields.schedule.timezone,
                continuous: connection.fields.schedule.continuous,
                cursor_field: connection.fields.schedule.cursor_field,
                cursor_value: connection.cursor_value,
                full_sync_every: connection
                    .fields
                    .schedule
                    .full_sync_every_seconds
                    .map(syncway_model::schedule::format_full_sync_every),
                paused: connection.fields.schedule.paused,
            },
            sync: SyncBody {
                total_runs: connection.total_runs,
                successful_runs: connection.successful_runs,
                failed_runs: connection.failed_runs,
                last_job: connection.last_job,
            },
            entities: EntitiesBody {
                total_entities: connection.entity_count,
            },
            error_category,
            error_message,
            max_delete_fraction: connection.fields.max_delete_fraction,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SourceConnectionListItemBody {
    pub id: Uuid,
    pub name: String,
    pub short_name: String,
    pub readable_collection_id: String,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
    pub is_authenticated: bool,
    pub auth_method: &'static str,
    pub status: ConnectionStatus,
    pub entity_count: i64,
}

impl From<ConnectionListItem> for SourceConnectionListItemBody {
    fn from(item: ConnectionListItem) -> Self {
        SourceConnectionListItemBody {
            id: item.id,
            name: item.name,
            short_name: item.short_name,
            readable_collection_id: item.readable_collection_id,
            created_at: item.created_at,
            modified_at: item.modified_at,
            is_authenticated: !item.needs_reauth,
            auth_method: "direct",
            status: ConnectionStatus::derive(item.needs_reauth, item.last_job_status),
            entity_count: item.entity_count,
        }
    }
}
