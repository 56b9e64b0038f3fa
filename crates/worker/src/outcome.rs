//! How a run ends, and the outcomes a job is given: what the worker writes
//! as the job's end, and what it then does with the message.

use serde_json::json;
use syncway_connectors::SourceError;
use syncway_model::JobStatus;
use syncway_store::jobs::Outcome;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    Finished(JobStatus),
    LostLease,
    HandedBack,
    Stopped,
    /// A transient failure: another attempt is scheduled (delay queue).
    Retrying,
}

pub(crate) fn completed() -> Outcome {
    Outcome {
        status: JobStatus::Completed,
        error: None,
        error_category: None,
        error_details: None,
    }
}

pub(crate) fn cancelled() -> Outcome {
    Outcome {
        status: JobStatus::Cancelled,
        ..completed()
    }
}

pub(crate) fn permanent(message: String) -> Outcome {
    Outcome {
        status: JobStatus::Failed,
        error: Some(message),
        error_category: None,
        error_details: Some(json!({ "kind": "permanent" })),
    }
}

/// The outcome of a source failure: `failed`, with its kind and the
/// attempts made (and a credential failure's category).
pub(crate) fn failure(error: &SourceError, attempts: i32) -> Outcome {
    let mut details = json!({ "kind": error.kind(), "attempts": attempts });
    let mut outcome = Outcome {
        status: JobStatus::Failed,
        error: Some(error.to_string()),
        error_category: None,
        error_details: None,
    };
    match error {
        SourceError::Credentials { category, .. } => {
            outcome.error_category = Some(*category);
        }
        SourceError::Transient { retry_after, .. } => {
            if let Some(wait) = retry_after {
                details["retry_after_seconds"] = json!(wait.as_secs_f64());
            }
        }
        SourceError::Permanent(_) => {}
    }
    outcome.error_details = Some(details);
    outcome
}

/// A job whose attempts are used up before this run could start.
pub(crate) fn exhausted(attempts: i32) -> Outcome {
    Outcome {
        status: JobStatus::Failed,
        error: Some(syncway_model::attempts::exhausted(attempts)),
        error_category: None,
        error_details: Some(json!({ "kind": "exhausted", "attempts": attempts })),
    }
}
