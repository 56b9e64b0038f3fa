//! The checks [`Settings::load`] runs on what it read: values the
//! processes could not run with are refused at start, naming the setting.

use super::Settings;

impl Settings {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        for (name, cap) in &self.limits.max_running_jobs_per_source_type {
            anyhow::ensure!(
                *cap >= 1 && crate::key_values::is_short_name(name),
                "limits.max_running_jobs_per_source_type: {name}={cap} needs a connector's \
                 short name and a cap of at least 1"
            );
        }
        for (pattern, rate) in &self.limits.source_requests_per_second {
            anyhow::ensure!(
                rate.is_finite() && *rate > 0.0 && crate::key_values::is_host_pattern(pattern),
                "limits.source_requests_per_second: {pattern}={rate} needs a host or \
                 *.domain and a rate above 0"
            );
        }
        anyhow::ensure!(
            self.worker.heartbeat_seconds >= 0.1,
            "worker.heartbeat_seconds must be at least 0.1"
        );
        anyhow::ensure!(
            self.scheduler.interval_ms >= 10,
            "scheduler.interval_ms must be at least 10"
        );
        anyhow::ensure!(
            self.api.header_timeout_seconds >= 1
                && self.api.request_timeout_seconds >= 1
                && self.api.max_connections >= 1
                && self.api.events_poll_ms >= 10,
            "api.header_timeout_seconds, api.request_timeout_seconds and api.max_connections \
             must be at least 1, api.events_poll_ms at least 10"
        );
        anyhow::ensure!(
            self.limits.requests_per_second >= 1
                && self.limits.burst >= 1
                && self.limits.failed_auth_per_minute >= 1,
            "limits.requests_per_second, limits.burst and limits.failed_auth_per_minute \
             must be at least 1"
        );
        anyhow::ensure!(
            self.webhooks.timeout_seconds >= 1
                && self.webhooks.disable_after_hours >= 1
                && self.webhooks.concurrency >= 1
                && self.webhooks.per_endpoint >= 1,
            "webhooks.timeout_seconds, webhooks.disable_after_hours, webhooks.concurrency and \
             webhooks.per_endpoint must be at least 1"
        );
        anyhow::ensure!(
            self.worker.concurrency >= 1,
            "worker.concurrency must be at least 1"
        );
        anyhow::ensure!(
            self.worker.lease_seconds >= 2,
            "worker.lease_seconds must be at least 2"
        );
        anyhow::ensure!(
            self.worker.reap_interval_seconds >= 1 && self.worker.requeue_after_seconds >= 1,
            "worker.reap_interval_seconds and worker.requeue_after_seconds must be at least 1"
        );
        anyhow::ensure!(
            self.retry.max_attempts >= 1,
            "retry.max_attempts must be at least 1"
        );
        anyhow::ensure!(
            self.retry.base_delay_ms >= 1 && self.retry.max_delay_ms >= self.retry.base_delay_ms,
            "retry.base_delay_ms must be at least 1 and at most retry.max_delay_ms"
        );
        // The broker refuses a longer per-message TTL (2^32 - 1 ms).
        anyhow::ensure!(
            self.retry.max_delay_ms <= u64::from(u32::MAX),
            "retry.max_delay_ms must be at most 4294967295 (the broker's longest message TTL)"
        );
        anyhow::ensure!(
            self.database.pool_size >= 1,
            "database.pool_size must be at least 1"
        );
        anyhow::ensure!(
            !self.amqp.namespace.is_empty()
                && self
                    .amqp
                    .namespace
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "amqp.namespace must be non-empty ASCII letters, digits, '-', '_' or '.'"
        );
        anyhow::ensure!(
            self.worker.max_job_seconds >= 1,
            "worker.max_job_seconds must be at least 1"
        );
        let connectors = &self.connectors;
        anyhow::ensure!(
            connectors.max_entity_bytes >= 1024
                && connectors.max_batch_bytes >= connectors.max_entity_bytes
                && connectors.max_batch_bytes <= 512 << 20,
            "connectors.max_entity_bytes must be at least 1024, and connectors.max_batch_bytes \
             at least that and at most 512 MiB"
        );
        anyhow::ensure!(
            connectors.max_response_bytes >= 1024 && connectors.max_pages >= 1,
            "connectors.max_response_bytes must be at least 1024 and connectors.max_pages at least 1"
        );
        anyhow::ensure!(
            connectors.postgres_connect_timeout_seconds >= 1
                && connectors.postgres_statement_timeout_seconds >= 1
                && connectors.postgres_keepalive_seconds >= 1,
            "connectors.postgres_*_seconds must be at least 1"
        );
        anyhow::ensure!(
            self.worker
                .memory_budget_bytes
                .is_none_or(|bytes| bytes >= 1 << 20),
            "worker.memory_budget_bytes must be at least 1 MiB (leave it unset for the default)"
        );
        anyhow::ensure!(
            self.limits.streams_per_key >= 1,
            "limits.streams_per_key must be at least 1"
        );
        anyhow::ensure!(
            self.limits.max_running_jobs_per_org != Some(0),
            "limits.max_running_jobs_per_org must be at least 1 (leave it unset for no limit)"
        );
        Ok(())
    }
}
