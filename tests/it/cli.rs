//! The `syncway` command line (CONTRACT.md §8), run as a process against
//! the real services: the resource commands, `run --watch` with its exit
//! codes, and `syncway dev` bringing up a whole system in one process.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{DEADLINE, TestApp, TestEnv, eventually, free_port, id_of};

fn cli(url: &str, key: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_syncway-test-cli"));
    command
        .args(args)
        .env("SYNCWAY_URL", url)
        .env("SYNCWAY_API_KEY", key)
        .stdin(Stdio::null());
    command
}

/// Runs the CLI on a thread of its own (the API runs on the test's
/// runtime).
pub(crate) async fn run_cli(app: &TestApp, args: &[&str]) -> Output {
    let mut command = cli(&app.url, &app.key, args);
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the CLI's thread")
        .expect("running the CLI")
}

pub(crate) fn stdout_json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "the CLI failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout when piped")
}

#[tokio::test]
async fn the_cli_makes_collections_and_connections_and_watches_a_run_to_completion() {
    let app = TestApp::spawn().await;
    let made = stdout_json(
        &run_cli(
            &app,
            &["collections", "create", "Demo", "--readable-id", "cli-demo"],
        )
        .await,
    );
    assert_eq!(made["readable_id"], "cli-demo");
    let listed = stdout_json(&run_cli(&app, &["collections", "list"]).await);
    assert!(
        listed
            .as_array()
            .expect("a list")
            .iter()
            .any(|c| c["readable_id"] == "cli-demo")
    );
    let config = r#"{"entity_count": 300, "delay_ms_per_entity": 3}"#;
    let args = [
        "connections",
        "create",
        "--collection",
        "cli-demo",
        "--short-name",
        "stub",
        "--config",
        config,
    ];
    let connection = stdout_json(&run_cli(&app, &args).await);
    let id = connection["id"].as_str().expect("an id").to_owned();
    let got = stdout_json(&run_cli(&app, &["connections", "get", &id]).await);
    assert_eq!(got["config"]["entity_count"], 300);
    let listed =
        stdout_json(&run_cli(&app, &["connections", "list", "--collection", "cli-demo"]).await);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    let watched = run_cli(&app, &["run", &id, "--watch"]).await;
    assert!(
        watched.status.success(),
        "{}",
        String::from_utf8_lossy(&watched.stderr)
    );
    // Piped, --watch prints the job as each event gives it, one per line.
    let states: Vec<Value> = String::from_utf8_lossy(&watched.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let last = states.last().expect("a last state");
    assert_eq!(last["status"], "completed");
    assert_eq!(last["entities_inserted"], 300);
    assert!(
        states.iter().any(|s| {
            let inserted = s["entities_inserted"].as_i64().unwrap_or(0);
            inserted > 0 && inserted < 300
        }),
        "live counts while it ran: {states:?}"
    );
    let jobs = stdout_json(&run_cli(&app, &["jobs", &id]).await);
    assert_eq!(jobs[0]["id"], last["id"]);
    let job = last["id"].as_str().expect("the job's id");
    let one = stdout_json(&run_cli(&app, &["jobs", &id, job]).await);
    assert_eq!(one["status"], "completed");
    // The timeline, every page of it, as one body.
    let timeline = stdout_json(&run_cli(&app, &["jobs", &id, job, "--timeline"]).await);
    let kinds: Vec<&str> = timeline["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|item| item["kind"].as_str())
        .collect();
    assert_eq!(kinds.first(), Some(&"created"), "{timeline}");
    assert_eq!(kinds.last(), Some(&"completed"), "{timeline}");
    assert!(timeline["next"].is_null());
    let deleted = stdout_json(&run_cli(&app, &["connections", "delete", &id]).await);
    assert_eq!(deleted["id"], connection["id"]);
}

#[tokio::test]
async fn exit_codes_tell_usage_api_errors_unreachable_apis_and_cancelled_jobs_apart() {
    let app = TestApp::spawn().await;
    let missing = Uuid::new_v4().to_string();
    let api_error = run_cli(&app, &["run", &missing]).await;
    assert_eq!(api_error.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&api_error.stderr);
    assert!(
        stderr.contains("404") && stderr.contains("source connection not found"),
        "{stderr}"
    );
    let usage = run_cli(
        &app,
        &[
            "connections",
            "create",
            "--collection",
            "x",
            "--short-name",
            "stub",
            "--config",
            "{not json",
        ],
    )
    .await;
    assert_eq!(
        usage.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&usage.stderr)
    );
    let usage = run_cli(&app, &["run"]).await;
    assert_eq!(usage.status.code(), Some(2));
    let mut unreachable = cli("http://127.0.0.1:1", &app.key, &["jobs", &missing]);
    let unreachable = tokio::task::spawn_blocking(move || unreachable.output())
        .await
        .expect("the CLI's thread")
        .expect("running the CLI");
    assert_eq!(unreachable.status.code(), Some(1));

    // A job cancelled while watched: exit 4.
    let connection = app
        .stub_connection(
            json!({"entity_count": 100000, "delay_ms_per_entity": 1}),
            false,
        )
        .await;
    let connection_text = connection.to_string();
    let mut watch = cli(&app.url, &app.key, &["run", &connection_text, "--watch"]);
    let watching = tokio::task::spawn_blocking(move || watch.output());
    let jobs = eventually("the watched job to run", DEADLINE, || async {
        let jobs = app.jobs(connection).await;
        (jobs[0]["status"] == "running").then_some(jobs)
    })
    .await;
    let job = id_of(&jobs[0]).to_string();
    let cancelled = run_cli(&app, &["cancel", &connection_text, &job]).await;
    assert!(cancelled.status.success());
    let watched = tokio::time::timeout(DEADLINE, watching)
        .await
        .expect("the watch ends with the job")
        .expect("the CLI's thread")
        .expect("running the CLI");
    assert_eq!(
        watched.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&watched.stderr)
    );
    let last: Value = String::from_utf8_lossy(&watched.stdout)
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .expect("a last state");
    assert_eq!(last["status"], "cancelled");
}

