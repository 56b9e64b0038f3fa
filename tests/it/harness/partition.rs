//! A worker process cut off by a network partition: it runs in a network
//! namespace of its own (`syncway_testkit`), reaching Postgres and
//! RabbitMQ through proxies on the host's end of its link, whose traffic
//! nftables drops and lets through again. Needs root: elsewhere
//! [`Partitioned::new`] says the test is skipped and returns `None`.

use std::net::SocketAddr;

use syncway_testkit::{Partition, Proxy};

use super::env::{self, TestEnv};
use super::process::WorkerProcess;

/// Which of the worker's links a cut drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Postgres,
    Broker,
}

pub struct Partitioned {
    // Dropped first: its proxies, then the namespace.
    postgres: Proxy,
    broker: Proxy,
    partition: Partition,
}

impl Partitioned {
    pub async fn new() -> Option<Self> {
        let partition = match Partition::new() {
            Ok(partition) => partition,
            Err(error) if !syncway_testkit::root() => {
                eprintln!("skipped: {error}");
                return None;
            }
            Err(error) => panic!("{error}"),
        };
        let at = |port| SocketAddr::from((partition.host_ip(), port));
        let amqp: SocketAddr = "127.0.0.1:5672".parse().expect("an address");
        let postgres = Proxy::start(at(0), env::postgres_address())
            .await
            .expect("a proxy to Postgres");
        let broker = Proxy::start(at(0), amqp)
            .await
            .expect("a proxy to RabbitMQ");
        Some(Partitioned {
            postgres,
            broker,
            partition,
        })
    }

    /// A worker process inside the namespace, on `env`, reaching the
    /// services through the proxies.
    pub fn worker(
        &self,
        env: &TestEnv,
        lease_seconds: u64,
        vars: &[(&str, String)],
    ) -> WorkerProcess {
        let mut vars = vars.to_vec();
        vars.push((
            "SYNCWAY_DATABASE__URL",
            env::postgres_url_via(self.postgres.address(), &env.database),
        ));
        vars.push((
            "SYNCWAY_AMQP__URL",
            format!("amqp://guest:guest@{}/%2f", self.broker.address()),
        ));
        WorkerProcess::start_in(&self.partition.prefix(), env, lease_seconds, &vars)
    }

    /// Drops every packet between the worker and `link`, both ways.
    pub fn cut(&self, link: Link) {
        let port = match link {
            Link::Postgres => self.postgres.address().port(),
            Link::Broker => self.broker.address().port(),
        };
        self.partition
            .cut(port)
            .unwrap_or_else(|error| panic!("cutting {link:?}: {error}"));
    }

    /// Lets everything through again.
    pub fn restore(&self) {
        self.partition
            .restore()
            .unwrap_or_else(|error| panic!("restoring: {error}"));
    }
}
