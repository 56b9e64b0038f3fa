//! The webhook API's response shapes (Airweave's, CONTRACT.md §10).

use chrono::{DateTime, Utc};
use serde::Serialize;
use syncway_store::webhooks::messages::{AttemptRow, Message};
use syncway_store::webhooks::subscriptions::Subscription;
use uuid::Uuid;

#[derive(Debug, Serialize)]
pub struct SubscriptionBody {
    pub id: Uuid,
    pub url: String,
    pub filter_types: Vec<String>,
    pub disabled: bool,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub health_status: String,
    /// Why syncway disabled it (an extra field: 410 Gone, or failing for
    /// too long).
    pub disabled_reason: Option<String>,
}

impl From<Subscription> for SubscriptionBody {
    fn from(subscription: Subscription) -> Self {
        SubscriptionBody {
            id: subscription.id,
            url: subscription.url,
            filter_types: subscription.filter_types,
            disabled: subscription.disabled,
            description: subscription.description,
            created_at: subscription.created_at,
            updated_at: subscription.updated_at,
            health_status: subscription.health_status,
            disabled_reason: subscription.disabled_reason,
        }
    }
}

/// `GET /webhooks/subscriptions/{id}`: recent attempts, and the secret
/// when asked for.
#[derive(Debug, Serialize)]
pub struct SubscriptionDetail {
    #[serde(flatten)]
    pub subscription: SubscriptionBody,
    pub delivery_attempts: Vec<AttemptBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AttemptBody {
    pub id: Uuid,
    pub message_id: Uuid,
    pub endpoint_id: Uuid,
    pub response: String,
    /// 0 when the endpoint did not answer (or not yet).
    pub response_status_code: i32,
    pub status: String,
    pub timestamp: DateTime<Utc>,
    pub url: String,
}

impl From<AttemptRow> for AttemptBody {
    fn from(attempt: AttemptRow) -> Self {
        AttemptBody {
            id: attempt.id,
            message_id: attempt.message_id,
            endpoint_id: attempt.subscription_id,
            response: attempt.response,
            response_status_code: attempt.response_status_code.unwrap_or(0),
            status: attempt.status,
            timestamp: attempt.at,
            url: attempt.url,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct MessageBody {
    pub id: Uuid,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub timestamp: DateTime<Utc>,
    pub channels: Vec<String>,
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_attempts: Option<Vec<AttemptBody>>,
}

impl From<Message> for MessageBody {
    fn from(message: Message) -> Self {
        let family = message
            .event_type
            .split('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        MessageBody {
            id: message.id,
            channels: vec![message.event_type.clone()],
            tags: vec![family],
            event_type: message.event_type,
            payload: message.payload,
            timestamp: message.created_at,
            delivery_attempts: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RecoveryBody {
    pub id: Uuid,
    pub status: &'static str,
    /// How many failed deliveries were queued again (an extra field).
    pub recovered: u64,
}
