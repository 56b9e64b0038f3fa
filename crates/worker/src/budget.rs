//! The shared source budgets (`limits.source_requests_per_second`) as a
//! job's connector sees them: a request to a host with a budget reserves
//! its slot in Postgres ([`syncway_store::budgets`]) and waits for it. A
//! job that waits long says so (`waiting_reason: source_budget`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use syncway_connectors::{RequestBudget, SourceError};
use syncway_store::Pool;
use uuid::Uuid;

/// A wait at least this long is shown on the job.
const SHOWN_WAIT: Duration = Duration::from_millis(500);

/// The budgets by host pattern: exact hosts, and `*.domain` patterns that
/// match any host under the domain (the longest domain wins).
#[derive(Debug, Default)]
pub struct SourceBudgets {
    exact: BTreeMap<String, Duration>,
    /// `(".domain", pattern, interval)`, longest domain first.
    domains: Vec<(String, String, Duration)>,
}

impl SourceBudgets {
    /// From `limits.source_requests_per_second` (validated: rates above 0).
    pub fn new(rates: &BTreeMap<String, f64>) -> Self {
        let mut budgets = SourceBudgets::default();
        for (pattern, rate) in rates {
            let interval = Duration::try_from_secs_f64(1.0 / rate).unwrap_or(Duration::MAX);
            match pattern.strip_prefix('*') {
                Some(domain) => {
                    budgets
                        .domains
                        .push((domain.to_owned(), pattern.clone(), interval));
                }
                None => {
                    budgets.exact.insert(pattern.clone(), interval);
                }
            }
        }
        budgets
            .domains
            .sort_by_key(|(domain, _, _)| std::cmp::Reverse(domain.len()));
        budgets
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.domains.is_empty()
    }

    /// The budget `host` draws from: its pattern and the interval between
    /// two requests.
    pub fn find(&self, host: &str) -> Option<(&str, Duration)> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some((pattern, interval)) = self.exact.get_key_value(&host) {
            return Some((pattern.as_str(), *interval));
        }
        self.domains
            .iter()
            .find(|(domain, _, _)| host.ends_with(domain.as_str()))
            .map(|(_, pattern, interval)| (pattern.as_str(), *interval))
    }
}

/// The budgets as one job's connector draws from them; `None` when the
/// deployment has none.
pub fn for_job(
    context: &crate::Context,
    job_id: Uuid,
    lease: Uuid,
) -> Option<Arc<dyn RequestBudget>> {
    if context.budgets.is_empty() {
        return None;
    }
    Some(Arc::new(JobBudget {
        pool: context.pool.clone(),
        budgets: context.budgets.clone(),
        job_id,
        lease,
    }))
}

/// One job's draw on the budgets.
pub struct JobBudget {
    pub pool: Pool,
    pub budgets: Arc<SourceBudgets>,
    pub job_id: Uuid,
    pub lease: Uuid,
}

impl JobBudget {
    async fn draw(&self, host: &str) -> Result<(), syncway_store::StoreError> {
        let Some((pattern, interval)) = self.budgets.find(host) else {
            return Ok(());
        };
        let client = self.pool.get().await?;
        let wait = syncway_store::budgets::reserve(&client, pattern, interval).await?;
        if wait.is_zero() {
            return Ok(());
        }
        let shown = wait >= SHOWN_WAIT;
        if shown {
            syncway_store::budgets::set_waiting(
                &client,
                self.job_id,
                self.lease,
                Some("source_budget"),
            )
            .await?;
        }
        drop(client);
        tokio::time::sleep(wait).await;
        if shown {
            let client = self.pool.get().await?;
            syncway_store::budgets::set_waiting(&client, self.job_id, self.lease, None).await?;
        }
        Ok(())
    }
}

impl RequestBudget for JobBudget {
    fn acquire<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            self.draw(host)
                .await
                .map_err(|error| SourceError::Transient {
                    message: format!(
                        "cannot read the source's request budget: {}",
                        anyhow::Error::from(error)
                    ),
                    retry_after: None,
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_find_their_budget() {
        let rates = BTreeMap::from([
            ("api.example.com".to_owned(), 10.0),
            ("*.example.org".to_owned(), 2.0),
            ("*.eu.example.org".to_owned(), 4.0),
        ]);
        let budgets = SourceBudgets::new(&rates);
        assert_eq!(
            budgets.find("API.example.com"),
            Some(("api.example.com", Duration::from_millis(100)))
        );
        assert_eq!(
            budgets.find("a.example.org"),
            Some(("*.example.org", Duration::from_millis(500)))
        );
        assert_eq!(
            budgets.find("x.eu.example.org"),
            Some(("*.eu.example.org", Duration::from_millis(250)))
        );
        assert_eq!(budgets.find("example.org"), None);
        assert_eq!(budgets.find("other.example.com"), None);
    }
}
