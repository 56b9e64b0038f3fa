use super::*;

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().expect("an RFC 3339 time")
}

fn ticks_between(schedule: &CronSchedule, from: &str, to: &str) -> Vec<DateTime<Utc>> {
    let (mut t, end) = (utc(from), utc(to));
    let mut ticks = Vec::new();
    while let Some(next) = schedule.next_after(t) {
        if next >= end {
            break;
        }
        ticks.push(next);
        t = next;
    }
    ticks
}

#[test]
fn five_fields_and_a_real_time_zone_are_required() {
    assert!(CronSchedule::parse("*/5 * * * *", "UTC").is_ok());
    assert!(CronSchedule::parse("0 3 * * 1-5", "Europe/Berlin").is_ok());
    for cron in ["* * * *", "0 */5 * * * *", "61 * * * *", "every day", ""] {
        assert!(
            matches!(
                CronSchedule::parse(cron, "UTC"),
                Err(ScheduleError::Cron(_))
            ),
            "{cron:?} was accepted"
        );
    }
    assert!(matches!(
        CronSchedule::parse("0 0 30 2 *", "UTC"),
        Err(ScheduleError::Cron(_))
    ));
    assert!(matches!(
        CronSchedule::parse("* * * * *", "Mars/Olympus"),
        Err(ScheduleError::Timezone(_))
    ));
}

#[test]
fn a_spring_forward_day_runs_a_skipped_local_time_once_at_the_next_valid_instant() {
    // Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does
    // not exist that day.
    let schedule = CronSchedule::parse("30 2 * * *", "Europe/Berlin").expect("valid");
    let ticks = ticks_between(&schedule, "2026-03-28T00:00:00Z", "2026-03-31T00:00:00Z");
    assert_eq!(
        ticks,
        vec![
            utc("2026-03-28T01:30:00Z"), // 02:30 CET
            utc("2026-03-29T01:00:00Z"), // 03:00 CEST, the first instant after the gap
            utc("2026-03-30T00:30:00Z"), // 02:30 CEST
        ]
    );
}

#[test]
fn a_fall_back_day_runs_a_repeated_local_time_once() {
    // Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 comes
    // twice that day.
    let schedule = CronSchedule::parse("30 2 * * *", "Europe/Berlin").expect("valid");
    let ticks = ticks_between(&schedule, "2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z");
    assert_eq!(
        ticks,
        vec![
            utc("2026-10-24T00:30:00Z"), // 02:30 CEST
            utc("2026-10-25T00:30:00Z"), // 02:30 CEST, and not again at 02:30 CET
            utc("2026-10-26T01:30:00Z"), // 02:30 CET
        ]
    );
}

#[test]
fn interval_schedules_follow_real_time_across_dst() {
    let hourly = CronSchedule::parse("0 * * * *", "Europe/Berlin").expect("valid");
    // Local days of 23 and 25 hours.
    let spring = ticks_between(&hourly, "2026-03-28T22:59:59Z", "2026-03-29T22:00:00Z");
    assert_eq!(spring.len(), 23);
    let fall = ticks_between(&hourly, "2026-10-24T21:59:59Z", "2026-10-25T23:00:00Z");
    assert_eq!(fall.len(), 25);
    for ticks in [spring, fall] {
        assert!(
            ticks.windows(2).all(|w| w[1] - w[0] == TimeDelta::hours(1)),
            "one tick an hour: {ticks:?}"
        );
    }
}

#[test]
fn jitter_is_stable_bounded_and_spread() {
    let five_minutes = TimeDelta::minutes(5);
    let max = Duration::from_secs(30);
    let id = Uuid::now_v7();
    assert_eq!(jitter(id, max, five_minutes), jitter(id, max, five_minutes));
    let offsets: Vec<TimeDelta> = (0..10_000)
        .map(|_| jitter(Uuid::now_v7(), max, five_minutes))
        .collect();
    assert!(
        offsets
            .iter()
            .all(|o| *o >= TimeDelta::zero() && *o < TimeDelta::seconds(30))
    );
    // Spread over the window: every 3-second slice of it is used.
    for slice in 0..10 {
        let (from, to) = (
            TimeDelta::seconds(slice * 3),
            TimeDelta::seconds(slice * 3 + 3),
        );
        assert!(
            offsets.iter().any(|o| *o >= from && *o < to),
            "nothing in {from}..{to}"
        );
    }
    // Capped at a fifth of the interval.
    let minute = TimeDelta::minutes(1);
    assert!((0..1000).all(|_| jitter(Uuid::now_v7(), max, minute) < TimeDelta::seconds(12)));
    assert_eq!(jitter(id, Duration::ZERO, five_minutes), TimeDelta::zero());
}

