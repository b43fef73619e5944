//! A TCP proxy that can be cut, to take a database away from exai without stopping the
//! server itself. Shared by the benchmark's outage scenario and the integration tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards connections from [`TcpProxy::addr`] to an upstream until told to go down.
pub struct TcpProxy {
    /// Where clients connect.
    addr: SocketAddr,
    /// While set, new connections are closed at once.
    down: Arc<AtomicBool>,
    /// Bumped to drop every open connection.
    cut: watch::Sender<u64>,
}

impl TcpProxy {
    /// Starts a proxy on 127.0.0.1 (any port) to `upstream`, on its own thread and runtime
    /// so it works under any caller's runtime.
    pub fn start(upstream: SocketAddr) -> std::io::Result<TcpProxy> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let down = Arc::new(AtomicBool::new(false));
        let (cut, cut_rx) = watch::channel(0u64);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let flag = down.clone();
        std::thread::spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = TcpListener::from_std(std_listener) else {
                    return;
                };
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        continue;
                    };
                    if flag.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let mut cut_rx = cut_rx.clone();
                    // A clone inherits the original's seen version; only cuts after this
                    // connection was accepted should end it.
                    cut_rx.mark_unchanged();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut_rx.changed() => {}
                        }
                    });
                }
            });
        });
        Ok(TcpProxy { addr, down, cut })
    }

    /// Where clients should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Down: refuse new connections and drop every open one. Up: forward again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}
