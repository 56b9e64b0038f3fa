#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `syncway-worker`, as a binary of the test package: the fault tests run it
//! as a child process to kill it with SIGKILL mid-sync.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    syncway_worker::main().await
}
