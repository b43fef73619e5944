//! Test helpers that know nothing of exai's internals: loopback ports, HTTP clients, polling
//! until a condition holds, and the shared PostgreSQL and Redis servers.
//!
//! They fail loudly (panic) rather than return errors: they are for tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// PostgreSQL server every test shares (each test makes its own database).
pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Redis server every test shares (each test uses its own key prefix).
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

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
