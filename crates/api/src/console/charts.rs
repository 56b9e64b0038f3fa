//! Charts drawn on the server as SVG: a line over the last 24 hours of
//! per-minute samples, gaps where no sample was taken, and behind it a
//! table by hour for screen readers (and anyone who wants the numbers).

use std::fmt::Write;

use chrono::{DateTime, Duration, Timelike, Utc};
use maud::{Markup, html};

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 120.0;

/// One series: (minute, value), oldest first.
pub struct Series<'a> {
    pub title: &'a str,
    /// What an hour's row shows: the hour's sum (counts per minute) or its
    /// highest value (gauges).
    pub summed: bool,
    pub points: Vec<(DateTime<Utc>, f64)>,
}

fn polylines(points: &[(DateTime<Utc>, f64)], start: DateTime<Utc>, top: f64) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    let mut previous: Option<DateTime<Utc>> = None;
    for (at, value) in points {
        if previous.is_some_and(|p| *at - p > Duration::minutes(2)) && !current.is_empty() {
            lines.push(std::mem::take(&mut current));
        }
        let x = (*at - start).num_seconds() as f64 / 86_400.0 * WIDTH;
        let y = HEIGHT - (value / top) * (HEIGHT - 8.0) - 4.0;
        let _ = write!(current, "{x:.1},{y:.1} ");
        previous = Some(*at);
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// The series by hour: (hour, sum or highest).
fn by_hour(series: &Series<'_>) -> Vec<(DateTime<Utc>, f64)> {
    let mut rows: Vec<(DateTime<Utc>, f64)> = Vec::new();
    for (at, value) in &series.points {
        let hour = at
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(*at);
        match rows.last_mut() {
            Some((last, total)) if *last == hour => {
                *total = if series.summed {
                    *total + value
                } else {
                    total.max(*value)
                };
            }
            _ => rows.push((hour, *value)),
        }
    }
    rows
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// The chart with its table.
pub fn chart(series: &Series<'_>, now: DateTime<Utc>) -> Markup {
    let start = now - Duration::hours(24);
    let highest = series
        .points
        .iter()
        .map(|(_, v)| *v)
        .fold(0.0_f64, f64::max);
    // The scale: at least 1, so that a flat zero line sits at the bottom.
    let top = highest.max(1.0);
    let latest = series.points.last().map(|(_, v)| *v);
    let label = match latest {
        Some(latest) => format!(
            "{}: last 24 hours, latest {}, highest {}",
            series.title,
            number(latest),
            number(highest)
        ),
        None => format!("{}: no samples in the last 24 hours", series.title),
    };
    let hours = by_hour(series);
    html! {
        figure class="chart" {
            figcaption { (series.title) }
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(label) {
                line x1="0" y1=(HEIGHT - 4.0) x2=(WIDTH) y2=(HEIGHT - 4.0) stroke="#8a94a3" stroke-width="1" {}
                @for points in polylines(&series.points, start, top) {
                    polyline points=(points) fill="none" stroke="#0b5cad" stroke-width="2" {}
                }
                text x="4" y="14" font-size="12" fill="#4a5360" { "max " (number(highest)) }
            }
            @if series.points.is_empty() {
                p class="rel" { "No samples yet: the first is written a minute after the API starts." }
            } @else {
                details {
                    summary { "Table by hour" }
                    table {
                        caption class="sr-only" { (series.title) ", by hour (UTC)" }
                        thead { tr { th scope="col" { "Hour (UTC)" } th scope="col" class="num" { (if series.summed { "Total" } else { "Highest" }) } } }
                        tbody {
                            @for (hour, value) in &hours {
                                tr { td { (hour.format("%Y-%m-%d %H:00")) } td class="num" { (number(*value)) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_breaks_the_line_and_hours_sum() {
        let now = Utc::now()
            .with_minute(30)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .expect("a time");
        let points = vec![
            (now - Duration::minutes(10), 1.0),
            (now - Duration::minutes(9), 2.0),
            (now - Duration::minutes(3), 4.0),
        ];
        assert_eq!(polylines(&points, now - Duration::hours(24), 4.0).len(), 2);
        let series = Series {
            title: "t",
            summed: true,
            points,
        };
        assert_eq!(
            by_hour(&series),
            vec![(now.with_minute(0).expect("hour"), 7.0)]
        );
    }
}
