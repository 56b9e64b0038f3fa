//! A worker as a process of its own, to kill (SIGKILL) or pause (SIGSTOP)
//! it as an operator's bad day would: the test package builds the worker
//! binary (`tests/bin/worker.rs`), and the process runs on the test's
//! environment with the settings given.

use std::process::{Child, Command, Stdio};

use super::TestEnv;

/// A worker process, killed when dropped.
pub struct WorkerProcess(Child);

impl WorkerProcess {
    /// Starts one with `lease_seconds`, and `vars` (`SYNCWAY_*` names and
    /// values) on top of the environment's settings.
    pub fn start(env: &TestEnv, lease_seconds: u64, vars: &[(&str, String)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_syncway-test-worker"));
        command
            .env("SYNCWAY_DATABASE__URL", env.database_url())
            .env("SYNCWAY_DATABASE__MIGRATE", "false")
            .env("SYNCWAY_SCHEDULER__ENABLED", "false")
            .env("SYNCWAY_AMQP__NAMESPACE", &env.namespace)
            .env("SYNCWAY_METRICS__LISTEN", "127.0.0.1:0")
            .env("SYNCWAY_WORKER__LEASE_SECONDS", lease_seconds.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in vars {
            command.env(name, value);
        }
        WorkerProcess(command.spawn().expect("starting the worker process"))
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
