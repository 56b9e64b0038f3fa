//! A TCP proxy on a local port, for simulating an unreachable service per
//! test without touching the shared one (`syncway_testkit::Proxy`).

use std::net::SocketAddr;

use tokio::net::TcpListener;

pub struct TcpProxy(syncway_testkit::Proxy);

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
        match syncway_testkit::Proxy::start(address, target).await {
            Ok(proxy) => TcpProxy(proxy),
            Err(error) => panic!("binding the proxy on {address}: {error}"),
        }
    }

    /// Stops listening and cuts every proxied connection.
    pub fn stop(self) {
        self.0.stop();
    }
}
