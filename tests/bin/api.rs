#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `syncway-api`'s server, as a binary of the test package: tests run it as
//! a process of its own, where nothing of the test process (a TLS provider
//! it installed, say) can stand in for what the binary must do itself.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = syncway_runtime::Settings::load(syncway_runtime::Role::Api, None)?;
    syncway_runtime::telemetry::init_logging(&settings.log);
    let listener = tokio::net::TcpListener::bind(&settings.api.listen).await?;
    let metrics = tokio::net::TcpListener::bind(&settings.metrics.listen).await?;
    syncway_api::run(
        settings,
        listener,
        metrics,
        syncway_runtime::shutdown_signal(),
    )
    .await
}
