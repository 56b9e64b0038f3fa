//! The `schedule` of a connection's create and PATCH bodies (CONTRACT.md
//! §5): validated, defaults filled in, and the next run planned, so that
//! `next_run` is real the moment the connection is written.

use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Deserializer};
use syncway_model::schedule::{
    self, CronSchedule, DEFAULT_CONTINUOUS_CRON, DEFAULT_FULL_SYNC_EVERY, ScheduleError,
};
use syncway_store::connections::Schedule;
use uuid::Uuid;

use crate::error::{ApiError, Result};

/// `Some(None)` for an explicit `null`, `None` for an absent field.
fn explicit<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleInput {
    #[serde(default, deserialize_with = "explicit")]
    cron: Option<Option<String>>,
    timezone: Option<String>,
    continuous: Option<bool>,
    cursor_field: Option<String>,
    #[serde(default, deserialize_with = "explicit")]
    full_sync_every: Option<Option<String>>,
    paused: Option<bool>,
    /// Shown in the connection body; accepted (and ignored) so that a body
    /// read back can be sent again.
    #[serde(default)]
    #[allow(dead_code)]
    next_run: Option<serde_json::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    cursor_value: Option<serde_json::Value>,
}

fn invalid(field: &str, error: &ScheduleError) -> ApiError {
    ApiError::invalid(
        &["body", "schedule", field],
        error.to_string(),
        "value_error",
    )
}

/// Applies `input` to `schedule` (a new connection's when `creating`),
/// fills in the defaults, checks the whole, and plans the next run when the
/// timing changed. Returns whether it did (the plan is then to be stored).
pub fn apply(
    schedule: &mut Schedule,
    input: Option<ScheduleInput>,
    connection_id: Uuid,
    max_jitter: Duration,
    creating: bool,
) -> Result<bool> {
    let input = input.unwrap_or_default();
    let before = schedule.clone();
    if let Some(continuous) = input.continuous {
        schedule.continuous = continuous;
    }
    if let Some(cursor_field) = input.cursor_field {
        schedule.cursor_field = Some(cursor_field);
    }
    if let Some(timezone) = input.timezone {
        schedule.timezone = timezone;
    }
    if let Some(paused) = input.paused {
        schedule.paused = paused;
    }
    // A connection that is (or becomes) continuous and names no cron gets
    // the default one; an explicit null means no schedule.
    let became_continuous = schedule.continuous && (creating || !before.continuous);
    match input.cron {
        Some(cron) => schedule.cron = cron.map(|c| c.trim().to_owned()),
        None if became_continuous && schedule.cron.is_none() => {
            schedule.cron = Some(DEFAULT_CONTINUOUS_CRON.to_owned());
        }
        None => {}
    }
    match input.full_sync_every {
        Some(Some(text)) => {
            let every = schedule::parse_full_sync_every(&text)
                .map_err(|error| invalid("full_sync_every", &error))?;
            schedule.full_sync_every_seconds =
                Some(i64::try_from(every.as_secs()).unwrap_or(i64::MAX));
        }
        Some(None) => schedule.full_sync_every_seconds = None,
        None if became_continuous && schedule.full_sync_every_seconds.is_none() => {
            schedule.full_sync_every_seconds =
                Some(i64::try_from(DEFAULT_FULL_SYNC_EVERY.as_secs()).unwrap_or(i64::MAX));
        }
        None => {}
    }
    // The time zone is checked whether or not there is a cron.
    if let Err(error) = CronSchedule::parse("* * * * *", &schedule.timezone) {
        return Err(invalid("timezone", &error));
    }
    let parsed = match &schedule.cron {
        Some(cron) => {
            let parsed =
                CronSchedule::parse(cron, &schedule.timezone).map_err(|error| match error {
                    ScheduleError::Timezone(_) => invalid("timezone", &error),
                    _ => invalid("cron", &error),
                })?;
            parsed
                .check_frequency(cron, schedule.continuous)
                .map_err(|error| invalid("cron", &error))?;
            Some(parsed)
        }
        None => None,
    };
    let timing_changed = creating
        || schedule.cron != before.cron
        || schedule.timezone != before.timezone
        || schedule.paused != before.paused;
    if timing_changed {
        schedule.plan = match (&parsed, schedule.paused) {
            (Some(parsed), false) => {
                schedule::plan_after(parsed, Utc::now(), connection_id, max_jitter)
                    .map(|plan| (plan.tick, plan.due))
            }
            _ => None,
        };
    }
    Ok(timing_changed)
}
