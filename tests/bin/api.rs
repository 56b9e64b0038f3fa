//! `syncway-api` (its command line, [`syncway_api::cli`]), as a binary of
//! the test package: tests run it as a process of its own, where nothing of
//! the test process (a TLS provider it installed, say) can stand in for
//! what the binary must do itself, and run its operator commands.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    syncway_api::cli::main().await
}
