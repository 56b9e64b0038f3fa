//! The message that travels through RabbitMQ for each job.
//!
//! It is an IPC boundary between versions of syncway that may run side by
//! side during a rolling deploy: fields are never removed, and a new meaning
//! gets a new version number. Everything else about the job is read from
//! Postgres, so the message stays small and cannot go stale.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The only message version this build produces and understands.
pub const CURRENT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    /// Format version; see [`CURRENT_VERSION`].
    pub v: u32,
    pub job_id: Uuid,
    pub source_connection_id: Uuid,
}

/// Why a delivery is not a job message this build can run.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("message is not a JSON job message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("message has unknown version {0} (this build understands {CURRENT_VERSION})")]
    UnknownVersion(u32),
}

impl JobMessage {
    pub fn new(job_id: Uuid, source_connection_id: Uuid) -> Self {
        JobMessage {
            v: CURRENT_VERSION,
            job_id,
            source_connection_id,
        }
    }

    /// The JSON body: an integer and two UUIDs, written out directly (no
    /// serializer that could fail, and no silent empty body if it did).
    pub fn encode(&self) -> Vec<u8> {
        format!(
            r#"{{"v":{},"job_id":"{}","source_connection_id":"{}"}}"#,
            self.v, self.job_id, self.source_connection_id
        )
        .into_bytes()
    }

    /// Parses a delivery body, rejecting versions this build does not know.
    pub fn decode(body: &[u8]) -> Result<Self, MessageError> {
        decode_versioned(body)
    }
}

/// A message fanned out to every worker (the control exchange): whoever
/// runs the job stops it. Same versioning rules as [`JobMessage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlMessage {
    pub v: u32,
    pub cancel_job_id: Uuid,
}

impl ControlMessage {
    pub fn cancel(job_id: Uuid) -> Self {
        ControlMessage {
            v: CURRENT_VERSION,
            cancel_job_id: job_id,
        }
    }

    /// The JSON body, written out directly (see [`JobMessage::encode`]).
    pub fn encode(&self) -> Vec<u8> {
        format!(
            r#"{{"v":{},"cancel_job_id":"{}"}}"#,
            self.v, self.cancel_job_id
        )
        .into_bytes()
    }

    pub fn decode(body: &[u8]) -> Result<Self, MessageError> {
        decode_versioned(body)
    }
}

/// Where a message is published: the outbox records it with the message,
/// and the relay publishes accordingly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The jobs queue; with a delay, through a delay queue first (a retry).
    Jobs { delay_ms: u64 },
    /// The manual-runs queue (a job triggered through the API).
    Manual,
    /// Every worker, through the control exchange.
    Control,
}

/// Reads the version first, so that a message of an unknown version is
/// reported as such rather than as malformed.
fn decode_versioned<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, MessageError> {
    #[derive(Deserialize)]
    struct Version {
        v: u32,
    }
    let Version { v } = serde_json::from_slice(body)?;
    if v != CURRENT_VERSION {
        return Err(MessageError::UnknownVersion(v));
    }
    Ok(serde_json::from_slice(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips() {
        let message = JobMessage::new(Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(
            JobMessage::decode(&message.encode()).ok(),
            Some(message.clone())
        );
        // The hand-written body is what serde would write.
        assert_eq!(message.encode(), serde_json::to_vec(&message).unwrap());
        let control = ControlMessage::cancel(Uuid::new_v4());
        assert_eq!(
            ControlMessage::decode(&control.encode()).ok(),
            Some(control.clone())
        );
        assert_eq!(control.encode(), serde_json::to_vec(&control).unwrap());
    }

    #[test]
    fn garbage_and_unknown_versions_are_rejected() {
        assert!(matches!(
            JobMessage::decode(b"not json"),
            Err(MessageError::Malformed(_))
        ));
        assert!(matches!(
            JobMessage::decode(br#"{"v":1,"job_id":"nope"}"#),
            Err(MessageError::Malformed(_))
        ));
        let future = format!(
            r#"{{"v":2,"job_id":"{}","source_connection_id":"{}"}}"#,
            Uuid::new_v4(),
            Uuid::new_v4()
        );
        assert!(matches!(
            JobMessage::decode(future.as_bytes()),
            Err(MessageError::UnknownVersion(2))
        ));
    }
}
