//! DESIGN §1 rule 5 seen from outside: the real binary, PostgreSQL taken away behind a proxy
//! while traffic keeps recording events, then given back. Every event arrives, and the whole
//! outage costs a handful of log lines, not one per attempt or per event.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestDb, eventually, exai_bin, http};
use crate::proxy::TcpProxy;
use crate::ws::mock;

/// Most warn/error lines the whole outage may produce: the store failing, the breaker
/// opening and closing, recovery and replay, plus a few from the driver's pool.
const HANDFUL: usize = 15;

#[actix_rt::test]
async fn a_database_outage_loses_nothing_and_logs_a_handful_of_lines() {
    use sqlx::Connection;
    let db = TestDb::create().await;
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap());
    let upstream = mock();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("exai.log");
    let port = crate::helpers::free_port();
    let mut child = exai_bin()
        .current_dir(dir.path())
        .env("EXAI_WS_PORT", port.to_string())
        .env("EXAI_DATABASE_URL", db.url_via(proxy.addr()))
        .env("EXAI_LOG", "info")
        .env("EXAI_LOG_FORMAT", "json")
        .env("EXAI_METRICS_FLUSH_INTERVAL_MS", "100")
        .env("EXAI_SHUTDOWN_READY_DELAY_MS", "1")
        .env("CUSTOM_API_URL", upstream.base_url())
        .env("CUSTOM_MODEL_NAME", "mock-echo")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let client = http();
    let base = format!("http://127.0.0.1:{port}");
    let health = |client: reqwest::Client| {
        let url = format!("{base}/health");
        async move {
            client
                .get(url)
                .send()
                .await
                .ok()?
                .json::<Value>()
                .await
                .ok()
        }
    };
    eventually(Duration::from_secs(10), "exai up", || {
        let h = health(client.clone());
        async move {
            h.await
                .filter(|h| h["components"]["store"]["reachable"] == true)
                .map(|_| ())
        }
    })
    .await;

    proxy.set_down(true);
    for i in 0..150 {
        let resp = client
            .post(format!("{base}/v1/chat/completions"))
            .json(&json!({"model": "mock-echo", "messages": [{"role": "user", "content": format!("outage {i}")}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            200,
            "requests keep working while the store is down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during = health(client.clone()).await.unwrap();
    assert_eq!(
        during["components"]["pipeline"]["breaker"], "open",
        "{during}"
    );
    proxy.set_down(false);
    eventually(Duration::from_secs(30), "journal drained", || {
        let h = health(client.clone());
        async move {
            let h = h.await?;
            let p = &h["components"]["pipeline"];
            (p["breaker"] == "closed" && p["spilled_bytes"] == 0 && p["buffered"] == 0)
                .then_some(())
        }
    })
    .await;

    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    let (recorded, requests) = {
        // Everything recorded, including shutdown's own events, is in the database now.
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let n: (i64,) = sqlx::query_as("SELECT count(*) FROM monitoring.monitoring_events")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let r: (i64,) = sqlx::query_as(
            "SELECT count(*) FROM monitoring.monitoring_events WHERE type = 'request'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        (n.0, r.0)
    };
    // One `request` and one `cache.set` per call, and the connection and breaker events.
    assert_eq!(requests, 150, "one request event per call");
    assert!(
        recorded >= 300,
        "150 requests record at least 300 events; found {recorded}"
    );
    let dup: (i64,) = {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_as("SELECT count(*) - count(DISTINCT id) FROM monitoring.monitoring_events")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(dup.0, 0);

    let logs = std::fs::read_to_string(&log_path).unwrap();
    let loud: Vec<&str> = logs
        .lines()
        .filter(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .and_then(|v| v["level"].as_str().map(|s| s == "WARN" || s == "ERROR"))
                .unwrap_or(true)
        })
        .collect();
    assert!(
        loud.len() <= HANDFUL,
        "{} warn/error lines for one outage (at most {HANDFUL}):\n{}",
        loud.len(),
        loud.join("\n")
    );
    assert!(!loud.is_empty(), "the outage itself must be logged");
}
