//! The policy as reqwest's resolver: a name resolves only to the addresses
//! the policy allows, and the connection is made to exactly those (pinned),
//! so a name cannot pass the check with one address and connect to another.

use std::sync::Arc;

use crate::{Policy, ResolveError};

/// Resolves names under the policy, for reqwest.
pub struct PolicyResolver(pub Arc<Policy>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved = policy.resolve(&host, 0).await.map_err(
                |error| -> Box<dyn std::error::Error + Send + Sync> {
                    match error {
                        ResolveError::Denied(denied) => Box::new(denied),
                        other => Box::new(other),
                    }
                },
            )?;
            let addresses: reqwest::dns::Addrs = Box::new(resolved.addresses.into_iter());
            Ok(addresses)
        })
    }
}
