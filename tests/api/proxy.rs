//! The cuttable TCP proxy of `exai-testkit` (shared with the benchmark harness).
#![allow(dead_code)]

pub use exai_testkit::proxy::TcpProxy as Inner;

/// Test-friendly wrapper: panics instead of returning errors.
pub struct TcpProxy(Inner);

impl TcpProxy {
    /// Starts a proxy to `upstream`.
    pub fn start(upstream: std::net::SocketAddr) -> TcpProxy {
        TcpProxy(Inner::start(upstream).expect("start proxy"))
    }

    /// Where clients should connect.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.0.addr()
    }

    /// Down: refuse new connections and drop every open one. Up: forward again.
    pub fn set_down(&self, down: bool) {
        self.0.set_down(down)
    }
}
