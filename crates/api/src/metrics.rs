//! The API's Prometheus metrics.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;

type Labels = Vec<(&'static str, String)>;

#[derive(Clone)]
pub struct ApiMetrics {
    pub requests: Family<Labels, Counter>,
    pub request_seconds: Family<Labels, Histogram>,
    pub jobs_triggered: Counter,
    /// Open job event streams.
    pub event_streams: Gauge,
    /// Reads of the watched jobs (one statement each, however many streams).
    pub event_reads: Counter,
    /// Live API processes sharing the per-key limits, as this one counts.
    pub api_processes: Gauge,
}

impl std::fmt::Debug for ApiMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiMetrics").finish_non_exhaustive()
    }
}

impl ApiMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = ApiMetrics {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            jobs_triggered: Counter::default(),
            event_streams: Gauge::default(),
            event_reads: Counter::default(),
            api_processes: Gauge::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route and method",
            metrics.request_seconds.clone(),
        );
        registry.register(
            "jobs_triggered",
            "Sync jobs accepted (answered 200)",
            metrics.jobs_triggered.clone(),
        );
        registry.register(
            "job_event_streams",
            "Open job event streams of this process",
            metrics.event_streams.clone(),
        );
        registry.register(
            "job_event_reads",
            "Statements reading the watched jobs (one per poll, however many streams)",
            metrics.event_reads.clone(),
        );
        registry.register(
            "processes",
            "Live API processes sharing the per-key limits, as this process counts them",
            metrics.api_processes.clone(),
        );
        metrics
    }
}

/// The method as a metric label: the standard ones by name, anything else
/// `other` (a client may send any token as a method; labels stay bounded).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Middleware recording every request by its route template.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(request.method()).to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let metrics = state.metrics();
    metrics
        .request_seconds
        .get_or_create(&vec![("route", route.clone()), ("method", method.clone())])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&vec![
            ("route", route),
            ("method", method),
            ("status", response.status().as_u16().to_string()),
        ])
        .inc();
    response
}
