//! The real-browser test: the app on a fixed port with the mock upstream as its provider
//! (the mock model priced, so calls have a cost), `node tests/browser/dashboard.test.mjs`
//! driving the system Chromium against it at 1440 px and 390 px, an outage injected through
//! the mock's failing model, and a server restart on the same port and data directory while
//! the page stays open. `scripts/browser-test --install-only` (run by
//! `scripts/test`) installs Chromium and playwright-core; without them this test fails.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use exai::app::ShutdownTrigger;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use exai_testkit::mock_upstream::MockUpstream;

use crate::helpers::test_config;
use crate::ws::{mock, mock_toml};

/// Prices of the mock model (USD per million tokens): high, so a few calls show a cost.
const MOCK_PRICES: &str = "mock-echo=1000/2000";

/// Longest the whole browser run may take.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

/// An app started on a given port (so the page can reconnect to the same address).
struct Served {
    /// Starts its graceful shutdown.
    trigger: ShutdownTrigger,
    /// Its actix System thread.
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

async fn serve_at(
    dir: &tempfile::TempDir,
    upstream: &MockUpstream,
    port: u16,
) -> (Served, SocketAddr) {
    let toml = mock_toml(upstream, "");
    let mut config = test_config(
        dir,
        &[("EXAI_INSTANCE", "browser"), ("EXAI_PRICES", MOCK_PRICES)],
        Some(&toml),
    );
    config.server.port = port;
    let (addr, trigger, thread) = crate::helpers::start_config(config).await;
    (Served { trigger, thread }, addr)
}

impl Served {
    fn stop(self) {
        self.trigger.trigger();
        self.thread.join().unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_works_in_a_real_browser_and_survives_a_restart() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("tests/browser/dashboard.test.mjs");
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .exists(),
        "playwright-core is not installed: run scripts/browser-test --install-only"
    );
    let dir = tempfile::tempdir().unwrap();
    let upstream = mock();
    let (served, addr) = serve_at(&dir, &upstream, 0).await;
    let mut served = Some(served);

    let mut node = tokio::process::Command::new("node")
        .arg(&script)
        .arg(format!("http://{addr}"))
        .arg("--restart")
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node is required for the browser test");
    let mut stdin = node.stdin.take().unwrap();
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();

    let run = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            println!("{line}");
            if line.trim() == "RESTART" {
                // Same port, same data directory: the page must recover by itself and refill
                // its charts from history.
                served.take().unwrap().stop();
                let (again, _) = serve_at(&dir, &upstream, addr.port()).await;
                served = Some(again);
                stdin.write_all(b"GO\n").await.unwrap();
                stdin.flush().await.unwrap();
            }
        }
        node.wait().await.unwrap()
    };
    let status = tokio::time::timeout(BROWSER_TIMEOUT, run)
        .await
        .expect("browser test timed out");
    if let Some(served) = served.take() {
        served.stop();
    }
    assert!(status.success(), "browser test failed: {status}");
    assert!(root.join("test-artifacts/dashboard.png").exists());
    assert!(root.join("test-artifacts/dashboard-390.png").exists());
}