/// Drops the database `syncway dev` made, when the test ends.
struct DropDatabase(String);

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let (client, connection) = tokio_postgres::connect(
                    &crate::harness::env::postgres_url("postgres"),
                    tokio_postgres::NoTls,
                )
                .await
                .map_err(std::io::Error::other)?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(std::io::Error::other)
            })
        })
        .join();
    }
}

/// Kills `syncway dev` if the test fails before it stopped it.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test]
async fn syncway_dev_creates_its_database_runs_api_and_workers_and_stops_on_ctrl_c() {
    // The namespace is the environment's (removed with it); the database is
    // one `syncway dev` must create.
    let env = TestEnv::new().await;
    let database = format!("{}_dev", env.database);
    let _drop = DropDatabase(database.clone());
    // The database URL comes from the file scripts/dev keeps (here in a
    // config directory of the test's own), as when the local server asks
    // for a password.
    let config = TempDir::new("dev-config");
    let url_file = config.0.join("syncway/database-url");
    std::fs::create_dir_all(url_file.parent().expect("a directory")).expect("config dir");
    std::fs::write(&url_file, crate::harness::env::postgres_url(&database)).expect("url file");
    let (http, metrics) = (free_port(), free_port());
    let mut dev = Command::new(env!("CARGO_BIN_EXE_syncway-test-cli"))
        .arg("dev")
        .env_remove("SYNCWAY_DATABASE__URL")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env("XDG_CONFIG_HOME", &config.0)
        .env("SYNCWAY_AMQP__NAMESPACE", &env.namespace)
        .env("SYNCWAY_API__LISTEN", format!("127.0.0.1:{http}"))
        .env("SYNCWAY_METRICS__LISTEN", format!("127.0.0.1:{metrics}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting syncway dev");
    let _kill = KillOnDrop(dev.id());
    let stderr = dev.stderr.take().expect("its stderr");
    let stderr = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let stdout = dev.stdout.take().expect("its stdout");
    let (lines, banner) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let (printed, rest) = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        while let Ok(line) = banner.recv_timeout(Duration::from_secs(60)) {
            let done = line.starts_with("Ctrl-C stops syncway dev");
            seen.push(line);
            if done {
                break;
            }
        }
        (seen, banner)
    })
    .await
    .expect("reading the banner");
    let banner_text = printed.join("\n");
    assert!(
        banner_text.contains("syncway dev is running"),
        "{banner_text}"
    );
    let url = format!("http://127.0.0.1:{http}");
    let key = syncway_cli::dev::DEV_KEY;
    assert!(
        banner_text.contains(key) && banner_text.contains(&url),
        "{banner_text}"
    );
    // The banner's commands work in a new terminal: it names where the
    // program is.
    let dir = std::path::Path::new(env!("CARGO_BIN_EXE_syncway-test-cli"))
        .parent()
        .expect("the program's directory")
        .display()
        .to_string();
    assert!(
        banner_text.contains(&format!("export PATH=\"{dir}:$PATH\"")),
        "{banner_text}"
    );

    let run = |args: Vec<String>| {
        let mut command = cli(
            &url,
            key,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        async move {
            tokio::task::spawn_blocking(move || command.output())
                .await
                .expect("the CLI's thread")
                .expect("running the CLI")
        }
    };
    let made = run(vec![
        "collections".into(),
        "create".into(),
        "Demo".into(),
        "--readable-id".into(),
        "demo".into(),
    ])
    .await;
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let connection = run(vec![
        "connections".into(),
        "create".into(),
        "--collection".into(),
        "demo".into(),
        "--short-name".into(),
        "stub".into(),
        "--config".into(),
        r#"{"entity_count": 1000}"#.into(),
    ])
    .await;
    let connection: Value = serde_json::from_slice(&connection.stdout).expect("the connection");
    let id = connection["id"].as_str().expect("an id").to_owned();
    let watched = run(vec!["run".into(), id, "--watch".into()]).await;
    assert!(
        watched.status.success(),
        "{}",
        String::from_utf8_lossy(&watched.stderr)
    );

    // One metrics listener for the whole process: the API's and the
    // workers' families, each once.
    let text = reqwest::get(format!("http://127.0.0.1:{metrics}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for family in [
        "syncway_api_http_requests_total",
        "syncway_worker_jobs_claimed_total",
        "syncway_queue_depth",
    ] {
        assert_eq!(
            text.matches(&format!("# TYPE {family} ")).count(),
            1,
            "{family} in {text}"
        );
    }
    assert!(
        text.contains("syncway_worker_jobs_claimed_total 1"),
        "{text}"
    );

    // Ctrl-C: everything stops, and the process exits 0.
    let pid = dev.id().to_string();
    let status = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exited = tokio::task::spawn_blocking(move || dev.wait());
    let status = tokio::time::timeout(DEADLINE, exited)
        .await
        .expect("syncway dev stops after Ctrl-C")
        .expect("the wait's thread")
        .expect("its status");
    assert!(status.success(), "{status:?}");
    let gone = reqwest::get(format!("{url}/healthz")).await;
    assert!(gone.is_err() || gone.is_ok_and(|r| r.status() != StatusCode::OK));

    // Quiet, honest logs from start to stop: no ERROR (not the readiness
    // polls, not the broker channels at shutdown), the development-key
    // warning once, and no colour codes in a pipe.
    let logs: Vec<String> = printed.into_iter().chain(rest.iter()).collect();
    let logs = logs.join("\n");
    let errors: Vec<&str> = logs.lines().filter(|line| line.contains("ERROR")).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(logs.matches("PUBLIC DEVELOPMENT KEY").count(), 1, "{logs}");
    assert!(!logs.contains('\u{1b}'), "colour codes in a pipe: {logs}");
    let stderr = stderr.join().expect("the stderr thread");
    assert!(
        stderr.contains(&format!("using the database URL in {}", url_file.display())),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
}

/// A directory of the test's own, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("syncway-{what}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
