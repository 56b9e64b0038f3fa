//! The environment a benchmark runs in: a fresh database and namespace, the
//! release binaries as child processes, and the limit scripts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_postgres::NoTls;

/// Where the services are, and the machine-limit scripts.
#[derive(Debug, Clone, clap::Args)]
pub struct Services {
    /// Postgres server (without database).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub postgres: String,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub amqp: String,
    /// The folder of the machine-limit scripts.
    #[arg(long, default_value = "../shared/limits")]
    pub limits: PathBuf,
}

pub struct BenchEnv {
    pub server: String,
    pub database: String,
    pub namespace: String,
    pub amqp: String,
    children: Vec<(String, Child)>,
    /// The metrics URLs of the API processes started.
    pub api_metrics: Vec<String>,
    /// Where the children's logs go (at `info`), when kept.
    logs: Option<PathBuf>,
    spawned: usize,
}

impl BenchEnv {
    pub async fn create(services: &Services) -> anyhow::Result<Self> {
        let (server, amqp) = (&services.postgres, &services.amqp);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let env = BenchEnv {
            server: server.trim_end_matches('/').to_owned(),
            database: format!("syncway_bench_{}", &id[..12]),
            namespace: format!("bench-{}", &id[..12]),
            amqp: amqp.to_owned(),
            children: Vec::new(),
            api_metrics: Vec::new(),
            logs: None,
            spawned: 0,
        };
        env.admin()
            .await?
            .batch_execute(&format!("CREATE DATABASE {}", env.database))
            .await
            .context("creating the benchmark database")?;
        Ok(env)
    }

    pub fn database_url(&self) -> String {
        format!("{}/{}", self.server, self.database)
    }

    async fn admin(&self) -> anyhow::Result<tokio_postgres::Client> {
        connect(&format!("{}/postgres", self.server)).await
    }

    pub async fn client(&self) -> anyhow::Result<tokio_postgres::Client> {
        connect(&self.database_url()).await
    }

    /// From now on, children log at `info` into `dir/<binary>-<n>.log`
    /// rather than at `warn` to the terminal.
    pub fn keep_logs(&mut self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        self.logs = Some(dir.to_owned());
        Ok(())
    }

    /// The kept log files, if any.
    pub fn log_files(&self) -> Vec<PathBuf> {
        let Some(dir) = &self.logs else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .collect();
        files.sort();
        files
    }

    /// Starts a release binary with the environment's settings plus `vars`.
    pub fn spawn(&mut self, binary: &str, vars: &[(&str, String)]) -> anyhow::Result<()> {
        self.spawn_in(&[], binary, vars)
    }

    /// [`Self::spawn`] through `prefix`, a command that runs the binary in
    /// its place (`ip netns exec NAME`).
    pub fn spawn_in(
        &mut self,
        prefix: &[&str],
        binary: &str,
        vars: &[(&str, String)],
    ) -> anyhow::Result<()> {
        let path = binary_path(binary)?;
        let mut command = match prefix.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&path);
                command
            }
            None => Command::new(&path),
        };
        command
            .env("SYNCWAY_DATABASE__URL", self.database_url())
            .env("SYNCWAY_AMQP__URL", &self.amqp)
            .env("SYNCWAY_AMQP__NAMESPACE", &self.namespace)
            .env("SYNCWAY_LOG__LEVEL", "warn")
            // Benchmarks store no real credentials.
            .env("SYNCWAY_SECURITY__ALLOW_DEVELOPMENT_KEY", "true")
            // Benchmarks trigger their own jobs (the schedules bench turns
            // the scheduler on in its workers' variables).
            .env("SYNCWAY_SCHEDULER__ENABLED", "false")
            .stdin(Stdio::null());
        self.spawned += 1;
        if let Some(dir) = &self.logs {
            let file = dir.join(format!("{binary}-{}.log", self.spawned));
            let out = std::fs::File::create(&file)
                .with_context(|| format!("creating {}", file.display()))?;
            command
                .env("SYNCWAY_LOG__LEVEL", "info")
                .stdout(out.try_clone()?)
                .stderr(out);
        }
        for (key, value) in vars {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        self.children.push((binary.to_owned(), child));
        Ok(())
    }

    /// Starts the API with the bootstrap `key` and `vars`, waits until it is
    /// ready, and returns its base URL.
    pub async fn start_api(
        &mut self,
        http: &reqwest::Client,
        key: &str,
        vars: &[(&str, String)],
    ) -> anyhow::Result<String> {
        let port = free_port()?;
        let metrics = free_port()?;
        let mut all = vec![
            ("SYNCWAY_API__LISTEN", format!("127.0.0.1:{port}")),
            ("SYNCWAY_METRICS__LISTEN", format!("127.0.0.1:{metrics}")),
            ("SYNCWAY_AUTH__BOOTSTRAP_API_KEY", key.to_owned()),
        ];
        all.extend(vars.iter().cloned());
        self.spawn("syncway-api", &all)?;
        let api = format!("http://127.0.0.1:{port}");
        wait_ready(http, &format!("{api}/readyz")).await?;
        self.api_metrics
            .push(format!("http://127.0.0.1:{metrics}/metrics"));
        Ok(api)
    }

    /// Starts a worker with `vars` (migrations left to the API), waits
    /// until it is ready, and returns its metrics URL.
    pub async fn start_worker(
        &mut self,
        http: &reqwest::Client,
        vars: &[(&str, String)],
    ) -> anyhow::Result<String> {
        self.start_worker_in(http, &[], std::net::Ipv4Addr::LOCALHOST, vars)
            .await
    }

    /// [`Self::start_worker`] through `prefix` (in a network namespace),
    /// its metrics listening on `ip` (reachable from here).
    pub async fn start_worker_in(
        &mut self,
        http: &reqwest::Client,
        prefix: &[&str],
        ip: std::net::Ipv4Addr,
        vars: &[(&str, String)],
    ) -> anyhow::Result<String> {
        let metrics = free_port()?;
        let mut all = vec![
            ("SYNCWAY_METRICS__LISTEN", format!("{ip}:{metrics}")),
            ("SYNCWAY_DATABASE__MIGRATE", "false".to_owned()),
        ];
        all.extend(vars.iter().cloned());
        self.spawn_in(prefix, "syncway-worker", &all)?;
        let base = format!("http://{ip}:{metrics}");
        wait_ready(http, &format!("{base}/readyz")).await?;
        Ok(format!("{base}/metrics"))
    }

    /// Sends `signal` (`-KILL`, `-STOP`, `-CONT`) to the `n`th `binary`
    /// child; a killed one is reaped and forgotten.
    pub fn signal(&mut self, binary: &str, n: usize, signal: &str) -> anyhow::Result<()> {
        let at = self
            .children
            .iter()
            .enumerate()
            .filter(|(_, (name, _))| name == binary)
            .map(|(at, _)| at)
            .nth(n)
            .with_context(|| format!("no {binary} number {n}"))?;
        let pid = self.children[at].1.id().to_string();
        Command::new("kill").args([signal, &pid]).status()?;
        if signal == "-KILL" {
            let (_, mut child) = self.children.remove(at);
            let _ = child.wait();
        }
        Ok(())
    }

    /// Process ids of the running `binary` children.
    pub fn pids(&self, binary: &str) -> Vec<u32> {
        self.children
            .iter()
            .filter(|(name, _)| name == binary)
            .map(|(_, child)| child.id())
            .collect()
    }

    fn stop_children(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }

    /// Stops the processes, drops the database and the AMQP namespace.
    pub async fn destroy(mut self) -> anyhow::Result<()> {
        self.stop_children();
        if let Err(failures) = syncway_queue::delete_namespace(&self.amqp, &self.namespace).await {
            eprintln!(
                "could not delete AMQP namespace {}: {failures:?}",
                self.namespace
            );
        }
        self.admin()
            .await?
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.database
            ))
            .await?;
        Ok(())
    }
}

