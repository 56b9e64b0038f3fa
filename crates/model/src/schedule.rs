//! Schedules: a connection's cron in its time zone, the ticks it gives, the
//! stable jitter that spreads many connections' runs, and what a scheduler
//! does when a tick is due (which tick it runs for, how many it missed,
//! when the next is due). Pure: the clock is always an argument.
//!
//! Daylight saving time follows cron's convention (croner's): a job at a
//! fixed local time that a spring-forward skips runs once, at the first
//! instant after the gap; one that a fall-back repeats runs once. Interval
//! jobs (`*/5 * * * *`) follow real time.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use croner::Cron;
use uuid::Uuid;

/// The cron of a connection that is continuous and names none.
pub const DEFAULT_CONTINUOUS_CRON: &str = "*/5 * * * *";
/// The full-sync cadence of a continuous connection that names none.
pub const DEFAULT_FULL_SYNC_EVERY: Duration = Duration::from_secs(24 * 3600);
/// A schedule that is not continuous may not run more often than this.
pub const MIN_NON_CONTINUOUS_INTERVAL: Duration = Duration::from_secs(3600);
/// Missed ticks counted one by one, at most (a catch-up after a long
/// downtime counts this many, then jumps).
const MAX_COUNTED_MISSES: u64 = 10_000;

/// Why a schedule field is refused; each names the field it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("cron must be a 5-field expression (minute hour day month weekday): {0}")]
    Cron(String),
    #[error("timezone must be an IANA time zone name, such as Europe/Berlin: {0:?} is not one")]
    Timezone(String),
    #[error(
        "full_sync_every must be a duration such as \"24h\" or \"7d\", at least one minute: {0}"
    )]
    FullSyncEvery(String),
    #[error("a schedule that is not continuous may run at most hourly; {0} runs every {1} minutes")]
    TooFrequent(String, u64),
}

/// A parsed cron in its time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    timezone: Tz,
}

impl CronSchedule {
    /// Parses a 5-field cron and an IANA time zone name.
    pub fn parse(cron: &str, timezone: &str) -> Result<Self, ScheduleError> {
        let timezone: Tz = timezone
            .parse()
            .map_err(|_| ScheduleError::Timezone(timezone.to_owned()))?;
        if cron.split_whitespace().count() != 5 {
            return Err(ScheduleError::Cron(format!("{cron:?} has not 5 fields")));
        }
        let cron: Cron = cron
            .parse()
            .map_err(|error: croner::errors::CronError| ScheduleError::Cron(error.to_string()))?;
        let schedule = CronSchedule { cron, timezone };
        // A pattern that never matches (`0 0 30 2 *`) has no tick.
        if schedule.next_after(Utc::now()).is_none() {
            return Err(ScheduleError::Cron(
                "the expression never matches a date".into(),
            ));
        }
        Ok(schedule)
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.timezone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }

    /// The time from the first tick after `t` to the one after it.
    fn interval_after(&self, t: DateTime<Utc>) -> Option<TimeDelta> {
        let first = self.next_after(t)?;
        Some(self.next_after(first)? - first)
    }

    /// The shortest time between two ticks over the coming eight days
    /// (every weekday, and a DST change at most), for the hourly rule.
    pub fn shortest_interval(&self, from: DateTime<Utc>) -> Option<Duration> {
        let end = from + TimeDelta::days(8);
        let mut shortest: Option<TimeDelta> = None;
        let mut tick = self.next_after(from)?;
        for _ in 0..2000 {
            let Some(next) = self.next_after(tick) else {
                break;
            };
            let gap = next - tick;
            shortest = Some(shortest.map_or(gap, |s| s.min(gap)));
            if next > end {
                break;
            }
            tick = next;
        }
        shortest.and_then(|s| s.to_std().ok())
    }

    /// Refuses a schedule that is not continuous and runs more often than
    /// hourly, as Airweave does.
    pub fn check_frequency(&self, pattern: &str, continuous: bool) -> Result<(), ScheduleError> {
        if continuous {
            return Ok(());
        }
        match self.shortest_interval(Utc::now()) {
            Some(interval) if interval < MIN_NON_CONTINUOUS_INTERVAL => Err(
                ScheduleError::TooFrequent(pattern.to_owned(), interval.as_secs() / 60),
            ),
            _ => Ok(()),
        }
    }
}

