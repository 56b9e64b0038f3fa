//! `syncway-api`: the command line of [`syncway_api::cli`].

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    syncway_api::cli::main().await
}