impl Drop for BenchEnv {
    /// Even when the benchmark fails, no process is left running.
    fn drop(&mut self) {
        self.stop_children();
    }
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// Where the binaries to run are: `SYNCWAY_BENCH_BINARIES` (a folder of
/// another build, to compare two versions), else next to this one.
const BINARIES: &str = "SYNCWAY_BENCH_BINARIES";

/// Locates the release binary.
fn binary_path(binary: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(BINARIES) {
        return Ok(PathBuf::from(dir).join(binary));
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .context("no directory for the benchmark binary")?;
    Ok(dir.join(binary))
}

/// `cargo build --release` of the two binaries, so the bench never runs
/// stale ones.
pub fn build_binaries() -> anyhow::Result<()> {
    if std::env::var_os(BINARIES).is_some() {
        // Another build's binaries: built where they came from.
        return Ok(());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--bin",
            "syncway-api",
            "--bin",
            "syncway-worker",
        ])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building the binaries failed");
    }
    Ok(())
}

/// Runs one of `shared/limits/` and returns the figure it prints for `key`.
pub fn measure_limit(script: &Path, args: &[String], key: &str) -> anyhow::Result<f64> {
    let output = Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(key)?.trim().parse().ok())
        .with_context(|| {
            format!(
                "{} printed no {key}: {stdout}{}",
                script.display(),
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

/// Creates a collection named `collection`, then `n` source connections in
/// it from `body` (16 requests at a time); returns their ids.
pub async fn create_connections(
    http: &reqwest::Client,
    api: &str,
    key: &str,
    collection: &str,
    mut body: serde_json::Value,
    n: usize,
) -> anyhow::Result<Vec<uuid::Uuid>> {
    use futures_util::StreamExt as _;
    let created: serde_json::Value = http
        .post(format!("{api}/collections"))
        .header("x-api-key", key)
        .json(&serde_json::json!({ "name": collection }))
        .send()
        .await?
        .json()
        .await?;
    body["readable_collection_id"] = created["readable_id"].clone();
    let body = &body;
    futures_util::stream::iter(0..n)
        .map(|_| async move {
            let created: serde_json::Value = http
                .post(format!("{api}/source-connections"))
                .header("x-api-key", key)
                .json(body)
                .send()
                .await?
                .json()
                .await?;
            created["id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .with_context(|| format!("no id in {created}"))
        })
        .buffer_unordered(16)
        .collect::<Vec<anyhow::Result<uuid::Uuid>>>()
        .await
        .into_iter()
        .collect()
}

/// Polls `url` until it answers 200.
async fn wait_ready(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if let Ok(response) = http.get(url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("{url} not ready after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A free local port.
pub use syncway_testkit::free_port;

/// The value of the sample `name` (with its labels, if any) in the
/// Prometheus text at `url`.
pub async fn metric(http: &reqwest::Client, url: &str, name: &str) -> anyhow::Result<f64> {
    let text = http.get(url).send().await?.text().await?;
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .with_context(|| format!("no {name} in {url}"))
}

/// Sends `request` and reads the whole answer, which must be a success
/// (`what` names it in the error); the microseconds that took.
pub async fn timed_request(request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<u64> {
    let sent = Instant::now();
    let response = request.send().await?;
    anyhow::ensure!(
        response.status().is_success(),
        "{what}: {}",
        response.status()
    );
    let _ = response.bytes().await?;
    Ok(u64::try_from(sent.elapsed().as_micros())?)
}

/// The `q` quantile of `sorted` by the nearest-rank rule (NaN when empty).
pub fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}
