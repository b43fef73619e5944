//! Test harness: an app on a random port with its own data directory, plus helpers for the
#![allow(dead_code)]
//! real PostgreSQL and Redis and for running the `exai` binary.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use exai::config::{CliOverrides, Config, Sources};
use exai::startup::{Application, ShutdownTrigger};
use serde_json::Value;

/// PostgreSQL server every test shares (each test makes its own database).
pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Redis server every test shares (each test uses its own key prefix).
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

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

/// An HTTP client builder. reqwest is built without a default TLS provider (exai installs
/// ring at start-up), so install it here too before any client is built.
pub fn http_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// A plain HTTP client.
pub fn http() -> reqwest::Client {
    http_builder().build().unwrap()
}

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

/// Polls `f` every 20 ms until it returns `Some`, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh PostgreSQL database for one test, dropped when the guard is dropped.
pub struct TestDb {
    /// Its URL.
    pub url: String,
    /// Its name.
    pub name: String,
}

impl TestDb {
    /// Creates `exai_t_<uuid>`. Fails loudly when PostgreSQL is unreachable.
    pub async fn create() -> TestDb {
        use sqlx::Connection;
        let name = format!("exai_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(PG_ADMIN_URL)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL at {PG_ADMIN_URL} is required for this test: {e}")
            });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        TestDb {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        }
    }

    /// The same database reached through another host:port (a proxy).
    pub fn url_via(&self, addr: SocketAddr) -> String {
        format!("postgres://postgres@{addr}/{}", self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Dropping needs async; do it on a throwaway runtime so any test runtime works.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(PG_ADMIN_URL).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

/// A free loopback TCP port (bound, then let go) for a child process to listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