#[test]
fn a_due_tick_runs_once_and_the_ones_missed_before_it_are_counted() {
    let schedule = CronSchedule::parse("*/5 * * * *", "UTC").expect("valid");
    let id = Uuid::now_v7();
    // On time.
    let on_time = fire(
        &schedule,
        utc("2026-12-01T10:00:00Z"),
        utc("2026-12-01T10:00:01Z"),
        id,
        Duration::ZERO,
    );
    assert_eq!(on_time.tick, utc("2026-12-01T10:00:00Z"));
    assert_eq!(on_time.missed, 0);
    assert_eq!(
        on_time.next.map(|p| p.due),
        Some(utc("2026-12-01T10:05:00Z"))
    );
    // After 17 minutes down: the 10:15 tick runs, 10:00, 10:05 and 10:10
    // were missed.
    let late = fire(
        &schedule,
        utc("2026-12-01T10:00:00Z"),
        utc("2026-12-01T10:17:00Z"),
        id,
        Duration::ZERO,
    );
    assert_eq!(late.tick, utc("2026-12-01T10:15:00Z"));
    assert_eq!(late.missed, 3);
    assert_eq!(late.next.map(|p| p.tick), Some(utc("2026-12-01T10:20:00Z")));
    // Weeks down: counting stops, the run is still the latest tick.
    let weeks = fire(
        &schedule,
        utc("2026-10-01T00:00:00Z"),
        utc("2026-12-01T10:17:00Z"),
        id,
        Duration::ZERO,
    );
    assert_eq!(weeks.tick, utc("2026-12-01T10:15:00Z"));
    assert!(weeks.missed >= MAX_COUNTED_MISSES);
    assert_eq!(
        weeks.next.map(|p| p.tick),
        Some(utc("2026-12-01T10:20:00Z"))
    );
}

#[test]
fn with_jitter_the_next_run_is_due_after_its_tick_by_the_connections_offset() {
    let schedule = CronSchedule::parse("*/5 * * * *", "UTC").expect("valid");
    let id = Uuid::now_v7();
    let max = Duration::from_secs(30);
    let plan = plan_after(&schedule, utc("2026-12-01T10:01:00Z"), id, max).expect("a tick");
    assert_eq!(plan.tick, utc("2026-12-01T10:05:00Z"));
    assert_eq!(plan.due - plan.tick, jitter(id, max, TimeDelta::minutes(5)));
    // Fired at its due time: the run is for that tick, the next is 10:10's.
    let firing = fire(&schedule, plan.tick, plan.due, id, max);
    assert_eq!((firing.tick, firing.missed), (plan.tick, 0));
    let next = firing.next.expect("a next tick");
    assert_eq!(next.tick, utc("2026-12-01T10:10:00Z"));
    assert!(next.due > plan.due);
}

#[test]
fn schedules_that_are_not_continuous_run_at_most_hourly() {
    let every_30 = CronSchedule::parse("*/30 * * * *", "UTC").expect("valid");
    assert_eq!(
        every_30.check_frequency("*/30 * * * *", false),
        Err(ScheduleError::TooFrequent("*/30 * * * *".into(), 30))
    );
    assert!(every_30.check_frequency("*/30 * * * *", true).is_ok());
    let two_at_nine = CronSchedule::parse("0,10 9 * * *", "UTC").expect("valid");
    assert!(two_at_nine.check_frequency("0,10 9 * * *", false).is_err());
    for cron in ["0 * * * *", "0 3 * * *", "15 4 * * 1"] {
        let schedule = CronSchedule::parse(cron, "Europe/Berlin").expect("valid");
        assert!(schedule.check_frequency(cron, false).is_ok(), "{cron}");
    }
}

#[test]
fn full_sync_every_is_a_human_duration_of_at_least_a_minute() {
    assert_eq!(
        parse_full_sync_every("24h"),
        Ok(Duration::from_secs(86_400))
    );
    assert_eq!(
        parse_full_sync_every("7d"),
        Ok(Duration::from_secs(7 * 86_400))
    );
    assert_eq!(parse_full_sync_every("90m"), Ok(Duration::from_secs(5400)));
    for bad in ["30s", "", "soon", "-1h", "100000d"] {
        assert!(
            matches!(
                parse_full_sync_every(bad),
                Err(ScheduleError::FullSyncEvery(_))
            ),
            "{bad:?} was accepted"
        );
    }
    assert_eq!(format_full_sync_every(86_400), "24h");
    assert_eq!(format_full_sync_every(7 * 86_400), "7d");
    assert_eq!(format_full_sync_every(7200), "2h");
    assert_eq!(format_full_sync_every(5400), "90m");
}
