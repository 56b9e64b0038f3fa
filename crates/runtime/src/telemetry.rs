//! Logging set-up, and the small HTTP server for metrics and health checks.

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, LogSettings};

/// Whether text logs may carry colour: only on a terminal, and not when
/// `NO_COLOR` is set (<https://no-color.org>). Files and pipes get plain
/// text.
fn colours(stdout_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stdout_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

/// Installs the global tracing subscriber (text or JSON lines on stdout).
/// `RUST_LOG` overrides the configured level. Safe to call more than once.
pub fn init_logging(settings: &LogSettings) {
    // Dependencies are quiet unless asked for: their INFO lines (Postgres
    // NOTICEs, migration chatter) are not an operator's business.
    let quiet = "tokio_postgres=warn,refinery_core=warn";
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{},{quiet}", settings.level)))
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{quiet}")));
    let ansi = colours(
        std::io::IsTerminal::is_terminal(&std::io::stdout()),
        std::env::var_os("NO_COLOR"),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_target(true);
    let _ = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// `GET /metrics` serving the registry in the Prometheus text format.
pub fn metrics_router(registry: Arc<Registry>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                let mut body = String::new();
                match prometheus_client::encoding::text::encode(&mut body, &registry) {
                    Ok(()) => (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        classic_text(&body),
                    )
                        .into_response(),
                    Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                }
            }
        }),
    )
}

/// The classic Prometheus text format (0.0.4) of an OpenMetrics text, the
/// format `promtool check metrics` and every scraper read: a counter
/// family's HELP and TYPE name its `_total` samples, and the OpenMetrics
/// `# UNIT` and `# EOF` lines go.
pub fn classic_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 64);
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        use super::colours;
        assert!(colours(true, None));
        assert!(!colours(false, None));
        assert!(!colours(true, Some("1".into())));
        // An empty NO_COLOR is unset, as the convention says.
        assert!(colours(true, Some("".into())));
    }

    #[test]
    fn counters_are_named_by_their_samples_in_the_classic_format() {
        let openmetrics = "# HELP jobs Jobs.\n# TYPE jobs counter\njobs_total 3\n# HELP up Up.\n# TYPE up gauge\n# UNIT up seconds\nup 1\n# EOF\n";
        assert_eq!(
            super::classic_text(openmetrics),
            "# HELP jobs_total Jobs.\n# TYPE jobs_total counter\njobs_total 3\n# HELP up Up.\n# TYPE up gauge\nup 1\n"
        );
    }
}
