//! The Celery peer (`../shared/peers/celery`): what a team would build
//! instead, doing the same three durable job-state writes per job, run by
//! `syncway-bench e2e` on the same Postgres and RabbitMQ in the same run,
//! so that the two figures can be divided. Celery 5.7 (prefork, 4
//! processes) in a virtualenv the bench makes once.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::processes::Services;

/// What drive.py printed.
#[derive(Debug, Clone, Copy)]
pub struct PeerRun {
    pub jobs_per_s: f64,
    pub trigger_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The virtualenv with Celery and psycopg, made when missing.
pub fn ensure_venv(venv: &Path) -> anyhow::Result<PathBuf> {
    let python = venv.join("bin/python");
    if !python.exists() {
        let made = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(venv)
            .status()?;
        anyhow::ensure!(made.success(), "python3 -m venv {} failed", venv.display());
    }
    let pip = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "celery==5.7.0",
            "psycopg[binary]",
        ])
        .status()?;
    anyhow::ensure!(
        pip.success(),
        "installing Celery into {} failed",
        venv.display()
    );
    // Absolute: the peer's processes run in the peer's folder.
    Ok(venv.canonicalize()?)
}

fn number_after(line: &str, marker: &str) -> Option<f64> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Parses `celery: N jobs, C clients, trigger R/s, end-to-end E jobs/s,
/// trigger->completed p50 X ms p99 Y ms`.
fn parse(line: &str) -> Option<PeerRun> {
    Some(PeerRun {
        trigger_per_s: number_after(line, "trigger ")?,
        jobs_per_s: number_after(line, "end-to-end ")?,
        p50_ms: number_after(line, "p50 ")?,
        p99_ms: number_after(line, "p99 ")?,
    })
}

/// A child process killed (with its prefork children) when dropped.
struct Worker(std::process::Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the broker shows a consumer on `queue` (the worker is up).
async fn wait_consumer(http: &reqwest::Client, queue: &str) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:15672/api/queues/%2f/{queue}");
    let started = Instant::now();
    loop {
        if let Ok(response) = http
            .get(&url)
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            && let Ok(body) = response.json::<serde_json::Value>().await
            && body["consumers"].as_i64().unwrap_or(0) > 0
        {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the Celery worker did not consume from {queue} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the peer: `jobs` jobs from `clients` clients, on a database and
/// queue of its own (removed afterwards).
pub async fn run(
    services: &Services,
    peers: &Path,
    venv: &Path,
    name: &str,
    jobs: usize,
    clients: usize,
) -> anyhow::Result<PeerRun> {
    let dir = peers
        .join("celery")
        .canonicalize()
        .context("the Celery peer's folder")?;
    let database = format!("{name}_peer");
    let admin_url = format!("{}/postgres", services.postgres);
    let (admin, connection) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await?;
    let queue = format!("{name}-celery");
    let dsn = format!("{}/{database}", services.postgres);
    let envs = [
        ("PG_DSN", dsn.as_str()),
        ("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
        ("PEER_QUEUE", queue.as_str()),
    ];
    let outcome = async {
        let worker = Command::new(venv.join("bin/celery"))
            .args([
                "-A", "tasks", "worker", "-Q", &queue, "-c", "4", "-P", "prefork", "-l", "WARNING",
            ])
            .current_dir(&dir)
            .envs(envs)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the Celery worker")?;
        let _worker = Worker(worker);
        let http = reqwest::Client::new();
        wait_consumer(&http, &queue).await?;
        let (venv, dir) = (venv.to_path_buf(), dir.clone());
        let envs: Vec<(String, String)> = envs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let output = tokio::task::spawn_blocking(move || {
            Command::new(venv.join("bin/python"))
                .arg("drive.py")
                .args([jobs.to_string(), clients.to_string()])
                .current_dir(dir)
                .envs(envs)
                .output()
        })
        .await??;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with("celery:"))
            .with_context(|| {
                format!(
                    "drive.py printed no result: {stdout}{}",
                    String::from_utf8_lossy(&output.stderr)
                )
            })?;
        let _ = http
            .delete(format!("http://127.0.0.1:15672/api/queues/%2f/{queue}"))
            .basic_auth("guest", Some("guest"))
            .send()
            .await;
        parse(line).with_context(|| format!("cannot read drive.py's line: {line}"))
    }
    .await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await;
    outcome
}

#[cfg(test)]
mod tests {
    #[test]
    fn drive_lines_are_read() {
        let line = "celery: 1000 jobs, 16 clients, trigger 2101/s, end-to-end 612 jobs/s, \
                    trigger->completed p50 120.5 ms p99 300.0 ms";
        let run = super::parse(line).expect("a run");
        assert_eq!(run.jobs_per_s, 612.0);
        assert_eq!(run.trigger_per_s, 2101.0);
        assert_eq!((run.p50_ms, run.p99_ms), (120.5, 300.0));
    }
}
