//! A worker as a process of its own, to kill (SIGKILL) or pause (SIGSTOP)
//! it as an operator's bad day would: the test package builds the worker
//! binary (`tests/bin/worker.rs`), and the process runs on the test's
//! environment with the settings given. Likewise an API process
//! (`tests/bin/api.rs`, the `syncway-api` command line), and its operator
//! commands.

use std::process::{Child, Command, Stdio};

use super::TestEnv;

/// A worker process, killed when dropped.
pub struct WorkerProcess(Child);

impl WorkerProcess {
    /// Starts one with `lease_seconds`, and `vars` (`SYNCWAY_*` names and
    /// values) on top of the environment's settings.
    pub fn start(env: &TestEnv, lease_seconds: u64, vars: &[(&str, String)]) -> Self {
        Self::start_in(&[], env, lease_seconds, vars)
    }

    /// [`Self::start`] through `prefix` (a command that runs the worker
    /// binary in its place: `ip netns exec NAME`).
    pub fn start_in(
        prefix: &[&str],
        env: &TestEnv,
        lease_seconds: u64,
        vars: &[(&str, String)],
    ) -> Self {
        let binary = env!("CARGO_BIN_EXE_syncway-test-worker");
        let mut command = match prefix.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .env("SYNCWAY_DATABASE__URL", env.database_url())
            .env("SYNCWAY_DATABASE__MIGRATE", "false")
            .env("SYNCWAY_SECURITY__ALLOW_DEVELOPMENT_KEY", "true")
            .env("SYNCWAY_SCHEDULER__ENABLED", "false")
            .env("SYNCWAY_AMQP__NAMESPACE", &env.namespace)
            .env("SYNCWAY_METRICS__LISTEN", "127.0.0.1:0")
            .env("SYNCWAY_WORKER__LEASE_SECONDS", lease_seconds.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // What connectors may reach, as `TestEnv::settings` gives in-process
        // workers.
        for (name, list) in [
            ("SYNCWAY_CONNECTORS__ALLOW_CIDRS", &env.allow_cidrs),
            ("SYNCWAY_CONNECTORS__ALLOW_HOSTS", &env.allow_hosts),
            (
                "SYNCWAY_CONNECTORS__LOCAL_FILES__ROOTS",
                &env.local_files_roots,
            ),
        ] {
            if !list.is_empty() {
                command.env(name, list.join(","));
            }
        }
        for (name, value) in vars {
            command.env(name, value);
        }
        WorkerProcess(command.spawn().expect("starting the worker process"))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGKILL: no shutdown code runs, the lease is left to expire.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGSTOP: the process stops where it is, leases and all.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT: it goes on as if nothing happened.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} failed");
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.resume_quietly();
        self.kill();
    }
}

impl WorkerProcess {
    fn resume_quietly(&self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.id().to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `syncway-api ARGS` (an operator command) on `env`; returns its
/// exit status's success, stdout and stderr.
pub fn api_command(env: &TestEnv, args: &[&str]) -> (bool, String, String) {
    api_command_with(env, &[], args)
}

/// [`api_command`] with more environment variables.
pub fn api_command_with(
    env: &TestEnv,
    vars: &[(&str, &str)],
    args: &[&str],
) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_syncway-test-api"))
        .args(args)
        .env("SYNCWAY_DATABASE__URL", env.database_url())
        .env("SYNCWAY_DATABASE__MIGRATE", "false")
        .env("RUST_LOG", "warn")
        .envs(vars.iter().copied())
        .output()
        .expect("running syncway-api");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// An API server as a process of its own, killed when dropped.
pub struct ApiProcess {
    child: Child,
    pub url: String,
    pub metrics_url: String,
}

/// A port nothing listens on now (for a process that binds it itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl ApiProcess {
    /// Starts one on `env` with `vars` on top, and waits until it answers.
    pub async fn start(env: &TestEnv, vars: &[(&str, String)]) -> Self {
        Self::start_logging(env, vars, Stdio::null()).await
    }

    /// [`Self::start`], its log (standard output) going to `log`.
    pub async fn start_logging(env: &TestEnv, vars: &[(&str, String)], log: Stdio) -> Self {
        let (http, metrics) = (free_port(), free_port());
        let mut command = Command::new(env!("CARGO_BIN_EXE_syncway-test-api"));
        command
            .env("SYNCWAY_DATABASE__URL", env.database_url())
            .env("SYNCWAY_DATABASE__MIGRATE", "false")
            .env("SYNCWAY_SECURITY__ALLOW_DEVELOPMENT_KEY", "true")
            .env("SYNCWAY_AMQP__NAMESPACE", &env.namespace)
            .env("SYNCWAY_API__LISTEN", format!("127.0.0.1:{http}"))
            .env("SYNCWAY_METRICS__LISTEN", format!("127.0.0.1:{metrics}"))
            .env("SYNCWAY_LOG__LEVEL", "warn")
            .stdout(log);
        for (name, value) in vars {
            command.env(name, value);
        }
        let process = ApiProcess {
            child: command.spawn().expect("starting the API process"),
            url: format!("http://127.0.0.1:{http}"),
            metrics_url: format!("http://127.0.0.1:{metrics}"),
        };
        let health = format!("{}/healthz", process.url);
        super::eventually("the API process to answer", super::DEADLINE, || async {
            let response = reqwest::get(&health).await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
        process
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