/// A connection's stable delay after each tick: derived from its id, at
/// most `max` and at most a fifth of the schedule's interval, so that many
/// connections on one cron do not all fire in the same millisecond.
pub fn jitter(connection_id: Uuid, max: Duration, interval: TimeDelta) -> TimeDelta {
    let fifth = interval.num_milliseconds().max(0) / 5;
    let cap = i64::try_from(max.as_millis())
        .unwrap_or(i64::MAX)
        .min(fifth);
    if cap <= 0 {
        return TimeDelta::zero();
    }
    let bytes = connection_id.as_u128();
    // Fold the id's 128 bits: v7 ids share their leading (time) bits.
    let mixed = (bytes as u64) ^ ((bytes >> 64) as u64).rotate_left(17);
    let cap = u64::try_from(cap).unwrap_or(u64::MAX);
    TimeDelta::milliseconds(i64::try_from(mixed % cap).unwrap_or(0))
}

/// When a connection is next due: the cron tick and the tick plus jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub tick: DateTime<Utc>,
    pub due: DateTime<Utc>,
}

/// The plan for `tick`: it plus the connection's jitter for the schedule's
/// interval there.
fn plan_for(
    schedule: &CronSchedule,
    tick: DateTime<Utc>,
    connection_id: Uuid,
    max_jitter: Duration,
) -> Plan {
    let interval = schedule
        .interval_after(tick - TimeDelta::milliseconds(1))
        .unwrap_or_default();
    Plan {
        tick,
        due: tick + jitter(connection_id, max_jitter, interval),
    }
}

/// The first plan whose tick is after `after`.
pub fn plan_after(
    schedule: &CronSchedule,
    after: DateTime<Utc>,
    connection_id: Uuid,
    max_jitter: Duration,
) -> Option<Plan> {
    let tick = schedule.next_after(after)?;
    Some(plan_for(schedule, tick, connection_id, max_jitter))
}

/// What a scheduler does with a due connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Firing {
    /// The tick the job runs for: the latest one due by now.
    pub tick: DateTime<Utc>,
    /// Due ticks before it that never ran (downtime): collapsed into this
    /// one run.
    pub missed: u64,
    /// The next plan, due after `now`.
    pub next: Option<Plan>,
}

/// The connection waited for `waiting` (its stored tick), and it is `now`:
/// the run is for the latest tick due by now, the ones between are missed.
pub fn fire(
    schedule: &CronSchedule,
    waiting: DateTime<Utc>,
    now: DateTime<Utc>,
    connection_id: Uuid,
    max_jitter: Duration,
) -> Firing {
    let mut current = plan_for(schedule, waiting, connection_id, max_jitter);
    let mut missed = 0;
    loop {
        let Some(next) = plan_after(schedule, current.tick, connection_id, max_jitter) else {
            return Firing {
                tick: current.tick,
                missed,
                next: None,
            };
        };
        if next.due > now {
            return Firing {
                tick: current.tick,
                missed,
                next: Some(next),
            };
        }
        missed += 1;
        current = next;
        if missed >= MAX_COUNTED_MISSES {
            // A long downtime: count no further, jump to the latest tick
            // due by now.
            if let Some(latest) = latest_due(schedule, now, connection_id, max_jitter)
                && latest.tick > current.tick
            {
                current = latest;
            }
        }
    }
}

/// The latest plan due by `now` (its tick, and its jitter, over).
fn latest_due(
    schedule: &CronSchedule,
    now: DateTime<Utc>,
    connection_id: Uuid,
    max_jitter: Duration,
) -> Option<Plan> {
    let before = |t: DateTime<Utc>, inclusive: bool| {
        schedule
            .cron
            .find_previous_occurrence(&t.with_timezone(&schedule.timezone), inclusive)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    let latest = plan_for(schedule, before(now, true)?, connection_id, max_jitter);
    if latest.due <= now {
        return Some(latest);
    }
    Some(plan_for(
        schedule,
        before(latest.tick, false)?,
        connection_id,
        max_jitter,
    ))
}

/// Parses `full_sync_every` ("24h", "7d", "90m"): at least a minute.
pub fn parse_full_sync_every(text: &str) -> Result<Duration, ScheduleError> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|error| ScheduleError::FullSyncEvery(error.to_string()))?;
    if duration < Duration::from_secs(60) {
        return Err(ScheduleError::FullSyncEvery(format!(
            "{text:?} is under a minute"
        )));
    }
    if duration > Duration::from_secs(3650 * 24 * 3600) {
        return Err(ScheduleError::FullSyncEvery(format!(
            "{text:?} is over ten years"
        )));
    }
    Ok(duration)
}

/// `full_sync_every` as the API shows it: whole days (from two on), hours
/// or minutes.
pub fn format_full_sync_every(seconds: i64) -> String {
    match seconds {
        s if s % 86_400 == 0 && s > 86_400 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
