//! The response cache seen end to end through the app, with the mock upstream counting
//! calls and the real Redis as the shared L2.

use serde_json::{Value, json};

use crate::helpers::{REDIS_URL, TestApp, spawn_app_with};
use crate::ws::{call, mock, mock_toml, session};

fn chat(prompt: &str, stream: bool) -> Value {
    json!({"model": "mock-echo", "messages": [{"role": "user", "content": prompt}], "stream": stream})
}

async fn post(app: &TestApp, body: &Value) -> (String, Option<String>, String) {
    let resp = app
        .client
        .post(format!("{}/v1/chat/completions", app.base))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cache = resp.headers()["x-exai-cache"].to_str().unwrap().to_owned();
    let age = resp
        .headers()
        .get("x-exai-cache-age-ms")
        .map(|v| v.to_str().unwrap().to_owned());
    (cache, age, resp.text().await.unwrap())
}

#[actix_rt::test]
async fn a_completed_stream_is_stored_and_answers_the_next_request() {
    let mock = mock();
    let app = spawn_app_with(&[], Some(&mock_toml(&mock, ""))).await;
    let prompt = format!("stream then store {}", uuid::Uuid::new_v4());
    let (cache, _, text) = post(&app, &chat(&prompt, true)).await;
    assert_eq!(cache, "miss");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    // The store happens right after the stream ends.
    let mut hit = None;
    for _ in 0..50 {
        let (cache, _, body) = post(&app, &chat(&prompt, false)).await;
        if cache == "l1" {
            hit = Some(body);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let body: Value =
        serde_json::from_str(&hit.expect("the streamed answer was never cached")).unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        format!("echo: {prompt}")
    );
    assert_eq!(
        mock.requests(),
        1,
        "the cached stream must answer without an upstream call"
    );
}

/// Waits (at most 5 s) until `app` reports its Redis connection up: an instance connects in
/// the background after start, and until then serves from L1 alone (by design), which would
/// make the first request skip L2.
async fn wait_for_l2(app: &TestApp) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, health) = app.get_json("/health").await;
        if health["components"]["cache"]["l2"] == "up" {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "L2 never came up: {}",
            health["components"]["cache"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn two_instances_share_one_redis() {
    let mock = mock();
    let toml = mock_toml(&mock, "");
    let env = [("REDIS_URL", REDIS_URL)];
    let a = spawn_app_with(&env, Some(&toml)).await;
    let b = spawn_app_with(&env, Some(&toml)).await;
    wait_for_l2(&a).await;
    wait_for_l2(&b).await;
    let prompt = format!("shared between instances {}", uuid::Uuid::new_v4());
    let (cache_a, _, body_a) = post(&a, &chat(&prompt, false)).await;
    assert_eq!(cache_a, "miss");
    let (cache_b, age_b, body_b) = post(&b, &chat(&prompt, false)).await;
    assert_eq!(cache_b, "l2", "instance B must be served from Redis");
    assert!(age_b.is_some());
    assert_eq!(body_a, body_b);
    assert_eq!(mock.requests(), 1);
    // And B's L1 is now filled.
    let (cache_b2, _, _) = post(&b, &chat(&prompt, false)).await;
    assert_eq!(cache_b2, "l1");
}

#[actix_rt::test]
async fn a_cached_answer_carries_its_own_metadata() {
    let mock = mock();
    let app = spawn_app_with(&[], Some(&mock_toml(&mock, ""))).await;
    let prompt = format!("metadata {}", uuid::Uuid::new_v4());
    let mut ws = session(&app).await;
    let first = call(
        &mut ws,
        "m1",
        "chat",
        json!({"prompt": prompt, "model": "mock-slow"}),
    )
    .await;
    assert_eq!(first["metadata"]["cache"], "miss", "{first}");
    assert!(first["metadata"]["latency_ms"].as_u64().unwrap() >= 300);
    assert!(first["metadata"]["cache_age_ms"].is_null());
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let second = call(
        &mut ws,
        "m2",
        "chat",
        json!({"prompt": prompt, "model": "mock-slow"}),
    )
    .await;
    assert_eq!(second["metadata"]["cache"], "l1", "{second}");
    assert!(
        second["metadata"]["cache_age_ms"].as_u64().unwrap() >= 50,
        "{second}"
    );
    assert!(
        second["metadata"]["latency_ms"].as_u64().unwrap() < 300,
        "a hit reports its own latency, not the original call's: {second}"
    );
    assert_eq!(second["outputs"], first["outputs"]);
    assert_eq!(mock.requests(), 1);
}
