//! What both binaries share: configuration loading, logging set-up, the
//! shutdown signal, and serving Prometheus metrics and health checks.

pub mod credentials;
pub mod egress;
pub mod key_values;
pub mod retention_settings;
pub mod settings;
pub mod telemetry;
pub mod webhook_settings;

pub use credentials::{CredentialCipher, CredentialError};
pub use settings::{Role, Settings};

/// Resolves when the process is asked to stop (SIGTERM or Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}

/// This machine's host name (`unknown` when it cannot be read).
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The memory limit of this process's cgroup (v2 `memory.max`, else v1
/// `memory.limit_in_bytes`), when it has one.
pub fn cgroup_memory_limit() -> Option<u64> {
    // In a container the cgroup is mounted at the root; elsewhere it is the
    // path /proc/self/cgroup names (v2: `0::<path>`, v1: `N:memory:<path>`).
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let path_of = |prefix: &str| {
        own.lines().find_map(|line| {
            let (_, rest) = line.split_once(':')?;
            rest.strip_prefix(prefix)
                .map(|path| path.trim_end_matches('/').to_owned())
        })
    };
    let mut candidates = Vec::new();
    if let Some(path) = path_of(":") {
        candidates.push(format!("/sys/fs/cgroup{path}/memory.max"));
    }
    candidates.push("/sys/fs/cgroup/memory.max".to_owned());
    if let Some(path) = path_of("memory:") {
        candidates.push(format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"));
    }
    candidates.push("/sys/fs/cgroup/memory/memory.limit_in_bytes".to_owned());
    // "max" (v2) or a page-rounded i64::MAX (v1) mean no limit.
    candidates
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .find_map(|text| text.trim().parse::<u64>().ok())
        .filter(|limit| *limit < 1 << 60)
}
