//! What the tests and the chaos bench make faults with. Not part of the
//! product.
//!
//! - [`Partition`]: a network partition, as the kernel makes it: a network
//!   namespace joined to the host by a veth pair, and nftables rules on the
//!   host's end that drop a port's traffic both ways (packets vanish: no
//!   reset, no error, as on a cut link). A process in the namespace reaches
//!   the host's services through [`Proxy`]s on the host's end. Needs root.
//! - [`PgCluster`]: a PostgreSQL server of one's own with
//!   `wal_level=logical`, for `postgres_cdc` sources.
//! - [`rabbit`]: RabbitMQ nodes of one's own (their own node names, ports
//!   and directories), one or a cluster of three, to stop, kill or
//!   configure (a short `consumer_timeout`) without touching the machine's
//!   shared broker.

mod command;
mod partition;
mod pg_cluster;
mod proxy;
pub mod rabbit;

pub use command::{free_port, run};
pub use partition::{Partition, root};
pub use pg_cluster::PgCluster;
pub use proxy::Proxy;
