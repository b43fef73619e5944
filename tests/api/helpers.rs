//! Test harness: an app on a random port with its own data directory, and the `exai` binary.
//! The helpers that know nothing of exai (ports, clients, polling, PostgreSQL) live in
//! `exai-testkit` and are re-exported here.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use exai::app::{Application, ShutdownTrigger};
use exai::config::{CliOverrides, Config, Sources};
use serde_json::Value;

pub use exai_testkit::helpers::{
    PG_ADMIN_URL, REDIS_URL, TestDb, eventually, free_port, http, http_builder,
};

/// Settings that keep tests fast: quick liveness checks and restarts.
pub const FAST_ENV: &[(&str, &str)] = &[
    ("EXAI_SUPERVISOR_CHECK_INTERVAL_MS", "50"),
    ("EXAI_SUPERVISOR_PING_TIMEOUT_MS", "400"),
    ("EXAI_SUPERVISOR_BACKOFF_INITIAL_MS", "20"),
    ("EXAI_SUPERVISOR_BACKOFF_MAX_MS", "100"),
    ("EXAI_SHUTDOWN_READY_DELAY_MS", "100"),
    ("EXAI_METRICS_FLUSH_INTERVAL_MS", "100"),
    ("EXAI_LOG", "warn"),
];

/// A running app.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://addr`.
    pub base: String,
    /// An HTTP client.
    pub client: reqwest::Client,
    /// Starts its graceful shutdown.
    pub trigger: ShutdownTrigger,
    /// Its data directory (kept alive as long as the app).
    pub dir: tempfile::TempDir,
    /// The thread its actix System runs on.
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// GET `path` as JSON, with the status.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// POST `path` with an empty body, returning the status.
    pub async fn post(&self, path: &str) -> u16 {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        resp.status().as_u16()
    }

    /// Shuts the app down gracefully and waits for it.
    pub fn stop(mut self) {
        self.trigger.trigger();
        if let Some(t) = self.thread.take() {
            t.join().unwrap().unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.trigger.trigger();
    }
}

/// Builds a configuration for a test: `FAST_ENV`, then `env`, a private data directory and
/// port 0.
pub fn test_config(
    dir: &tempfile::TempDir,
    env: &[(&str, &str)],
    toml_text: Option<&str>,
) -> Config {
    let mut vars: HashMap<String, String> = HashMap::new();
    for (k, v) in FAST_ENV.iter().chain(env) {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    vars.entry("EXAI_DATA_DIR".into())
        .or_insert_with(|| dir.path().join("data").display().to_string());
    vars.entry("EXAI_INSTANCE".into())
        .or_insert_with(|| "test".into());
    let file = toml_text.map(|t| {
        (
            PathBuf::from("exai.toml"),
            t.parse::<toml::Table>().unwrap(),
        )
    });
    let cli = CliOverrides {
        port: Some(0),
        ..CliOverrides::default()
    };
    Config::from_sources(&Sources { file, env: vars }, &cli)
        .unwrap_or_else(|errors| panic!("test config invalid: {errors:?}"))
}

/// Starts an app with `FAST_ENV` plus `env`, on its own thread and actix System.
pub async fn spawn_app(env: &[(&str, &str)]) -> TestApp {
    spawn_app_with(env, None).await
}

/// The thread an app's actix System runs on.
pub type AppThread = std::thread::JoinHandle<anyhow::Result<()>>;

/// Builds and runs an app from `config` on its own thread and actix System.
pub async fn start_config(config: Config) -> (SocketAddr, ShutdownTrigger, AppThread) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let app = match Application::build(config).await {
                Ok(app) => app,
                Err(e) => {
                    let _ = tx.send(Err(format!("{e:#}")));
                    return Ok(());
                }
            };
            let _ = tx.send(Ok((app.addr(), app.shutdown_trigger())));
            app.run_until_stopped().await
        })
    });
    let (addr, trigger) = rx
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("app failed to start: {e}"));
    (addr, trigger, thread)
}

/// Starts an app with extra environment and an optional `exai.toml` text.
pub async fn spawn_app_with(env: &[(&str, &str)], toml_text: Option<&str>) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir, env, toml_text);
    let (addr, trigger, thread) = start_config(config).await;
    TestApp {
        addr,
        base: format!("http://{addr}"),
        client: http_builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        trigger,
        dir,
        thread: Some(thread),
    }
}

/// The `exai` binary built for these tests.
pub fn exai_bin() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_exai"));
    // A clean environment: only what the test sets, plus PATH.
    cmd.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}
