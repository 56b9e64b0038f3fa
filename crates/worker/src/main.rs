//! `syncway-worker`: see [`syncway_worker::main`].

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    syncway_worker::main().await
}
