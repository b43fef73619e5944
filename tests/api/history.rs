//! The history API (`/api/...`) and `/metrics` over HTTP, on SQLite and PostgreSQL, with
//! events produced by real traffic through the mock upstream: the `request` events' rollups,
//! per model, with their token and cost sums.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDb, eventually, spawn_app_with};
use crate::ws::{mock, mock_toml};

/// The mock model's price (USD per million tokens).
const PRICES: &str = "mock-echo=2/4";

/// Sends `n` distinct chats, so `n` `request` events are recorded.
async fn traffic(app: &TestApp, n: usize) {
    for i in 0..n {
        let resp = app
            .client
            .post(format!("{}/v1/chat/completions", app.base))
            .json(&json!({"model": "mock-echo", "messages": [{"role": "user", "content": format!("history {i}")}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
}

async fn summary_count(app: &TestApp, kind: &str) -> Option<u64> {
    let (status, body) = app.get_json("/api/metrics/summary?window=1h").await;
    assert_eq!(status, 200, "{body}");
    body["rows"]
        .as_array()?
        .iter()
        .find(|r| r["type"] == kind)
        .and_then(|r| r["count"].as_u64())
}

async fn check_history(app: &TestApp) {
    const N: usize = 7;
    traffic(app, N).await;
    eventually(Duration::from_secs(5), "events flushed", || async {
        (summary_count(app, "request").await == Some(N as u64)).then_some(())
    })
    .await;
    let (_, body) = app.get_json("/api/metrics/summary?window=15m").await;
    let row = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "request")
        .unwrap()
        .clone();
    assert_eq!(row["errors"], 0);
    assert_eq!(row["source"], "v1");
    assert_eq!(row["model"], "mock-echo", "{row}");
    assert!(row["p50_ms"].as_f64().unwrap() > 0.0);
    assert!(row["p99_ms"].as_f64().unwrap() >= row["p50_ms"].as_f64().unwrap());
    let prompt = row["prompt_tokens"].as_u64().unwrap();
    let completion = row["completion_tokens"].as_u64().unwrap();
    assert!(prompt >= N as u64 && completion >= N as u64, "{row}");
    let cost = (prompt as f64 * 2.0 + completion as f64 * 4.0) / 1e6;
    assert!(
        (row["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-9,
        "{row}"
    );
    // Per model across surfaces, and the totals of every request row.
    let model = body["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "mock-echo")
        .unwrap()
        .clone();
    assert_eq!(model["count"], N as u64, "{body}");
    assert_eq!(model["prompt_tokens"], prompt);
    assert_eq!(body["requests"]["count"], N as u64, "{body}");
    assert!((body["requests"]["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-9);
    // Other event types have no model and no sums.
    let other = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "cache.set")
        .unwrap()
        .clone();
    assert_eq!(other["model"], "", "{other}");
    assert!(other["cost_usd"].is_null(), "{other}");

    let (status, series) = app
        .get_json("/api/metrics/timeseries?bucket=1m&type=request")
        .await;
    assert_eq!(status, 200, "{series}");
    let points = series["points"].as_array().unwrap();
    let total: u64 = points.iter().map(|p| p["count"].as_u64().unwrap()).sum();
    assert_eq!(total, N as u64);
    let tokens: u64 = points
        .iter()
        .map(|p| p["prompt_tokens"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(tokens, prompt);

    // Keyset pagination: pages of 3 cover all N exactly once, newest first.
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut last_id: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/events?type=request&limit=3&before={c}"),
            None => "/api/events?type=request&limit=3".to_owned(),
        };
        let (status, page) = app.get_json(&path).await;
        assert_eq!(status, 200, "{page}");
        for e in page["events"].as_array().unwrap() {
            let id = e["id"].as_str().unwrap().to_owned();
            if let Some(prev) = &last_id {
                assert!(id < *prev, "newest first");
            }
            last_id = Some(id.clone());
            assert_eq!(e["type"], "request");
            assert!(seen.insert(id), "an event appeared twice");
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), N);
}

async fn check_bad_input(app: &TestApp) {
    for (path, param) in [
        ("/api/metrics/summary?window=soon", "window"),
        ("/api/metrics/summary?window=0", "window"),
        ("/api/metrics/timeseries?bucket=5m", "bucket"),
        ("/api/metrics/timeseries?since=yesterday", "since"),
        ("/api/metrics/timeseries?until=later", "until"),
        ("/api/metrics/timeseries?since=2000&until=1000", "since"),
        ("/api/events?limit=0", "limit"),
        ("/api/events?limit=many", "limit"),
        ("/api/events?before=not-a-cursor", "before"),
    ] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().starts_with(param),
            "{path}: {body}"
        );
    }
    // Limits above the cap are capped, not refused.
    let (status, _) = app.get_json("/api/events?limit=100000").await;
    assert_eq!(status, 200);
}

#[actix_rt::test]
async fn history_api_on_sqlite() {
    let mock = mock();
    let app = spawn_app_with(&[("EXAI_PRICES", PRICES)], Some(&mock_toml(&mock, ""))).await;
    check_history(&app).await;
    check_bad_input(&app).await;
}

#[actix_rt::test]
async fn history_api_on_postgres() {
    let db = TestDb::create().await;
    let mock = mock();
    let app = spawn_app_with(
        &[
            ("EXAI_DATABASE_URL", db.url.as_str()),
            ("EXAI_PRICES", PRICES),
        ],
        Some(&mock_toml(&mock, "")),
    )
    .await;
    let (_, health) = app.get_json("/health").await;
    assert_eq!(
        health["components"]["store"]["backend"], "postgres",
        "{health}"
    );
    check_history(&app).await;
    check_bad_input(&app).await;
}

#[actix_rt::test]
async fn dashboard_token_guards_the_api_and_metrics() {
    let token = "dash-token-0123456789";
    let app = spawn_app_with(&[("EXAI_DASHBOARD_TOKEN", token)], None).await;
    assert_eq!(app.get_json("/api/events").await.0, 401);
    assert_eq!(
        app.get_json(&format!("/api/events?token={token}")).await.0,
        200
    );
    let resp = app
        .client
        .get(format!("{}/metrics", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("exai_up 1"), "{text}");
    assert!(
        text.contains("exai_actor_restarts_total{actor=\"metrics_buffer\"} 0"),
        "{text}"
    );
    assert!(text.contains("exai_journal_bytes"), "{text}");
    assert!(!text.contains(token));
    let health: Value = app
        .client
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!health.to_string().contains(token));
}
