//! A TCP proxy on a local port, for simulating an unreachable service per
//! test without touching the shared one.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub struct TcpProxy {
    tasks: JoinSet<()>,
}

impl TcpProxy {
    /// A local address where nothing listens (yet).
    pub async fn free_address() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a local port");
        listener.local_addr().expect("local address")
    }

    /// Listens on `address` and forwards every connection to `target`.
    pub async fn start(address: SocketAddr, target: SocketAddr) -> Self {
        let listener = TcpListener::bind(address)
            .await
            .unwrap_or_else(|error| panic!("binding the proxy on {address}: {error}"));
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        TcpProxy { tasks }
    }

    /// Stops listening and cuts every proxied connection.
    pub fn stop(mut self) {
        self.tasks.abort_all();
    }
}
