//! `syncway run CONNECTION [--full] [--watch]`: trigger a sync; with
//! `--watch`, follow its event stream to the end: a progress line with the
//! live counts on a terminal (each event's job as a JSON line when piped),
//! then the final status and duration. Exit 0 only when it completed.

use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::Value;

use crate::client::{Api, CallError};
use crate::commands::JOB_COLUMNS;
use crate::output::{Format, print};
use crate::{EXIT_JOB_FAILED, report};

fn counts(job: &Value) -> String {
    let waiting = job["waiting_reason"]["message"]
        .as_str()
        .map(|why| format!(" · waiting: {why}"))
        .unwrap_or_default();
    format!(
        "{} · {}{waiting}",
        job["status"].as_str().unwrap_or("?"),
        tally(job)
    )
}

fn tally(job: &Value) -> String {
    let count = |field: &str| job[field].as_i64().unwrap_or(0);
    format!(
        "inserted {} · updated {} · deleted {} · failed {}",
        count("entities_inserted"),
        count("entities_updated"),
        count("entities_deleted"),
        count("entities_failed"),
    )
}

pub async fn run(api: &Api, format: Format, connection: &str, full: bool, watch: bool) -> ExitCode {
    let path = format!("/source-connections/{connection}/run?force_full_sync={full}");
    let answer = match api.call(Method::POST, &path, None).await {
        Ok(answer) => answer,
        Err(error) => return report(&error),
    };
    if !watch {
        print(format, &answer, JOB_COLUMNS);
        return ExitCode::SUCCESS;
    }
    let job: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
    let Some(id) = job["id"].as_str() else {
        return report(&CallError::Transport(format!(
            "the API's answer has no job id: {answer}"
        )));
    };
    let bar = (format == Format::Human).then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar.set_message(format!("job {id}: {}", counts(&job)));
        bar
    });
    let mut last = job.clone();
    let events = format!("/source-connections/{connection}/jobs/{id}/events");
    let followed = api
        .follow(&events, |event| {
            let Ok(state) = serde_json::from_str::<Value>(&event.data) else {
                return true;
            };
            match (&bar, format) {
                (Some(bar), _) => bar.set_message(format!("job {id}: {}", counts(&state))),
                (None, Format::Json) => println!("{}", event.data),
                (None, _) => {}
            }
            last = state;
            event.event.as_deref() != Some("end")
        })
        .await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    if let Err(error) = followed {
        return report(&error);
    }
    let status = last["status"].as_str().unwrap_or("unknown");
    if format == Format::Human {
        let duration = last["duration_seconds"]
            .as_f64()
            .map_or_else(|| "-".to_owned(), |seconds| format!("{seconds:.1} s"));
        println!("job {id} {status} in {duration}: {}", tally(&last));
        if let Some(error) = last["error"].as_str() {
            println!("error: {error}");
        }
    }
    if format == Format::Id {
        println!("{id}");
    }
    if status == "completed" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_JOB_FAILED)
    }
}
